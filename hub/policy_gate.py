"""The hub's policy check, before it signs anything.

Each target node is judged with the current bundle, node and fleet rules alike, and
the hub's own record of what it sent (for rate limits). One denial anywhere refuses
the whole command (`FAILED_PRECONDITION`, reason `POLICY_DENIED`, every violated rule
in a `google.rpc.PreconditionFailure`); a rule that wants a human makes the command
wait for an admin's approval. What is sent is recorded at once, so the next command
meets the limit.

The fleet context is gathered first (hence `judge` and `decide` are async): the
registry's size and online GPUs by model, and the SLO series that the slo_guard rules
applying to these proposals compare (`Bundle.series_for`; nothing is fetched when no
such rule applies). One bundle is read per call and used throughout, even if a new
version becomes current while the series are fetched.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

import policy
from hub.policy_store import PolicyStore
from hub.registry import Registry
from hub.sent_history import SentHistory
from hub.series import SeriesSource, gpus_by_model
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
        sent: SentHistory,
        clock: Callable[[], datetime],
        *,
        series: SeriesSource,
    ) -> None:
        self._store = store
        self._registry = registry
        self.sent = sent
        self._clock = clock
        self._series = series

    async def judge(
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
        proposals = self._proposals(action, params, nodes, shadow=shadow, break_glass=break_glass)
        fleet = await self._fleet(bundle, proposals)
        now = self._clock()
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

    async def decide(
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
        fleet = await self._fleet(bundle, (proposal,))
        return policy.evaluate(bundle, proposal, at, history=self.sent, fleet=fleet)

    async def _fleet(
        self, bundle: policy.Bundle, proposals: tuple[policy.Proposal, ...]
    ) -> policy.FleetContext:
        return policy.FleetContext(
            selected_nodes=len(proposals),
            fleet_size=len(self._registry),
            gpu_hours_per_hour=gpus_by_model(self._registry),
            proposed_usage=_proposed_usage(proposals),
            series=await self._series.values(bundle.series_for(proposals)),
        )

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

    async def record(self, judgement: Judgement) -> None:
        """The command is being sent: count it against the rate limits."""
        bundle = self._store.get(judgement.policy_version).bundle
        now = self._clock()
        for proposal in judgement.proposals:
            if not proposal.shadow:
                await self.sent.record(policy.rate_keys(bundle, proposal), now)


def _violations(decision: policy.Decision, node_id: str) -> list[Violation]:
    found = []
    for result in decision.results:
        if result.verdict is policy.Verdict.DENY:
            single = policy.Decision(policy.Verdict.DENY, (result,), decision.policy_version)
            sentence = " ".join(policy.explain(single))
            found.append(Violation(result.kind, f"{result.rule_id} on {node_id}", sentence))
    return found


def _proposed_usage(proposals: tuple[policy.Proposal, ...]) -> dict[str, float]:
    """What the command itself says about usage: a scale's replica count
    (`replicas:<namespace>/<name>`), for quotas on it."""
    usage: dict[str, float] = {}
    for proposal in proposals:
        replicas = proposal.params.get("replicas")
        if proposal.action == "k8s.deployment.scale" and isinstance(replicas, int):
            namespace, name = proposal.params.get("namespace"), proposal.params.get("name")
            usage[f"replicas:{namespace}/{name}"] = float(replicas)
    return usage
