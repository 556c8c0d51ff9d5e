"""``[auto_scaling.NAME]``: the auto-scaling profiles, and the pools that use them.

A profile is a table of its own; a pool names it (``[sockets_mgm]
auto_scaling_profile`` for the dynamic UDP pool, ``[core]
udp_auto_scaling_profile`` for the static one, ``[core]
tcp_auto_scaling_profile`` for the stream workers). Without a profile a pool
keeps its fixed size (``processes`` / ``udp_workers``). With one, the pool
starts with ``processes`` (``udp_workers``) workers when the key is written,
else with the profile's ``min_processes``; a written size outside the
profile's bounds stops start-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from sipsock.config.reader import IDENTIFIER_RE, Reader, Section
from sipsock.scaling import ScalingRule

SECTION: Final = "auto_scaling"
#: ``[core]``'s key naming the static UDP pool's profile.
CORE_PROFILE_KEY: Final = "udp_auto_scaling_profile"
#: ``[core]``'s key naming the stream pool's profile.
STREAM_PROFILE_KEY: Final = "tcp_auto_scaling_profile"
#: ``[sockets_mgm]``'s key naming the dynamic UDP pool's profile.
SOCKETS_MGM_PROFILE_KEY: Final = "auto_scaling_profile"


@dataclass(frozen=True)
class ProfileFields:
    """The keys of one ``[auto_scaling.NAME]`` table and their defaults (loads in percent)."""

    min_processes: int = 1
    max_processes: int = 8
    scale_up_load: int = 80
    scale_up_cycles: int = 4
    scale_up_within: int = 5
    scale_down_load: int | None = None
    scale_down_cycles: int = 10
    cycle: float = 1.0


#: The integer keys of a profile and their ranges.
RANGES: Final = {
    "min_processes": (1, 256),
    "max_processes": (1, 256),
    "scale_up_load": (0, 100),
    "scale_up_cycles": (1, 1000),
    "scale_up_within": (1, 1000),
    "scale_down_cycles": (1, 10000),
}


def read_profiles(reader: Reader, data: Mapping[str, Any]) -> dict[str, ScalingRule]:
    """Every ``[auto_scaling.NAME]`` table, by name."""
    tables = reader.table(data, SECTION)
    profiles: dict[str, ScalingRule] = {}
    for name, table in tables.items():
        where = f"{SECTION}.{name}"
        if not IDENTIFIER_RE.fullmatch(name) or len(name) > 63:
            reader.fail("", f"[{where}]", "a profile name is [A-Za-z_][A-Za-z0-9_]*")
        if not isinstance(table, Mapping):
            reader.fail("", f"[{where}]", "must be a table ([auto_scaling.NAME] with its keys)")
        sec = reader.section({where: table}, where, ProfileFields)
        values = _check_relations(sec)
        down = (
            sec.integer("scale_down_load", 0, 99, default=None)
            if "scale_down_load" in sec
            else None
        )
        profiles[name] = ScalingRule(
            name,
            min_processes=values["min_processes"],
            max_processes=values["max_processes"],
            up_load=values["scale_up_load"] / 100,
            up_cycles=values["scale_up_cycles"],
            up_within=values["scale_up_within"],
            down_load=None if down is None else down / 100,
            down_cycles=values["scale_down_cycles"],
            cycle=sec.number("cycle", 0.05, 3600.0),
        )
    return profiles


def _check_relations(sec: Section) -> dict[str, int]:
    """The integer keys of a profile, each in its range and in relation to the others
    (an error names the key that breaks one)."""
    values = {key: sec.integer(key, *RANGES[key]) for key in RANGES}
    if values["min_processes"] > values["max_processes"]:
        sec.fail(
            "min_processes",
            f"{values['min_processes']} is above max_processes ({values['max_processes']})",
        )
    if values["scale_up_cycles"] > values["scale_up_within"]:
        sec.fail(
            "scale_up_cycles",
            f"{values['scale_up_cycles']} is above scale_up_within "
            f"({values['scale_up_within']}): 'for N cycles within M' needs N <= M",
        )
    if "scale_down_load" in sec:
        down = sec.integer("scale_down_load", 0, 99)
        up = values["scale_up_load"]
        if down >= up:
            sec.fail(
                "scale_down_load",
                f"{down}% must be below scale_up_load ({up}%): the pool would grow and "
                "shrink on the same load",
            )
    elif "scale_down_cycles" in sec:
        sec.fail("scale_down_cycles", "needs scale_down_load (the load that scales down)")
    return values


def pool_profile(
    reader: Reader,
    data: Mapping[str, Any],
    profiles: Mapping[str, ScalingRule],
    where: tuple[str, str, str],
    size: int,
) -> tuple[ScalingRule | None, int]:
    """The profile a pool names and the size it starts with.

    ``where`` is (section, profile key, size key), e.g. ``("sockets_mgm",
    "auto_scaling_profile", "processes")``; ``size`` the size key's value.
    """
    section, key, size_key = where
    table = reader.table(data, section)
    name = table.get(key)
    if name is None:
        return None, size
    if not isinstance(name, str):
        reader.fail(section, key, f"must be a string (a profile name), not {name!r}")
    rule = profiles.get(name)
    if rule is None:
        known = ", ".join(sorted(profiles)) or "none"
        reader.fail(
            section, key, f"no profile {name!r}: add a [{SECTION}.{name}] table (known: {known})"
        )
        raise AssertionError  # fail raised
    if size_key not in table:
        return rule, rule.min_processes
    if size == 0:
        reader.fail(
            section,
            size_key,
            f"0 turns the pool off, but {key} = {name!r} scales it: "
            f"remove {key} or set {size_key} within {rule.min_processes}-{rule.max_processes}",
        )
    if not rule.min_processes <= size <= rule.max_processes:
        reader.fail(
            section,
            size_key,
            f"{size} is outside profile {name!r}'s bounds "
            f"({rule.min_processes}-{rule.max_processes}): the pool starts with this many",
        )
    return rule, size
