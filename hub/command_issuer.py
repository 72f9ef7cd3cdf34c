"""Turns an issue request into signed envelopes on JetStream, one per target node.

Order of work, so a crash at any point loses nothing and runs nothing twice:
1. claim the idempotency key (KV create: atomic across hub replicas);
2. append the intent to the audit log (`command.issued`; `break_glass` before it when
   an admin overrode the freeze windows; `command.approved` before an approval sends):
   if the audit log cannot be written, nothing is stored or sent and the caller gets
   UNAVAILABLE (AUDIT_UNAVAILABLE) — actuation fails closed;
3. store the command, listing its nodes (every node is pending);
4. make sure each node's durable consumer exists, so a node that is offline now
   receives the command when it returns;
5. sign and publish one envelope per node to `sentinel.cmd.<node>` with
   `Nats-Msg-Id: <command_id>/<node_id>`, awaiting every PubAck (JetStream never evicts
   a command for room: a node whose share is full refuses it, RESOURCE_EXHAUSTED
   NODE_QUEUE_FULL);
6. announce `command.issued` per node, then mark the command published.
A retry with the same key after a crash between 3 and 6 publishes again; JetStream
drops the copies inside its dedup window and the agent's journal refuses any later
one as a replay, so no node executes twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import nats.errors
from nats.js import JetStreamContext, api
from nats.js.errors import APIError, BadRequestError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from hub.audit_log import AuditLog
from hub.command_store import CommandStore
from hub.events import EventPublisher
from hub.keys import KeyManager
from hub.state import COMMANDS_RETENTION
from hub.storage_budget import stream_full, subject_full
from sentinel import subjects
from sentinel.actions import ActionSpec
from sentinel.durations import format_time, from_timestamp, to_timestamp
from sentinel.errors import FailedPrecondition, ResourceExhausted, Unavailable
from sentinel.v1 import command_pb2

log = logging.getLogger(__name__)

# How long JetStream waits for an agent's ack before it delivers a command again.
COMMAND_ACK_WAIT_S = 60.0
PUBLISH_CONCURRENCY = 256
# An audit record lists this many target nodes at most (and always how many there were).
MAX_AUDITED_NODES = 1000


@dataclass(frozen=True, slots=True)
class IssueOrder:
    """A validated request: what to run, where, and on whose authority."""

    spec: ActionSpec
    request: command_pb2.IssueCommandRequest
    nodes: list[str]
    issuer: str
    ttl: timedelta
    policy_version: int = 0
    # Policy wants a human: store the command, publish nothing until it is approved.
    awaiting_approval: bool = False
    break_glass: command_pb2.BreakGlass | None = None


class CommandIssuer:
    def __init__(
        self,
        js: JetStreamContext,
        store: CommandStore,
        *,
        idempotency: KeyValue,
        keys: KeyManager,
        events: EventPublisher,
        clock: Callable[[], datetime],
        audit: AuditLog | None = None,
    ) -> None:
        self._js = js
        self._audit = audit
        self._store = store
        self._idempotency = idempotency
        self._keys = keys
        self._events = events
        self._clock = clock
        self._consumers: set[str] = set()

    async def issue(self, order: IssueOrder) -> tuple[command_pb2.Command, bool]:
        """The command, and whether this call created it (False: an idempotent retry)."""
        command = self._new_command(order)
        if order.request.idempotency_key:
            first = await self._claim(order, command.command_id)
            if first is not None:
                return await self._resume(first, order), False
        try:
            await self._record_intent(order, command)
        except Unavailable:
            await self._release(order)
            raise
        await self._store.put_command(command)
        if not order.awaiting_approval:
            await self._publish_all(command)
        return self._store.get(command.command_id) or command, True

    async def approve(self, command_id: str, approval: command_pb2.Approval) -> command_pb2.Command:
        """Record the approval and send the command (the caller judged it again)."""
        command = self._store.spec(command_id)
        if command is None:
            raise FailedPrecondition(f"no command {command_id!r}", reason="COMMAND_NOT_FOUND")
        command.approvals.append(approval)
        if self._audit is not None:
            await self._audit.append(
                "command.approved",
                actor=approval.approver,
                target=command_id,
                outcome="publishing",
                policy_version=command.policy_version,
                details={"action": command.action, "comment": approval.comment},
            )
        for node in command.nodes:
            node.state = command_pb2.COMMAND_STATE_PENDING
        await self._store.put_command(command)
        await self._publish_all(command)
        return self._store.get(command_id) or command

    async def ensure_consumer(self, node_id: str, *, known_ok: bool = True) -> None:
        """The node's durable consumer: every command for it, kept while it is away.
        `known_ok=False` (at each hello) asks JetStream again, so a consumer deleted by
        hand comes back; creating an identical consumer is a no-op there."""
        name = subjects.command_consumer(node_id)
        if known_ok and name in self._consumers:
            return
        config = api.ConsumerConfig(
            durable_name=name,
            filter_subject=subjects.command_subject(node_id),
            deliver_policy=api.DeliverPolicy.ALL,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=COMMAND_ACK_WAIT_S,
            max_ack_pending=256,
        )
        try:
            await self._js.add_consumer(subjects.COMMANDS_STREAM, config)
        except BadRequestError as exc:  # exists with another config: keep it as it is
            log.warning("consumer %s exists with another configuration: %s", name, exc)
        self._consumers.add(name)

    def _new_command(self, order: IssueOrder) -> command_pb2.Command:
        now = self._clock()
        request = order.request
        command = command_pb2.Command(
            command_id=str(uuid.uuid4()),
            target=request.target,
            action=request.action,
            parameters=request.parameters,
            mode=request.mode or command_pb2.COMMAND_MODE_EXECUTE,
            issuer=order.issuer,
            issued_at=to_timestamp(now),
            not_after=to_timestamp(now + order.ttl),
            idempotency_key=request.idempotency_key,
            policy_version=order.policy_version,
        )
        if order.break_glass is not None:
            command.break_glass.CopyFrom(order.break_glass)
        state = command_pb2.COMMAND_STATE_PENDING
        if order.awaiting_approval:
            state = command_pb2.COMMAND_STATE_AWAITING_APPROVAL
            command.required_approvals = 1
        command.state = state
        for node_id in order.nodes:
            command.nodes.add(node_id=node_id, state=state)
        return command

    async def _claim(self, order: IssueOrder, command_id: str) -> str | None:
        """None if this request now owns the key; else the id of the command that does."""
        key = _idempotency_key(order.issuer, order.request.idempotency_key)
        try:
            await self._idempotency.create(key, command_id.encode())
            return None
        except KeyWrongLastSequenceError:
            entry = await self._idempotency.get(key)
            return (entry.value or b"").decode()

    async def _record_intent(self, order: IssueOrder, command: command_pb2.Command) -> None:
        """The audit records that must exist before anything is stored or sent."""
        if self._audit is None:
            return
        nodes = [n.node_id for n in command.nodes]
        if order.break_glass is not None:
            glass = order.break_glass
            await self._audit.append(
                "break_glass",
                actor=order.issuer,
                target=command.command_id,
                outcome="overridden",
                reason=glass.reason,
                policy_version=order.policy_version,
                details={
                    "action": command.action,
                    "expires_at": format_time(from_timestamp(glass.expires_at)),
                    "node_count": len(nodes),
                },
            )
        await self._audit.append(
            "command.issued",
            actor=order.issuer,
            target=command.command_id,
            outcome="awaiting_approval" if order.awaiting_approval else "publishing",
            policy_version=order.policy_version,
            details=command_details(command),
        )

    async def _release(self, order: IssueOrder) -> None:
        """Give the idempotency key back after an intent that could not be recorded, so a
        retry with the same key is not refused as orphaned (best effort: NATS may be away)."""
        if not order.request.idempotency_key:
            return
        key = _idempotency_key(order.issuer, order.request.idempotency_key)
        try:
            await self._idempotency.delete(key)
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("idempotency key of an unrecorded command not released: %r", exc)

    async def _resume(self, command_id: str, order: IssueOrder) -> command_pb2.Command:
        first = self._store.spec(command_id)
        if first is None:  # the first attempt died before it stored the command
            raise FailedPrecondition(
                f"idempotency key {order.request.idempotency_key!r} is held by command "
                f"{command_id}, which was never stored; retry with a new key",
                reason="IDEMPOTENCY_KEY_ORPHANED",
            )
        same = (
            first.action == order.request.action
            and first.target == order.request.target
            and dict(first.parameters) == dict(order.request.parameters)
            and first.mode == (order.request.mode or command_pb2.COMMAND_MODE_EXECUTE)
        )
        if not same:
            raise FailedPrecondition(
                f"idempotency key {order.request.idempotency_key!r} was used for another "
                f"command ({command_id})",
                reason="IDEMPOTENCY_KEY_REUSED",
            )
        if not first.published and len(first.approvals) >= first.required_approvals:
            await self._publish_all(first)
        return self._store.get(command_id) or first

    async def _publish_all(self, command: command_pb2.Command) -> None:
        limit = asyncio.Semaphore(PUBLISH_CONCURRENCY)
        node_ids = [n.node_id for n in command.nodes]

        async def one(node_id: str) -> None:
            async with limit:
                await self.ensure_consumer(node_id)
                envelope = self._keys.sign_command(_payload(command, node_id))
                try:
                    await self._js.publish(
                        subjects.command_subject(node_id),
                        envelope,
                        stream=subjects.COMMANDS_STREAM,
                        headers={
                            "Nats-Msg-Id": subjects.command_msg_id(command.command_id, node_id)
                        },
                    )
                except APIError as exc:
                    if stream_full(exc):
                        raise _refused_for_room(command.command_id, node_id, exc) from exc
                    raise

        try:
            async with asyncio.TaskGroup() as group:
                for node_id in node_ids:
                    group.create_task(one(node_id))
        except* (nats.errors.Error, TimeoutError, ResourceExhausted) as failures:
            full = [e for e in failures.exceptions if isinstance(e, ResourceExhausted)]
            if full:
                raise full[0] from full[0].__cause__  # JetStream's refusal
            first = failures.exceptions[0]
            raise FailedPrecondition(
                f"command {command.command_id} stored but not every envelope was published "
                f"({first!r}); retry with the same idempotency key",
                reason="STORE_UNAVAILABLE",
            ) from first

        async def announce(node_id: str) -> None:
            async with limit:
                await self._events.publish_once(
                    "command",
                    "issued",
                    node_id,
                    {"command_id": command.command_id, "action": command.action, "reason": ""},
                    msg_id=f"{command.command_id}/{node_id}/issued",
                )

        await asyncio.gather(*(announce(node_id) for node_id in node_ids))
        # Last: a retry of a command not marked published publishes and announces again,
        # and JetStream drops the copies inside its dedup window.
        command.published = True
        await self._store.put_command(command)


def _refused_for_room(command_id: str, node_id: str, exc: APIError) -> ResourceExhausted:
    """JetStream refused an envelope for want of room (it never evicts a command): the
    node's own share is full (NODE_QUEUE_FULL), or the whole stream is (COMMANDS_FULL).
    Room comes back as the oldest commands expire."""
    retry_after_s = COMMANDS_RETENTION.total_seconds()
    if subject_full(exc):
        return ResourceExhausted(
            f"node {node_id}'s command queue is full (its share of the commands stream, "
            f"kept {COMMANDS_RETENTION.days} days); command {command_id} is stored but was "
            "not sent to it: retry with the same idempotency key once older commands expire",
            retry_after_s=retry_after_s,
            reason="NODE_QUEUE_FULL",
            node_id=node_id,
            command_id=command_id,
        )
    return ResourceExhausted(
        f"the commands stream is full ({exc.description}); command {command_id} is stored "
        f"but was not sent to node {node_id}: retry with the same idempotency key once "
        "older commands expire",
        retry_after_s=retry_after_s,
        reason="COMMANDS_FULL",
        node_id=node_id,
        command_id=command_id,
    )


def _payload(command: command_pb2.Command, node_id: str) -> bytes:
    payload = command_pb2.CommandPayload(
        command_id=command.command_id,
        issuer=command.issuer,
        issued_at=command.issued_at,
        not_after=command.not_after,
        audience=node_id,
        action=command.action,
        parameters=command.parameters,
        mode=command.mode,
        policy_version=command.policy_version,
        selector=command.target.label_selector,
        approvals=command.approvals,
    )
    if command.HasField("break_glass"):
        payload.break_glass.CopyFrom(command.break_glass)
    return payload.SerializeToString(deterministic=True)


def command_details(command: command_pb2.Command) -> dict[str, object]:
    """What an audit record says about a command (at most MAX_AUDITED_NODES node ids)."""
    nodes = [n.node_id for n in command.nodes]
    return {
        "action": command.action,
        "parameters": {k: _parameter_text(v) for k, v in sorted(command.parameters.items())},
        "mode": command_pb2.CommandMode.Name(command.mode).removeprefix("COMMAND_MODE_").lower(),
        "selector": command.target.label_selector,
        "node_count": len(nodes),
        "nodes": nodes[:MAX_AUDITED_NODES],
        "not_after": format_time(from_timestamp(command.not_after)),
    }


def _parameter_text(value: command_pb2.ParameterValue) -> str:
    kind = value.WhichOneof("kind")
    if kind == "duration_value":
        return value.duration_value.ToJsonString()
    return str(getattr(value, kind)) if kind else ""


def _idempotency_key(issuer: str, key: str) -> str:
    return hashlib.sha256(f"{issuer}\0{key}".encode()).hexdigest()
