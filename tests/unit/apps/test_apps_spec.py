"""`AppSpec`: frozen once in the control process; one `build_dispatcher` for every process."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipsock.apps import StatelessProxy
from sipsock.apps.loader import derived_secret
from sipsock.apps.spec import SpecError, build_dispatcher, freeze, thaw
from sipsock.config import default_settings, load_config, parse_config_text

PROXY = '[core]\napplication = "sipsock.apps:StatelessProxy"\nstate_dir = "var"\n'


def test_the_secret_is_derived_once_and_does_not_follow_a_later_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, later = tmp_path / "first", tmp_path / "later"
    first.mkdir()
    later.mkdir()
    (first / "sipsock.toml").write_text(PROXY)
    monkeypatch.chdir(first)
    spec = freeze(load_config("sipsock.toml"))
    app = build_dispatcher(spec).app
    assert isinstance(app, StatelessProxy)
    assert app.secret == spec.secret == derived_secret(spec.settings)
    # twistd -d: the daemon changes directory after makeService; a worker
    # built from the spec (text and secret) then still gets the same secret.
    monkeypatch.chdir(later)
    assert derived_secret(spec.settings) != spec.secret
    again = thaw(str(first / "sipsock.toml"), spec.text, spec.secret)
    rebuilt = build_dispatcher(again).app
    assert isinstance(rebuilt, StatelessProxy)
    assert rebuilt.secret == app.secret


def test_a_secret_set_in_the_file_is_used_and_none_derived() -> None:
    spec = freeze(parse_config_text(PROXY + '[proxy]\nsecret = "mine"\n', source="x"))
    assert spec.secret is None
    app = build_dispatcher(spec).app
    assert isinstance(app, StatelessProxy)
    assert app.secret == "mine"


def test_the_file_is_not_read_again(tmp_path: Path) -> None:
    path = tmp_path / "sipsock.toml"
    path.write_text("[core]\nmax_message_size = 4096\n")
    spec = freeze(load_config(path))
    path.write_text("garbage [")
    rebuilt = thaw(str(path), spec.text, spec.secret)
    assert build_dispatcher(rebuilt).max_message_size == 4096
    assert thaw("<defaults>", None, None).settings == default_settings()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('[core]\napplication = "no.such.module:App"\n', r"x\.toml: \[core\] application: no"),
        ("[application]\nsecret = 1\n[proxy]\n", r"x\.toml: \[application\] secret: set it"),
    ],
)
def test_an_application_that_cannot_be_built_names_the_file_and_key(text: str, reason: str) -> None:
    with pytest.raises(SpecError, match=reason):
        build_dispatcher(freeze(parse_config_text(text, source="x.toml")))
