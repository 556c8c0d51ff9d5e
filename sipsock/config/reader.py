"""Reading TOML tables into settings: every failure names the file, the key and the reason.

`Section` reads one table against the frozen dataclass its keys fill: a
key's default is the default of the field of the same name (one copy of
each default: the dataclass), and the keys a table may hold are, unless
told otherwise, the dataclass's fields.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, fields
from typing import Any, Final

IDENTIFIER_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_TYPE_NAMES: Final[Mapping[type, str]] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
    dict: "a table",
}


class ConfigError(Exception):
    """A configuration file that cannot be used; names the file, key and reason."""

    def __init__(self, path: str, key: str, reason: str) -> None:
        self.path = path
        self.key = key
        self.reason = reason
        super().__init__(str(self))

    def __str__(self) -> str:
        key = f"{self.key}: " if self.key else ""
        return f"{self.path}: {key}{self.reason}"


def field_defaults(settings_class: type) -> dict[str, Any]:
    """The default of every field of a settings dataclass that has one."""
    defaults: dict[str, Any] = {}
    for item in fields(settings_class):
        if item.default is not MISSING:
            defaults[item.name] = item.default
        elif item.default_factory is not MISSING:
            defaults[item.name] = item.default_factory()
    return defaults


class _Field:
    """Marker: take the default from the dataclass field of the key's name."""


FROM_FIELD: Final[Any] = _Field()


class Reader:
    """Where the settings come from (``source``), and the error naming a key."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, section: str, key: str, reason: str) -> Any:
        where = f"[{section}] {key}" if section else key
        raise ConfigError(self.source, where, reason)

    def table(self, data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
        """The top-level table ``[name]`` (empty when absent)."""
        value = data.get(name, {})
        if not isinstance(value, Mapping):
            self.fail("", f"[{name}]", "must be a table")
        return dict(value)

    def only_sections(self, data: Mapping[str, Any], known: Iterable[str]) -> None:
        names = set(known)
        for key in data:
            if key not in names:
                self.fail("", f"[{key}]", f"unknown section (known: {', '.join(sorted(names))})")

    def section(
        self,
        data: Mapping[str, Any],
        name: str,
        settings_class: type | None = None,
        *,
        keys: Iterable[str] | None = None,
    ) -> Section:
        """``[name]`` of ``data``, checked for unknown keys, read against ``settings_class``."""
        return Section(self, name, self.table(data, name), settings_class, keys=keys)


class Section:
    """One TOML table read against a settings dataclass.

    ``name`` is how errors name the table (``core``, ``tls.domain 'a'``);
    ``keys`` the keys it may hold (default: the dataclass's field names).
    Each reading method takes the key's default from the field of the same
    name unless given one (``default=``).
    """

    def __init__(
        self,
        reader: Reader,
        name: str,
        values: Mapping[str, Any],
        settings_class: type | None = None,
        *,
        keys: Iterable[str] | None = None,
    ) -> None:
        self.reader = reader
        self.name = name
        self.values = values
        self.defaults = field_defaults(settings_class) if settings_class is not None else {}
        if keys is not None:
            known = set(keys)
        else:
            known = {item.name for item in fields(settings_class)} if settings_class else set()
        for key in values:
            if key not in known:
                hint = f" (known: {', '.join(sorted(known))})" if known else ""
                self.fail(key, f"unknown key{hint}")

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def fail(self, key: str, reason: str) -> Any:
        return self.reader.fail(self.name, key, reason)

    def default(self, key: str) -> Any:
        return self.defaults[key]

    def get(self, key: str, kind: type, default: Any = FROM_FIELD) -> Any:
        if key not in self.values:
            return self.defaults[key] if default is FROM_FIELD else default
        value = self.values[key]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            self.fail(key, f"must be {_TYPE_NAMES[kind]}, not {value!r}")
        return value

    def integer(self, key: str, low: int, high: int, default: Any = FROM_FIELD) -> int:
        value: int = self.get(key, int, default)
        if not low <= value <= high:
            self.fail(key, f"{value} is out of range ({low}-{high})")
        return value

    def optional_integer(self, key: str, low: int, high: int) -> int | None:
        """An integer key whose absence means None (a port that is off by default)."""
        if key not in self.values:
            return None
        return self.integer(key, low, high, default=None)

    def number(self, key: str, low: float, high: float, default: Any = FROM_FIELD) -> float:
        value = float(self.get(key, float, default))
        if not low <= value <= high:
            self.fail(key, f"{value:g} is out of range ({low:g}-{high:g})")
        return value

    def choice(self, key: str, options: tuple[str, ...], default: Any = FROM_FIELD) -> str:
        value: str = self.get(key, str, default)
        if value not in options:
            self.fail(key, f"{value!r} is not one of {', '.join(options)}")
        return value

    def identifier(self, key: str, default: Any = FROM_FIELD) -> str:
        """An SQL identifier: table and column names reach SQL only through this."""
        value: str = self.get(key, str, default)
        if not IDENTIFIER_RE.fullmatch(value) or len(value) > 63:
            self.fail(
                key,
                f"{value[:64]!r} is not an SQL identifier ([A-Za-z_][A-Za-z0-9_]*, "
                "at most 63 characters)",
            )
        return value
