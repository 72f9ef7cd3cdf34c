"""Rate limits: at most `limit` permitted executions per `window`, counted per key.

    - {id: restarts, kind: rate_limit, actions: [node.systemd.restart],
       limit: 5, window: 1h, per: node_action}

`per` picks what is counted together, and so the rule's scope:

    per          key                                     scope
    node         {rule_id}|node|{node_id}                node   (the agent enforces it too)
    node_action  {rule_id}|node_action|{node_id}|{action} node
    target       {rule_id}|target|{target}               fleet  (target "" = node/{node_id})
    fleet        {rule_id}|fleet                         fleet

Invariants:
- a proposal is denied when `history.count(key, now - window, now) >= limit`: it
  would be the (limit+1)th execution in the half-open span `(now - window, now]`;
- the caller records each *permitted execution* under `rate_keys()` at the instant it
  was evaluated; shadow runs are neither limited nor recorded. With instants recorded
  in non-decreasing order, no half-open span of length `window` then holds more than
  `limit` executions (tests/test_policy_properties.py checks it);
- keys are unambiguous: rule ids, node ids and action names cannot contain `|`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta
from typing import ClassVar

from policy._model import Inputs, KindReader, Outcome, Proposal, ReadContext, Scope, Verdict
from policy._reader import Node
from policy._windows import read_duration


class Per(enum.StrEnum):
    NODE = "node"
    NODE_ACTION = "node_action"
    TARGET = "target"
    FLEET = "fleet"


_MAX_WINDOW = timedelta(days=366)
_SCOPES = {Per.NODE: Scope.NODE, Per.NODE_ACTION: Scope.NODE}


@dataclass(frozen=True)
class RateLimit:
    kind: ClassVar[str] = "rate_limit"
    rule_id: str
    limit: int
    window: timedelta
    window_text: str  # as written, for people: "1h"
    per: Per

    @property
    def scope(self) -> Scope:
        return _SCOPES.get(self.per, Scope.FLEET)

    def key(self, proposal: Proposal) -> str:
        if self.per is Per.NODE:
            return f"{self.rule_id}|node|{proposal.node_id}"
        if self.per is Per.NODE_ACTION:
            return f"{self.rule_id}|node_action|{proposal.node_id}|{proposal.action}"
        if self.per is Per.TARGET:
            return f"{self.rule_id}|target|{target_of(proposal)}"
        return f"{self.rule_id}|fleet"

    def check(self, inputs: Inputs) -> Outcome:
        proposal, now = inputs.proposal, inputs.now
        key = self.key(proposal)
        count = inputs.history.count(key, now - self.window, now)
        details = {
            "key": key,
            "per": self.per.value,
            "count": str(count),
            "limit": str(self.limit),
            "window": self.window_text,
            "node_id": proposal.node_id,
            "action": proposal.action,
            "target": target_of(proposal),
        }
        if count >= self.limit:
            return Outcome(Verdict.DENY, "RATE_LIMITED", details)
        return Outcome(Verdict.ALLOW, "WITHIN_LIMIT", details)


def target_of(proposal: Proposal) -> str:
    return proposal.target or f"node/{proposal.node_id}"


def _read_rate_limit(fields: dict[str, Node], context: ReadContext) -> RateLimit:
    limit = fields["limit"].integer()
    if limit < 1:
        raise fields["limit"].error("must be at least 1")
    window = read_duration(fields["window"])
    if not timedelta(0) < window <= _MAX_WINDOW:
        raise fields["window"].error("must be more than 0 and at most 366 days (8784h)")
    per_text = fields["per"].text()
    if per_text not in {member.value for member in Per}:
        expected = ", ".join(member.value for member in Per)
        raise fields["per"].error(f"unknown per {per_text!r} (expected one of: {expected})")
    return RateLimit(context.rule_id, limit, window, fields["window"].text(), Per(per_text))


READERS = {"rate_limit": KindReader(("limit", "window", "per"), (), _read_rate_limit)}
