"""`TemplateRule`: the three Via rules remembered per branch template give the rules' own answers.

For any Via spelling around one or more branch values, and any sequence of
branch values in the same template (token or not, with or without the
magic cookie, the markers themselves), the remembered rule answers what the
rule answers, on the first sighting, the proving one and every later one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sipsock.apps.proxyrules import forwarding
from sipsock.apps.proxyrules.responsehop import next_hop, unreliable_hop
from sipsock.apps.proxyrules.viatemplate import MARKERS, TemplateRule, branch_template
from sipsock.apps.proxyrules.wire import own_via_facts, read_plain_via

HOLE = "<hole>"
_transports = st.sampled_from(["UDP", "udp", "TCP", "tls", "x-y", "SCTP"])
_hosts = st.sampled_from(["192.0.2.1", "h.example", "[2001:db8::1]", "", "H-1.EX"])
_ports = st.sampled_from(["", ":5060", ":05060", ":0", ":65536", ": 5060"])
_params = st.sampled_from(
    [
        HOLE,
        HOLE,
        ";BRANCH=z9hG4bKearly",
        ";Branch=z9hG4bK-e",
        ";branch",
        ";branchx=z9hG4bKy",
        ";rport",
        ";rport=5070",
        ";received=192.0.2.9",
        ";maddr=239.1.1.1",
        ";sipsock-in=s1",
        ";SIPSOCK-IN=s2.5061",
        ';x="a;branch=z9hG4bKq"',
        " ;rport",
        ";ttl=3",
    ]
)
_branches = st.sampled_from(
    [
        "z9hG4bK-abc",
        "z9hG4bK",
        "abc",
        "Z9HG4BKx",
        "z9hG4bK0123456789abcdef01234567.0123456789",
        MARKERS[0],
        MARKERS[1],
        "z9hG4bK:[]",
        "a b",
        'x"y',
        "",
        "z9hG4bK,x",
    ]
)


def _fresh(remembered: TemplateRule[Any]) -> TemplateRule[Any]:
    """A new, empty `TemplateRule` of the same rule (each example starts with no memo)."""
    return TemplateRule(remembered.rule, remembered.branch_of, remembered.with_branch)


#: The remembered rules the proxy uses, and the rules they stand for.
RULES: dict[str, tuple[TemplateRule[Any], Callable[[str], Any]]] = {
    "next hop": (next_hop, unreliable_hop),
    "own via": (own_via_facts, read_plain_via),
    "cookie branch": (forwarding._cookie_branch, forwarding._cookie_branch_of),
}


@settings(max_examples=600)
@example("next hop", "UDP", "h", ":5060", [HOLE, ";rport"], ["z9hG4bK-a", "z9hG4bK-b", "abc"])
@example("own via", "UDP", "h", ":5060", [HOLE, ";sipsock-in=s1"], ["z9hG4bK-a", "b", "c", "a b"])
@example("own via", "UDP", "h", "", [";BRANCH=z9hG4bKearly", HOLE], ["x", "y", "z"])
@example(
    "cookie branch", "UDP", "h", ":05060", [HOLE], ["z9hG4bK-a", "z9hG4bK-b", "abc", "z9hG4bK"]
)
@example("cookie branch", "UDP", "h", "", [";Branch=z9hG4bK-e", HOLE], ["z9hG4bK-a", "b", "c"])
@example("cookie branch", "UDP", "h", "", [HOLE, HOLE], ["z9hG4bK-a", "b", "c", "d"])
@given(
    st.sampled_from(sorted(RULES)),
    _transports,
    _hosts,
    _ports,
    st.lists(_params, max_size=4),
    st.lists(_branches, min_size=1, max_size=6),
)
def test_a_remembered_rule_answers_as_the_rule(
    name: str, transport: str, host: str, port: str, params: list[str], branches: list[str]
) -> None:
    remembered, rule = RULES[name]
    fresh = _fresh(remembered)
    template = f"SIP/2.0/{transport} {host}{port}{''.join(params)}"
    for branch in branches * 3:  # first sighting, the proof, then remembered
        via = template.replace(HOLE, f";branch={branch}")
        assert fresh(via) == rule(via), via
        assert remembered(via) == rule(via), via


@pytest.mark.parametrize(
    ("via", "expected"),
    [
        ("SIP/2.0/UDP h;branch=z9hG4bKa;rport", (("SIP/2.0/UDP h;branch=", ";rport"), "z9hG4bKa")),
        ("SIP/2.0/UDP h;branch=z9hG4bKa", (("SIP/2.0/UDP h;branch=", ""), "z9hG4bKa")),
        ("SIP/2.0/UDP h;branch=a b;rport", None),
        ("SIP/2.0/UDP h;branch=;rport", None),
        ("SIP/2.0/UDP h;BRANCH=z9hG4bKa", None),
    ],
)
def test_the_template_is_the_text_around_the_first_branch_value(
    via: str, expected: tuple[tuple[str, str], str] | None
) -> None:
    assert branch_template(via) == expected


def test_a_template_is_proved_on_its_second_sighting_and_then_not_run() -> None:
    calls: list[str] = []

    def rule(via: str) -> str:
        calls.append(via)
        return via.partition(";")[0]

    remembered = TemplateRule(rule, lambda _: None, lambda answer, _: answer)
    for branch in ("z9hG4bK1", "z9hG4bK2", "z9hG4bK3", "z9hG4bK4"):
        assert remembered(f"SIP/2.0/UDP h;branch={branch}") == "SIP/2.0/UDP h"
    # Seen once: the rule; seen twice: the rule and the two markers; then remembered.
    assert len(calls) == 4


def _branch(via: str) -> str:
    return via.partition(";branch=")[2].partition(";")[0]


@pytest.mark.parametrize(
    "remembered",
    [
        # Reads the branch without copying it: never remembered as one answer.
        TemplateRule(lambda via: _branch(via)[-1], lambda _: None, lambda answer, _: answer),
        # Copies the branch and reads it again elsewhere: never remembered as a copy.
        TemplateRule(
            lambda via: (_branch(via), _branch(via)[-1]),
            lambda answer: answer[0],
            lambda answer, branch: (branch, answer[1]),
        ),
    ],
)
def test_a_rule_the_markers_do_not_prove_is_always_run(remembered: TemplateRule[Any]) -> None:
    for branch in ("z9hG4bK1", "z9hG4bK2", "z9hG4bK3", "z9hG4bK4"):
        via = f"SIP/2.0/UDP h;branch={branch};rport"
        assert remembered(via) == remembered.rule(via)
