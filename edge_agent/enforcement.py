"""Local policy: the agent judges every command again with its own cached bundle.

Node-scope rules only (freeze windows, per-node rate limits, local bounds, approval
requirements); fleet-scope rules need the whole fleet and are the hub's. Rate limits
count what this agent itself ran (`RateHistory`, on disk), so a command signed
directly with the command key, bypassing the hub, still meets the limit, and neither
a hub outage nor an agent restart resets it. Past the bundle's expiry the agent is in
safe mode: only the bundle's safe actions run.
"""

from __future__ import annotations

from collections.abc import Mapping

import policy
from edge_agent.policy_cache import PolicyCache
from edge_agent.rate_history import RateHistory
from edge_agent.trust import AgentClock
from sentinel import actions
from sentinel.durations import from_timestamp
from sentinel.refusals import CommandRefused, Reason
from sentinel.v1 import command_pb2

NODE_ONLY = frozenset({policy.Scope.NODE})


class Enforcement:
    def __init__(self, policies: PolicyCache, history: RateHistory, clock: AgentClock) -> None:
        self.policies = policies
        self.history = history
        self._clock = clock

    def safe_mode(self) -> bool:
        return self.policies.safe_mode(self._clock.now())

    def judge(
        self,
        payload: command_pb2.CommandPayload,
        params: Mapping[str, actions.ParamValue],
        labels: Mapping[str, str],
    ) -> list[str]:
        """Judge the command: raise CommandRefused(POLICY_DENIED) with the rules' reasons in
        plain words, or return the rate-limit keys to `record` once it is sure to run."""
        now = self._clock.now()
        bundle = self.policies.bundle
        proposal = policy.Proposal(
            action=payload.action,
            node_id=payload.audience,
            labels=labels,
            params=params,
            shadow=payload.mode == command_pb2.COMMAND_MODE_SHADOW,
            target=actions.target_of(payload.action, params),
            break_glass=payload.HasField("break_glass")
            and from_timestamp(payload.break_glass.expires_at) > now,
        )
        decision = policy.evaluate(
            bundle,
            proposal,
            now,
            history=self.history,
            scopes=NODE_ONLY,
            safe_mode=self.policies.safe_mode(now),
        )
        approved = decision.verdict is policy.Verdict.NEEDS_APPROVAL and bool(payload.approvals)
        if decision.verdict is not policy.Verdict.ALLOW and not approved:
            because = "; ".join(policy.explain(decision)) or decision.verdict.value
            raise CommandRefused(
                Reason.POLICY_DENIED,
                f"policy version {bundle.version}: {because}",
                policy_version=bundle.version,
            )
        return policy.rate_keys(bundle, proposal, scopes=NODE_ONLY)

    def record(self, keys: list[str]) -> None:
        """Count a run against the limits (before it starts: a crash still counts)."""
        self.history.record(keys, self._clock.now())

    def close(self) -> None:
        self.history.close()
