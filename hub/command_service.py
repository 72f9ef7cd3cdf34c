"""CommandService: issue, read, list and watch signed commands.

Validation happens here, before anything is stored or signed: the action must be
in the catalogue, its parameters typed as the catalogue says, the target a known
node or a selector that matches at least one node, and a cluster-scoped action
must name exactly one node (a selector is refused with `BAD_TARGET`). The issuer
is the caller's verified identity, never a field of the request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta

import grpc

import policy
from hub.audit_log import AuditLog
from hub.auth import current_identity
from hub.command_issuer import MAX_AUDITED_NODES, CommandIssuer, IssueOrder
from hub.command_store import CommandStore
from hub.events import EventPublisher
from hub.metrics import HubMetrics
from hub.policy_gate import PolicyGate
from hub.registry import Registry
from hub.state import store_unavailable
from sentinel import actions
from sentinel.durations import (
    format_time,
    from_proto_duration,
    from_timestamp,
    to_timestamp,
)
from sentinel.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from sentinel.identity import Role, validate_node_id
from sentinel.selectors import parse_selector
from sentinel.v1 import command_pb2, command_pb2_grpc

log = logging.getLogger(__name__)

DEFAULT_TTL = timedelta(minutes=10)
BREAK_GLASS_TTL = timedelta(minutes=15)
MAX_BREAK_GLASS_TTL = timedelta(hours=1)
MAX_TTL = timedelta(days=7)
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


class CommandService(command_pb2_grpc.CommandServiceServicer):
    def __init__(
        self,
        registry: Registry,
        store: CommandStore,
        issuer: CommandIssuer,
        metrics: HubMetrics,
        clock: Callable[[], datetime],
        *,
        gate: PolicyGate,
        events: EventPublisher,
        audit: AuditLog | None = None,
    ) -> None:
        self._audit = audit
        self._registry = registry
        self._store = store
        self._issuer = issuer
        self._gate = gate
        self._events = events
        self._approving = asyncio.Lock()
        self._metrics = metrics
        self._clock = clock

    async def IssueCommand(
        self, request: command_pb2.IssueCommandRequest, context: grpc.aio.ServicerContext
    ) -> command_pb2.IssueCommandResponse:
        spec = actions.lookup(request.action)
        if request.mode not in (
            command_pb2.COMMAND_MODE_UNSPECIFIED,
            command_pb2.COMMAND_MODE_EXECUTE,
            command_pb2.COMMAND_MODE_SHADOW,
        ):
            raise InvalidArgument(f"unknown mode {request.mode}", reason="BAD_MODE")
        params = actions.validate_parameters(spec, request.parameters)
        nodes = self._resolve(spec, request.target)
        identity = current_identity()
        break_glass = self._break_glass(request) if request.HasField("break_glass") else None
        try:
            judgement = await self._gate.judge(
                spec.name,
                params,
                nodes,
                shadow=request.mode == command_pb2.COMMAND_MODE_SHADOW,
                break_glass=break_glass is not None,
            )
        except FailedPrecondition as refusal:
            await self._record_refusal(refusal, str(identity), "", spec.name, nodes)
            raise
        awaiting = judgement.verdict is policy.Verdict.NEEDS_APPROVAL
        order = IssueOrder(
            spec=spec,
            request=request,
            nodes=nodes,
            issuer=str(identity),
            ttl=_ttl(request),
            policy_version=judgement.policy_version,
            awaiting_approval=awaiting,
            break_glass=break_glass,
        )
        with store_unavailable("issuing a command"):
            command, created = await self._issuer.issue(order)
        if created and not awaiting:  # a retry with the same key was counted already
            await self._gate.record(judgement)
        if created and break_glass is not None:
            await self._announce_break_glass(command, break_glass)
        self._metrics.commands_issued(spec.name, len(command.nodes))
        return command_pb2.IssueCommandResponse(command=command)

    async def ApproveCommand(
        self, request: command_pb2.ApproveCommandRequest, context: grpc.aio.ServicerContext
    ) -> command_pb2.ApproveCommandResponse:
        async with self._approving:  # one approval at a time: a command is sent once
            return await self._approve(request)

    async def _approve(
        self, request: command_pb2.ApproveCommandRequest
    ) -> command_pb2.ApproveCommandResponse:
        command = self._get(request.command_id)
        if from_timestamp(command.not_after) <= self._clock():
            raise FailedPrecondition(
                f"command {command.command_id} expired before it was approved; issue it again",
                reason="COMMAND_EXPIRED",
            )
        if command.state != command_pb2.COMMAND_STATE_AWAITING_APPROVAL:
            raise FailedPrecondition(
                f"command {command.command_id} is not awaiting approval",
                reason="NOT_AWAITING_APPROVAL",
            )
        approver = str(current_identity())
        if approver == command.issuer:
            raise FailedPrecondition(
                "a command needs another person's approval than its issuer's",
                reason="SELF_APPROVAL",
            )
        spec = actions.lookup(command.action)
        nodes = [n.node_id for n in command.nodes]
        try:
            judgement = await self._gate.judge(
                spec.name,
                actions.validate_parameters(spec, command.parameters),
                nodes,
                shadow=command.mode == command_pb2.COMMAND_MODE_SHADOW,
                break_glass=command.HasField("break_glass")
                and from_timestamp(command.break_glass.expires_at) > self._clock(),
                approved=True,
            )
        except FailedPrecondition as refusal:
            await self._record_refusal(refusal, approver, command.command_id, spec.name, nodes)
            raise
        approval = command_pb2.Approval(
            approver=approver, approved_at=to_timestamp(self._clock()), comment=request.comment
        )
        with store_unavailable("approving a command"):
            approved = await self._issuer.approve(command.command_id, approval)
        await self._gate.record(judgement)
        return command_pb2.ApproveCommandResponse(command=approved)

    async def _record_refusal(
        self,
        refusal: FailedPrecondition,
        actor: str,
        command_id: str,
        action: str,
        nodes: list[str],
    ) -> None:
        """The policy gate refused: say so in the audit log (the refusal stands either way)."""
        if self._audit is None or refusal.reason != "POLICY_DENIED":
            return
        try:
            await self._audit.append(
                "command.refused",
                actor=actor,
                target=command_id,
                outcome="refused",
                reason=refusal.reason,
                policy_version=int(refusal.details.get("policy_version", "0")),
                details={
                    "action": action,
                    "node_count": len(nodes),
                    "nodes": nodes[:MAX_AUDITED_NODES],
                    "violations": [
                        {"rule": v.subject, "kind": v.kind, "why": v.description}
                        for v in refusal.violations[:MAX_AUDITED_NODES]
                    ],
                },
            )
        except Unavailable as exc:
            log.error("refusal of %s by policy not audited: %s", action, exc)

    def _break_glass(self, request: command_pb2.IssueCommandRequest) -> command_pb2.BreakGlass:
        identity = current_identity()
        if identity.role is not Role.ADMIN:
            raise PermissionDenied(
                "only an admin may break the glass", reason="BREAK_GLASS_ADMIN_ONLY"
            )
        reason = request.break_glass.reason.strip()
        if not reason:
            raise InvalidArgument("break-glass needs a reason", reason="BREAK_GLASS_REASON")
        ttl = (
            from_proto_duration(request.break_glass.ttl)
            if request.break_glass.HasField("ttl")
            else BREAK_GLASS_TTL
        )
        if not timedelta(0) < ttl <= MAX_BREAK_GLASS_TTL:
            raise InvalidArgument(
                "a break-glass override lasts at most an hour", reason="BREAK_GLASS_TTL"
            )
        return command_pb2.BreakGlass(
            admin=str(identity), reason=reason, expires_at=to_timestamp(self._clock() + ttl)
        )

    async def _announce_break_glass(
        self, command: command_pb2.Command, glass: command_pb2.BreakGlass
    ) -> None:
        log.warning(
            "BREAK-GLASS by %s for command %s (%s): %s",
            glass.admin,
            command.command_id,
            command.action,
            glass.reason,
        )
        for node in command.nodes:
            await self._events.publish(
                "policy",
                "break_glass",
                node.node_id,
                {
                    "command_id": command.command_id,
                    "action": command.action,
                    "admin": glass.admin,
                    "reason": glass.reason,
                    "expires_at": format_time(from_timestamp(glass.expires_at)),
                },
            )

    async def GetCommand(
        self, request: command_pb2.GetCommandRequest, context: grpc.aio.ServicerContext
    ) -> command_pb2.GetCommandResponse:
        return command_pb2.GetCommandResponse(command=self._get(request.command_id))

    async def ListCommands(
        self, request: command_pb2.ListCommandsRequest, context: grpc.aio.ServicerContext
    ) -> command_pb2.ListCommandsResponse:
        if request.page_size < 0:
            raise InvalidArgument("page_size must not be negative", reason="BAD_PAGE_SIZE")
        page_size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        ids = self._store.command_ids()
        if request.page_token:
            after = _decode_token(request.page_token, ids)
            ids = ids[ids.index(after) + 1 :]
        page: list[command_pb2.Command] = []
        for command_id in ids:
            command = self._store.get(command_id)
            if command is None or not _matches(command, request):
                continue
            if len(page) == page_size:
                return command_pb2.ListCommandsResponse(
                    commands=page, next_page_token=_encode_token(page[-1].command_id)
                )
            page.append(command)
        return command_pb2.ListCommandsResponse(commands=page)

    async def WatchCommand(
        self, request: command_pb2.WatchCommandRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[command_pb2.WatchCommandResponse]:
        """Every node's status first, then each change; the first and the last message
        also carry the whole command (the last one as it ended)."""
        command_id = request.command_id
        first: command_pb2.Command | None = self._get(command_id)
        seen = 0
        while True:
            seen, statuses = self._store.statuses_since(command_id, seen)
            done = self._store.all_final(command_id)
            for index, status in enumerate(statuses):
                response = command_pb2.WatchCommandResponse(status=status)
                if first is not None:
                    response.command.CopyFrom(first)
                    first = None
                if done and index == len(statuses) - 1:
                    response.command.CopyFrom(self._get(command_id))
                yield response
            if done:
                return
            await self._store.wait_for(
                lambda: self._store.last_change(command_id) > seen  # noqa: B023
            )

    def _get(self, command_id: str) -> command_pb2.Command:
        command = self._store.get(command_id)
        if command is None:
            raise NotFound(f"no command {command_id!r}", reason="COMMAND_NOT_FOUND")
        return command

    def _resolve(self, spec: actions.ActionSpec, target: command_pb2.CommandTarget) -> list[str]:
        kind = target.WhichOneof("target")
        if kind == "node_id":
            node_id = validate_node_id(target.node_id)
            if self._registry.get(node_id) is None:
                raise NotFound(f"no node {node_id!r} in the fleet", reason="UNKNOWN_NODE")
            return [node_id]
        if kind == "label_selector":
            if spec.scope is actions.Scope.CLUSTER:
                raise InvalidArgument(
                    f"{spec.name} changes one cluster object: target the one node that acts "
                    "for the cluster, not a selector",
                    reason="BAD_TARGET",
                )
            nodes = self._registry.select(parse_selector(target.label_selector))
            if not nodes:
                raise FailedPrecondition(
                    f"selector {target.label_selector!r} matches no node",
                    reason="NO_MATCHING_NODES",
                )
            return [n.node_id for n in nodes]
        raise InvalidArgument("a command needs a node_id or a label_selector", reason="BAD_TARGET")


def _ttl(request: command_pb2.IssueCommandRequest) -> timedelta:
    if not request.HasField("ttl"):
        return DEFAULT_TTL
    ttl = from_proto_duration(request.ttl)
    if not timedelta(0) < ttl <= MAX_TTL:
        raise InvalidArgument(
            f"ttl must be positive and at most {MAX_TTL.days} days", reason="BAD_TTL"
        )
    return ttl


def _matches(command: command_pb2.Command, request: command_pb2.ListCommandsRequest) -> bool:
    if request.action and command.action != request.action:
        return False
    nodes = [n for n in command.nodes if not request.node_id or n.node_id == request.node_id]
    if not nodes:
        return False
    return not request.state or any(n.state == request.state for n in nodes)


def _encode_token(command_id: str) -> str:
    return base64.urlsafe_b64encode(command_id.encode()).decode()


def _decode_token(token: str, ids: list[str]) -> str:
    try:
        command_id = base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidArgument(
            "page_token is not one this hub issued", reason="BAD_PAGE_TOKEN"
        ) from exc
    if command_id not in ids:
        raise InvalidArgument("page_token is not one this hub issued", reason="BAD_PAGE_TOKEN")
    return command_id
