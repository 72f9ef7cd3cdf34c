"""Action globs (`k8s.*`, `node.gpu.set_power_limit`): shell-style, case-sensitive.

Invariants: matching is `fnmatch.fnmatchcase` (so `*` also matches dots); a pattern
read from a bundle matches at least one action of `sentinel.actions.CATALOGUE`, so a
typo is a load error, never a rule that silently matches nothing. Results for
catalogue actions are memoised (the memo is bounded by the catalogue's size).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable

from policy._reader import Node
from sentinel.actions import CATALOGUE


class Globs:
    """An ordered set of action patterns."""

    __slots__ = ("_memo", "_regexes", "patterns")

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        self._regexes = tuple(re.compile(fnmatch.translate(p)) for p in self.patterns)
        self._memo: dict[str, str | None] = {}

    def first_match(self, action: str) -> str | None:
        """The first pattern that matches `action`, or None."""
        if action in self._memo:
            return self._memo[action]
        pairs = zip(self.patterns, self._regexes, strict=True)
        found = next((pattern for pattern, regex in pairs if regex.match(action)), None)
        if action in CATALOGUE:
            self._memo[action] = found
        return found

    def matches(self, action: str) -> bool:
        return self.first_match(action) is not None


def read_globs(node: Node, *, allow_empty: bool) -> tuple[str, ...]:
    """A list of patterns, each matching some catalogue action."""
    items = node.sequence()
    if not items and not allow_empty:
        raise node.error("must not be empty (leave the key out to match every action)")
    patterns = []
    for item in items:
        pattern = item.text()
        if not any(fnmatch.fnmatchcase(action, pattern) for action in CATALOGUE):
            raise item.error(f"{pattern!r} matches no known action")
        patterns.append(pattern)
    return tuple(patterns)
