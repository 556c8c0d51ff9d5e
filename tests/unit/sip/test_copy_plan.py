"""A response copies its request's fields by a plan made once per sequence of header names.

`sipsock.sip.response._COPY_PLANS` remembers, per sequence of header keys,
where the Via, From, To, Call-ID and CSeq fields are and where the To is
among them. Checked against the rule read field by field (the code it
replaced), cold and with the plan remembered.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sipsock.sip import Request, canonical_name
from sipsock.sip import response as response_module
from sipsock.sip.response import _copied_fields, has_tag


def field_by_field(
    request: Request, code: int, tag: str
) -> tuple[list[tuple[str, str]], tuple[str, ...]]:
    copied = [(f, v) for f, v in request.headers if canonical_name(f) in response_module._COPIED]
    keys = tuple(canonical_name(f) for f, _ in copied)
    if code != 100 and "to" in keys:
        index = keys.index("to")
        field, value = copied[index]
        if not has_tag(value):
            copied[index] = (field, f"{value};tag={tag}")
    return copied, keys


NAMES = st.sampled_from(
    ["Via", "v", "From", "f", "To", "t", "TO", "Call-ID", "i", "CSeq", "Contact", "X-A", "l"]
)
VALUES = st.sampled_from(["<sip:a@b>", "<sip:a@b>;tag=1", "x", "", "<sip:c>;TAG = 2", "1 INVITE"])


@settings(max_examples=300)
@given(st.lists(st.tuples(NAMES, VALUES), max_size=10), st.sampled_from([100, 180, 200, 501]))
def test_the_copy_plan_copies_what_the_field_by_field_rule_copies(
    fields: list[tuple[str, str]], code: int
) -> None:
    request = Request("INVITE", "sip:a@b", fields)
    expected = field_by_field(request, code, "made")
    response_module._COPY_PLANS.clear()
    for _ in range(2):  # cold, then with the plan remembered
        assert _copied_fields(request, code, "made") == expected
        assert _copied_fields(request, code, lambda: "made") == expected
    assert request.headers == fields  # the request is left as it was
