"""The hub's policy check, before it signs anything.

Each target node is judged with the current bundle, node and fleet rules alike, and
the hub's own record of what it sent (for rate limits). One denial anywhere refuses
the whole command (`FAILED_PRECONDITION`, reason `POLICY_DENIED`, every violated rule
in a `google.rpc.PreconditionFailure`); a rule that wants a human makes the command
wait for an admin's approval. What is sent is recorded at once, so the next command
meets the limit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

import policy
from hub.policy_store import PolicyStore
from hub.registry import Registry
from sentinel import actions
from sentinel.errors import FailedPrecondition, Violation


@dataclass(frozen=True, slots=True)
class Judgement:
    verdict: policy.Verdict
    policy_version: int
    proposals: tuple[policy.Proposal, ...]


class PolicyGate:
    def __init__(
        self,
        store: PolicyStore,
        registry: Registry,
        sent: policy.SlidingWindowLog,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._registry = registry
        self.sent = sent
        self._clock = clock

    def judge(
        self,
        action: str,
        params: Mapping[str, actions.ParamValue],
        nodes: list[str],
        *,
        shadow: bool,
        break_glass: bool,
        approved: bool = False,
    ) -> Judgement:
        bundle = self._store.current.bundle
        now = self._clock()
        fleet = self._fleet(nodes)
        proposals = self._proposals(action, params, nodes, shadow=shadow, break_glass=break_glass)
        violations: list[Violation] = []
        waiting = False
        for proposal in proposals:
            decision = policy.evaluate(bundle, proposal, now, history=self.sent, fleet=fleet)
            violations.extend(_violations(decision, proposal.node_id))
            waiting = waiting or decision.verdict is policy.Verdict.NEEDS_APPROVAL
        if violations:
            raise FailedPrecondition(
                f"policy version {bundle.version} denies {action}: {violations[0].description}"
                + (f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""),
                reason="POLICY_DENIED",
                violations=tuple(violations),
                policy_version=bundle.version,
            )
        verdict = (
            policy.Verdict.NEEDS_APPROVAL if waiting and not approved else policy.Verdict.ALLOW
        )
        return Judgement(verdict, bundle.version, proposals)

    def decide(
        self,
        action: str,
        params: Mapping[str, actions.ParamValue],
        node_id: str,
        at: datetime,
        version: int = 0,
    ) -> policy.Decision:
        """What `judge` would decide for this action on one node at `at` (EvaluatePolicy)."""
        (proposal,) = self._proposals(action, params, [node_id], shadow=False, break_glass=False)
        bundle = self._store.get(version).bundle
        return policy.evaluate(
            bundle, proposal, at, history=self.sent, fleet=self._fleet([node_id])
        )

    def _fleet(self, nodes: list[str]) -> policy.FleetContext:
        return policy.FleetContext(selected_nodes=len(nodes), fleet_size=len(self._registry))

    def _proposals(
        self,
        action: str,
        params: Mapping[str, actions.ParamValue],
        nodes: list[str],
        *,
        shadow: bool,
        break_glass: bool,
    ) -> tuple[policy.Proposal, ...]:
        return tuple(
            policy.Proposal(
                action=action,
                node_id=node_id,
                labels=dict(node.labels) if (node := self._registry.get(node_id)) else {},
                params=params,
                shadow=shadow,
                target=actions.target_of(action, params),
                break_glass=break_glass,
            )
            for node_id in nodes
        )

    def record(self, judgement: Judgement) -> None:
        """The command is being sent: count it against the rate limits."""
        bundle = self._store.get(judgement.policy_version).bundle
        now = self._clock()
        for proposal in judgement.proposals:
            if not proposal.shadow:
                for key in policy.rate_keys(bundle, proposal):
                    self.sent.record(key, now)


def _violations(decision: policy.Decision, node_id: str) -> list[Violation]:
    found = []
    for result in decision.results:
        if result.verdict is policy.Verdict.DENY:
            single = policy.Decision(policy.Verdict.DENY, (result,), decision.policy_version)
            sentence = " ".join(policy.explain(single))
            found.append(Violation(result.kind, f"{result.rule_id} on {node_id}", sentence))
    return found
