"""load_application: dotted names to application objects, with clear errors."""

from __future__ import annotations

import pytest

from sipsock.apps import ApplicationError, Responder, load_application

NOT_AN_APP = object()


def test_default_application_loads_with_colon_or_dot() -> None:
    assert isinstance(load_application("sipsock.apps:Responder", {}), Responder)
    assert isinstance(load_application("sipsock.apps.responder.Responder", {}), Responder)


def test_options_are_passed_to_the_constructor() -> None:
    app = load_application("sipsock.apps:Responder", {"status": 403, "reason": "Forbidden"})
    assert isinstance(app, Responder)
    assert (app.status, app.reason) == (403, "Forbidden")


@pytest.mark.parametrize(
    ("dotted", "options", "reason"),
    [
        ("Responder", {}, "not a dotted name"),
        ("sipsock.nowhere:App", {}, "cannot import module sipsock.nowhere"),
        ("sipsock.apps:Nothing", {}, "has no attribute Nothing"),
        ("sipsock.apps:Responder", {"colour": "red"}, "cannot construct it"),
        ("sipsock.apps:Responder", {"status": 200}, "300-699"),
        (
            "sipsock.sockdef:SocketDefError",
            {"row_id": 1, "column": "c", "value": 1, "reason": "r"},
            "does not provide ISipApplication",
        ),
        (f"{__name__}:NOT_AN_APP", {}, "does not provide ISipApplication"),
    ],
)
def test_errors_name_the_dotted_path_and_the_reason(
    dotted: str, options: dict[str, object], reason: str
) -> None:
    with pytest.raises(ApplicationError) as caught:
        load_application(dotted, options)
    assert caught.value.subject == dotted
    assert str(caught.value).startswith(f"{dotted}: ")
    assert reason in caught.value.reason
