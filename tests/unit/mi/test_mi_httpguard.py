"""The browser rules of the HTTP MI (sipsock.mi.httpguard)."""

from __future__ import annotations

import pytest

from sipsock.mi.httpguard import content_type_refusal, host_matches, request_refusal


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("127.0.0.1:8888", True),
        ("localhost:8888", True),
        ("LocalHost:8888", True),
        ("127.0.0.2:8888", True),  # a loopback literal cannot be rebound
        ("[::1]:8888", True),
        ("127.0.0.1:8889", False),
        ("127.0.0.1", False),  # port 80 implied
        ("evil.example:8888", False),
        ("127.0.0.1.nip.io:8888", False),
        ("localhost.evil.example:8888", False),
        ("::1:8888", False),
        ("", False),
        ("127.0.0.1:8888:1", False),
        ("10.0.0.1:8888", False),
    ],
)
def test_host_must_name_the_listener(host: str, ok: bool) -> None:
    assert host_matches(host, "127.0.0.1", 8888) is ok


def test_listening_address_itself_is_accepted() -> None:
    assert host_matches("[::1]:9", "::1", 9)
    assert host_matches("localhost", "127.0.0.1", 80)


@pytest.mark.parametrize(
    ("origin", "refused"),
    [
        (None, False),
        ("http://127.0.0.1:8888", False),
        ("http://localhost:8888/", False),
        ("null", True),
        ("http://evil.example", True),
        ("https://127.0.0.1:8888", True),
        ("http://127.0.0.1:3000", True),
        ("file://", True),
    ],
)
def test_origin_must_be_the_listener(origin: str | None, refused: bool) -> None:
    refusal = request_refusal(
        host="127.0.0.1:8888",
        origin=origin,
        fetch_site=None,
        local_address="127.0.0.1",
        local_port=8888,
    )
    assert (refusal is not None) is refused
    if refusal is not None:
        assert (refusal.status, refusal.rule) == (403, "origin")


def test_cross_site_fetch_is_refused() -> None:
    common = {"host": None, "origin": None, "local_address": "127.0.0.1", "local_port": 1}
    assert request_refusal(fetch_site="cross-site", **common) is not None  # type: ignore[arg-type]
    assert request_refusal(fetch_site="same-site", **common) is not None  # type: ignore[arg-type]
    assert request_refusal(fetch_site="same-origin", **common) is None  # type: ignore[arg-type]
    assert request_refusal(fetch_site="none", **common) is None  # type: ignore[arg-type]


def test_foreign_host_reason_names_the_host() -> None:
    refusal = request_refusal(
        host="evil.example", origin=None, fetch_site=None, local_address="127.0.0.1", local_port=1
    )
    assert refusal is not None
    assert (refusal.status, refusal.rule) == (403, "host")
    assert "'evil.example'" in refusal.reason


@pytest.mark.parametrize(
    ("content_type", "ok"),
    [
        ("application/json", True),
        ("Application/JSON; charset=utf-8", True),
        ("text/plain", False),
        ("application/x-www-form-urlencoded", False),
        ("multipart/form-data; boundary=x", False),
        ("application/json-seq", False),
        (None, False),
    ],
)
def test_jsonrpc_post_must_be_application_json(content_type: str | None, ok: bool) -> None:
    refusal = content_type_refusal(content_type)
    assert (refusal is None) is ok
    if refusal is not None:
        assert refusal.status == 415
