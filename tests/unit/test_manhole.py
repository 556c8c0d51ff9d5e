"""The manhole's users file, password checks, host key and ``mi`` helper."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, fail, succeed

from sipsock.manhole import (
    HOST_KEY_NAME,
    ManholeError,
    UsersChecker,
    ensure_host_key,
    load_users,
    mi_caller,
    parse_users,
    password_matches,
)
from sipsock.mi.commands import MIError


def test_users_file_lines_comments_and_errors() -> None:
    users = parse_users("# admins\n\nalice:s3cret\nbob:$2b$04$abc:with:colons\n", "f")
    assert users == {b"alice": b"s3cret", b"bob": b"$2b$04$abc:with:colons"}
    with pytest.raises(ManholeError, match="f line 2: expected name:password"):
        parse_users("alice:x\nbob\n", "f")
    with pytest.raises(ManholeError, match="listed twice"):
        parse_users("a:x\na:y\n", "f")
    with pytest.raises(ManholeError, match="no users"):
        parse_users("# nobody\n", "f")


def test_users_file_must_exist_and_be_private(tmp_path: Path) -> None:
    path = tmp_path / "users"
    with pytest.raises(ManholeError, match="no such file"):
        load_users(path)
    path.write_text("admin:pw\n")
    path.chmod(0o644)
    with pytest.raises(ManholeError, match="chmod 600"):
        load_users(path)
    path.chmod(0o600)
    assert load_users(path) == {b"admin": b"pw"}


def test_passwords_plain_and_bcrypt() -> None:
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4))
    assert password_matches(b"pw", hashed)
    assert not password_matches(b"nope", hashed)
    assert password_matches(b"pw", b"pw")
    assert not password_matches(b"pw2", b"pw")
    assert not password_matches(b"pw", b"$2b$broken")


def _login(checker: UsersChecker, user: bytes, password: bytes) -> Any:
    results: list[Any] = []
    checker.requestAvatarId(UsernamePassword(user, password)).addBoth(results.append)
    return results[0]


def test_checker_accepts_the_right_password_only() -> None:
    checker = UsersChecker({b"admin": b"pw"}, reactor=None)
    assert _login(checker, b"admin", b"pw") == b"admin"
    assert _login(checker, b"admin", b"bad").check(UnauthorizedLogin)
    assert _login(checker, b"ghost", b"pw").check(UnauthorizedLogin)


def test_host_key_is_generated_once_and_private(tmp_path: Path) -> None:
    key: Any = ensure_host_key(tmp_path)
    path = tmp_path / HOST_KEY_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key.type() == "Ed25519"
    again: Any = ensure_host_key(tmp_path)
    assert again.public().blob() == key.public().blob()
    os.chmod(path, 0o644)
    with pytest.raises(ManholeError, match="chmod 600"):
        ensure_host_key(tmp_path)


def test_mi_helper_returns_results_at_once_and_deferreds_later() -> None:
    pending: Deferred[Any] = Deferred()

    def call(name: str, params: dict[str, Any] | None) -> Deferred[Any]:
        if name == "sockets_list":
            return succeed([{"socket": "udp:127.0.0.1:5060", "params": params}])
        if name == "broken":
            return fail(MIError(500, "no"))
        return pending

    mi = mi_caller(call)
    assert mi("sockets_list", details=True) == [
        {"socket": "udp:127.0.0.1:5060", "params": {"details": True}}
    ]
    with pytest.raises(MIError):
        mi("broken")
    later = mi("sockets_reload")
    assert isinstance(later, Deferred) and not later.called
    got: list[Any] = []
    later.addCallback(got.append)
    pending.callback("OK")
    assert got == ["OK"]
