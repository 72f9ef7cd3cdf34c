"""A rule: which proposals it looks at, and what kind of check it makes.

    - id: weekend-freeze            # unique in the bundle; letters, digits, - _ .
      kind: freeze                  # freeze | rate_limit | quota | cost_ceiling |
                                    # slo_guard | blast_radius | local_bounds | require_approval
      actions: ["k8s.*"]            # action globs; default: every action
      selector: "zone=eu-1,!canary" # node labels, kubectl syntax; default: every node
      description: no changes at weekends
      ...                           # the kind's own keys

Invariants: a rule applies to a proposal exactly when one of its action globs and its
selector match (and then it appears in the decision's results, unless its kind finds
the proposal is not its business after all); its scope is fixed by its kind (and, for
`rate_limit`, by `per`); `allow` and `safe-mode` are reserved ids (the built-in checks).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import date

from policy import _fleet_rules, _node_rules, _rate_limit
from policy._globs import Globs, read_globs
from policy._model import Inputs, KindReader, Proposal, ReadContext, RuleResult, RuleSpec, Scope
from policy._reader import Node
from sentinel.errors import InvalidArgument
from sentinel.selectors import Selector, parse_selector

KINDS: Mapping[str, KindReader] = {
    **_node_rules.READERS,
    **_rate_limit.READERS,
    **_fleet_rules.READERS,
}
RESERVED_IDS = ("allow", "safe-mode")
_COMMON_KEYS = ("actions", "selector", "description")
_ID = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_EVERY_ACTION = ("*",)


@dataclass(frozen=True)
class Rule:
    id: str
    spec: RuleSpec
    actions: tuple[str, ...] = _EVERY_ACTION
    selector: Selector = field(default_factory=Selector)
    description: str = ""
    kind: str = field(init=False, compare=False)
    scope: Scope = field(init=False, compare=False)
    _globs: Globs = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", self.spec.kind)
        object.__setattr__(self, "scope", self.spec.scope)
        object.__setattr__(self, "_globs", Globs(self.actions))

    def matches_action(self, action: str) -> bool:
        return self.actions is _EVERY_ACTION or self._globs.matches(action)

    def applies(self, proposal: Proposal) -> bool:
        return self.matches_action(proposal.action) and self._selects(proposal)

    def evaluate(self, inputs: Inputs) -> RuleResult | None:
        """The rule's say on `inputs.proposal`, or None if it has none (see module doc)."""
        return self.judge(inputs) if self.matches_action(inputs.proposal.action) else None

    def judge(self, inputs: Inputs) -> RuleResult | None:
        """`evaluate` for a proposal whose action is known to match (see `Bundle.rules_for`)."""
        if not self._selects(inputs.proposal):
            return None
        outcome = self.spec.check(inputs)
        if outcome is None:
            return None
        return RuleResult(
            self.id, self.kind, self.scope, outcome.verdict, outcome.reason, outcome.details
        )

    def _selects(self, proposal: Proposal) -> bool:
        return not self.selector.requirements or self.selector.matches(proposal.labels)


def read_rule(
    node: Node, calendars: Mapping[str, frozenset[date]], series: Collection[str]
) -> Rule:
    peek = node.mapping()
    if "kind" not in peek:
        node.fields(("id", "kind"), (*_COMMON_KEYS, *peek))  # names the missing key
    kind = peek["kind"].text()
    reader = KINDS.get(kind)
    if reader is None:
        raise peek["kind"].error(f"unknown kind {kind!r} (expected one of: {', '.join(KINDS)})")
    fields = node.fields(("id", "kind", *reader.required), (*_COMMON_KEYS, *reader.optional))
    rule_id = fields["id"].text()
    if not _ID.fullmatch(rule_id):
        raise fields["id"].error(
            f"invalid rule id {rule_id!r}: use up to 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    if rule_id in RESERVED_IDS:
        raise fields["id"].error(f"{rule_id!r} is reserved for the built-in check")
    spec = reader.read(fields, ReadContext(rule_id, calendars, node, series))
    actions = read_globs(fields["actions"], allow_empty=False) if "actions" in fields else None
    description = fields["description"].text() if "description" in fields else ""
    return Rule(
        rule_id, spec, actions or _EVERY_ACTION, _read_selector(fields.get("selector")), description
    )


def _read_selector(node: Node | None) -> Selector:
    if node is None:
        return Selector()
    try:
        return parse_selector(node.text())
    except InvalidArgument as exc:
        raise node.error(exc.message) from exc
