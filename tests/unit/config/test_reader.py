"""`sipsock.config.reader`: one copy of each default (the dataclass), errors naming the key."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pytest

from sipsock.config import ConfigError, Settings, default_settings, parse_config
from sipsock.config.reader import Reader, Section, field_defaults

ROOT = Path(__file__).parents[3]


@dataclass(frozen=True)
class Toy:
    name: str
    count: int = 3
    ratio: float = 0.5
    mode: str = "a"
    tags: tuple[str, ...] = ("x",)


def section(values: dict[str, Any], **kwargs: Any) -> Section:
    return Section(Reader("toy.toml"), "toy", values, Toy, **kwargs)


def test_a_missing_key_takes_the_default_of_its_field() -> None:
    sec = section({})
    assert sec.integer("count", 1, 9) == 3
    assert sec.number("ratio", 0.0, 1.0) == 0.5
    assert sec.choice("mode", ("a", "b")) == "a"
    assert sec.get("tags", list) == ("x",)
    assert sec.integer("count", 1, 9, default=7) == 7


def test_the_fields_are_the_known_keys_required_ones_included() -> None:
    assert section({"name": "n", "count": 2}).integer("count", 1, 9) == 2
    with pytest.raises(ConfigError) as info:
        section({"cuont": 2})
    assert str(info.value) == (
        "toy.toml: [toy] cuont: unknown key (known: count, mode, name, ratio, tags)"
    )
    with pytest.raises(ConfigError, match=r"\[toy\] other: unknown key \(known: name\)"):
        section({"other": 1}, keys={"name"})


@pytest.mark.parametrize(
    ("values", "read", "message"),
    [
        ({"count": "3"}, lambda s: s.integer("count", 1, 9), "[toy] count: must be an integer"),
        ({"count": True}, lambda s: s.integer("count", 1, 9), "[toy] count: must be an integer"),
        ({"count": 10}, lambda s: s.integer("count", 1, 9), "count: 10 is out of range (1-9)"),
        ({"ratio": 2}, lambda s: s.number("ratio", 0.0, 1.0), "ratio: 2 is out of range (0-1)"),
        ({"mode": "c"}, lambda s: s.choice("mode", ("a", "b")), "'c' is not one of a, b"),
        ({"name": "1x"}, lambda s: s.identifier("name"), "[toy] name: '1x' is not an SQL"),
    ],
)
def test_every_error_names_the_file_the_section_and_the_key(
    values: dict[str, Any], read: Any, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        read(section(values))
    assert str(info.value).startswith("toy.toml: [toy] ")
    assert message in str(info.value)


def test_an_empty_file_gives_every_sections_dataclass_defaults() -> None:
    settings = default_settings()
    for item in fields(Settings):
        value = getattr(settings, item.name)
        if item.name in ("sockets_mgm", "application", "source"):
            continue
        assert value == type(value)(), f"[{item.name}] read defaults differ from its dataclass"
    mgm = settings.sockets_mgm
    defaults = field_defaults(type(mgm))
    for name, default in defaults.items():
        assert getattr(mgm, name) == default, f"[sockets_mgm] {name}"


def _shipped_sections() -> dict[str, Any]:
    with open(ROOT / "etc" / "sipsock.toml", "rb") as handle:
        return tomllib.load(handle)


#: Keys of etc/sipsock.toml named differently from their field.
_RENAMED = {"table_name": "table"} | {
    f"{column}_column": column for column in ("socket", "advertised", "tag", "flags", "tos")
}


def test_the_shipped_example_shows_the_dataclass_defaults() -> None:
    """etc/sipsock.toml says it shows every key with its default: each value is the field's."""
    data = _shipped_sections()
    settings = parse_config(data)
    defaults = default_settings()
    checked = 0
    for section_name, table in data.items():
        if section_name == "application":
            continue
        read = getattr(settings, section_name)
        expected = getattr(defaults, section_name)
        for key in table:
            if section_name == "sockets_mgm" and key in _RENAMED:
                read_value = getattr(read.tables, _RENAMED[key])
                expected_value = getattr(expected.tables, _RENAMED[key])
            else:
                read_value, expected_value = getattr(read, key), getattr(expected, key)
            assert read_value == expected_value, (
                f"etc/sipsock.toml [{section_name}] {key} = {table[key]!r}, "
                f"but the default is {expected_value!r}"
            )
            checked += 1
    assert checked > 50


def test_the_readme_limit_and_manhole_tables_show_the_dataclass_defaults() -> None:
    """The README's tables of ``key  default  ...`` rows agree with the dataclasses."""
    text = (ROOT / "README.rst").read_text()
    defaults = default_settings()
    rows = 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2 or not (parts[0].startswith("``") and parts[0].endswith("``")):
            continue
        key = parts[0].strip("`")
        for section in (defaults.limits, defaults.manhole):
            if key in field_defaults(type(section)) and parts[1][0].isdigit():
                assert float(parts[1]) == getattr(section, key), f"README {key} {parts[1]}"
                rows += 1
    assert rows >= 14
