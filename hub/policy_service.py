"""PolicyService: the signed policy bundles (every version kept) and `EvaluatePolicy`.

`EvaluatePolicy` answers "would this action be allowed on node X at time T" with the
same evaluation the hub runs before it signs a command (node and fleet rules, the
hub's record of what it sent) — for node-scope rules the same answer the agent gives,
which keeps its own record of what it ran.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from datetime import datetime, timedelta

import grpc

import policy
from hub.audit_log import AuditLog
from hub.auth import current_identity
from hub.events import EventPublisher
from hub.policy_gate import PolicyGate
from hub.policy_store import PolicyStore, StoredPolicy
from hub.registry import Registry
from hub.state import store_unavailable
from sentinel import actions
from sentinel.durations import from_timestamp, to_timestamp
from sentinel.errors import InvalidArgument, NotFound
from sentinel.identity import validate_node_id
from sentinel.v1 import policy_pb2, policy_pb2_grpc, signing_pb2

DEFAULT_PAGE_SIZE = 50
MAX_EVALUATION_DISTANCE = timedelta(days=366)


class PolicyService(policy_pb2_grpc.PolicyServiceServicer):
    def __init__(
        self,
        store: PolicyStore,
        registry: Registry,
        gate: PolicyGate,
        events: EventPublisher,
        clock: Callable[[], datetime],
        *,
        audit: AuditLog | None = None,
    ) -> None:
        self._audit = audit
        self._store = store
        self._registry = registry
        self._gate = gate
        self._events = events
        self._clock = clock

    async def GetPolicy(
        self, request: policy_pb2.GetPolicyRequest, context: grpc.aio.ServicerContext
    ) -> policy_pb2.GetPolicyResponse:
        return policy_pb2.GetPolicyResponse(bundle=describe(self._store.get(request.version)))

    async def PutPolicy(
        self, request: policy_pb2.PutPolicyRequest, context: grpc.aio.ServicerContext
    ) -> policy_pb2.PutPolicyResponse:
        author = str(current_identity())
        old_version = self._store.current.bundle.version
        with store_unavailable("storing a policy"):
            stored = await self._store.put(request.source_yaml.encode(), author)
        if self._audit is not None:  # unavailable: the caller is told, the policy stands
            await self._audit.append(
                "policy.changed",
                actor=author,
                target=f"policy/{stored.bundle.version}",
                outcome="applied",
                policy_version=stored.bundle.version,
                details={
                    "old_version": old_version,
                    "new_version": stored.bundle.version,
                    "sha256": stored.bundle.sha256,
                },
            )
        await self._events.publish(
            "policy",
            "updated",
            "hub",
            {"version": stored.bundle.version, "sha256": stored.bundle.sha256, "author": author},
        )
        return policy_pb2.PutPolicyResponse(bundle=describe(stored))

    async def ListPolicyVersions(
        self, request: policy_pb2.ListPolicyVersionsRequest, context: grpc.aio.ServicerContext
    ) -> policy_pb2.ListPolicyVersionsResponse:
        if request.page_size < 0:
            raise InvalidArgument("page_size must not be negative", reason="BAD_PAGE_SIZE")
        size = request.page_size or DEFAULT_PAGE_SIZE
        versions = self._store.versions()
        if request.page_token:
            below = _decode_token(request.page_token)
            versions = [v for v in versions if v.bundle.version < below]
        page = versions[:size]
        token = _encode_token(page[-1].bundle.version) if len(versions) > size else ""
        return policy_pb2.ListPolicyVersionsResponse(
            bundles=[describe(v, summary=True) for v in page], next_page_token=token
        )

    async def EvaluatePolicy(
        self, request: policy_pb2.EvaluatePolicyRequest, context: grpc.aio.ServicerContext
    ) -> policy_pb2.EvaluatePolicyResponse:
        node_id = validate_node_id(request.node_id)
        node = self._registry.get(node_id)
        if node is None:
            raise NotFound(f"no node {node_id!r} in the fleet", reason="UNKNOWN_NODE")
        spec = actions.lookup(request.action)
        params = actions.validate_parameters(spec, request.parameters)
        now = self._clock()
        at = from_timestamp(request.at) if request.HasField("at") else now
        if abs(at - now) > MAX_EVALUATION_DISTANCE:
            raise InvalidArgument(
                "evaluate at most a year from now (a rate limit's history is only the hub's "
                "recent past anyway)",
                reason="BAD_TIME",
            )
        decision = await self._gate.decide(spec.name, params, node_id, at, request.policy_version)
        return policy_pb2.EvaluatePolicyResponse(decision=decision_proto(decision, at))


def describe(stored: StoredPolicy, *, summary: bool = False) -> policy_pb2.PolicyBundle:
    bundle = policy_pb2.PolicyBundle(
        version=stored.bundle.version,
        created_at=to_timestamp(stored.created_at),
        expires_at=to_timestamp(stored.bundle.expires_at),
        author=stored.author,
        sha256=bytes.fromhex(stored.bundle.sha256),
    )
    if not summary:
        bundle.source_yaml = stored.bundle.source.decode()
        bundle.envelope.CopyFrom(signing_pb2.SignedEnvelope.FromString(stored.envelope))
    return bundle


_VERDICTS = {
    policy.Verdict.ALLOW: policy_pb2.VERDICT_ALLOW,
    policy.Verdict.DENY: policy_pb2.VERDICT_DENY,
    policy.Verdict.NEEDS_APPROVAL: policy_pb2.VERDICT_NEEDS_APPROVAL,
}
_SCOPES = {
    policy.Scope.NODE: policy_pb2.RULE_SCOPE_NODE,
    policy.Scope.FLEET: policy_pb2.RULE_SCOPE_FLEET,
}


def decision_proto(decision: policy.Decision, at: datetime) -> policy_pb2.PolicyDecision:
    return policy_pb2.PolicyDecision(
        verdict=_VERDICTS[decision.verdict],
        policy_version=decision.policy_version,
        evaluated_at=to_timestamp(at),
        rules=[
            policy_pb2.RuleResult(
                rule_id=r.rule_id,
                kind=r.kind,
                scope=_SCOPES[r.scope],
                verdict=_VERDICTS[r.verdict],
                reason=r.reason,
                details=dict(r.details),
            )
            for r in decision.results
        ],
    )


def _encode_token(version: int) -> str:
    return base64.urlsafe_b64encode(str(version).encode()).decode()


def _decode_token(token: str) -> int:
    try:
        return int(base64.urlsafe_b64decode(token.encode()).decode())
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidArgument(
            "page_token is not one this hub issued", reason="BAD_PAGE_TOKEN"
        ) from exc
