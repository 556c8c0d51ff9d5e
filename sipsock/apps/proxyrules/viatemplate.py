"""A Via rule remembered by the Via's text around its branch value (bounded), proved per template.

Pure. The proxy reads three Vias of every message it forwards with rules
that give the same answer for every branch value, or copy the branch value
into the answer (the response's next Via: `unreliable_hop`; the proxy's own
Via on a response: `read_plain_via`; a request's top Via: the branch and
sent-by of its transaction id). Every peer sends the same Via apart from the
branch, so the answer is remembered per template: the text before and after
the value of the first ``;branch=``, when that value is a token.

A template is remembered only once the rule, run on the template filled
with two different marker branches, either gives the same answer for both
(the branch does not matter: `Fixed`) or gives each marker back as the
branch it read and the rest the same (`Copied`). Anything else (no
``;branch=``, a value that is not a token, a template the check does not
prove) runs the rule itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final, Generic, TypeVar

from sipsock.sip.grammar import TOKEN_CHARS
from sipsock.sip.memo import Memo

R = TypeVar("R")
#: The two marker branches a template is filled with to prove it.
MARKERS: Final = ("z9hG4bKsipsockmarker1", "z9hG4bKsipsockmarker2")
_match_token: Final = re.compile(f"[{TOKEN_CHARS}]+").fullmatch
#: The text before and after a Via's first ``;branch=`` value.
Template = tuple[str, str]


#: What a proved template remembers: whether the answer copies the branch, the answer.
Proof = tuple[bool, R]


def branch_template(via: str) -> tuple[Template, str] | None:
    """The template of ``via`` and its branch value (None: no token after ``;branch=``)."""
    at = via.find(";branch=")
    if at < 0:
        return None
    start = at + 8
    end = via.find(";", start)
    if end < 0:
        end = len(via)
    branch = via[start:end]
    if _match_token(branch) is None:
        return None
    return (via[:start], via[end:]), branch


class TemplateRule(Generic[R]):
    """``rule(via)``, remembered per branch template (at most ``entries`` templates).

    ``rule`` never raises, and reads a token branch value only as an opaque
    token: it either ignores it or copies it into its answer.

    ``branch_of(answer)`` is the branch an answer carries (None: none) and
    ``with_branch(answer, branch)`` the same answer carrying another one; a
    rule whose answers never carry the branch gives ``lambda _: None`` and
    is never called with ``with_branch``.
    """

    def __init__(
        self,
        rule: Callable[[str], R],
        branch_of: Callable[[R], str | None],
        with_branch: Callable[[R, str], R],
        *,
        entries: int = 4096,
    ) -> None:
        self.rule = rule
        self.branch_of = branch_of
        self.with_branch = with_branch
        #: Templates to their `Proof`: False seen once, True not proved.
        self._memo: Memo[Template, Proof[R] | bool] = Memo(
            max_entries=entries, max_bytes=1024 * 1024, max_item=512
        )

    def __call__(self, via: str) -> R:
        found = branch_template(via)
        if found is None:
            return self.rule(via)
        template, branch = found
        known = self._memo.get(template)
        if type(known) is tuple:
            copies, answer = known
            return self.with_branch(answer, branch) if copies else answer
        if known is None:
            # Seen once: proved the next time (a peer seen once costs no proof).
            self._memo.remember(template, False, len(template[0]) + len(template[1]))
        elif known is False:
            proof = self._prove(template)
            size = len(template[0]) + len(template[1])
            self._memo.remember(template, True if proof is None else proof, size)
        return self.rule(via)

    def _prove(self, template: Template) -> Proof[R] | None:
        """What the rule does with the branch of this template, or None when not proved.

        ``(False, answer)``: the same answer for both markers (the branch does
        not matter); ``(True, answer)``: each marker comes back as the branch
        read, and the rest is the same.
        """
        before, after = template
        first, second = (self.rule(before + marker + after) for marker in MARKERS)
        if first == second:
            return False, first
        if (
            self.branch_of(first) == MARKERS[0]
            and self.branch_of(second) == MARKERS[1]
            and self.with_branch(first, MARKERS[1]) == second
        ):
            return True, first
        return None
