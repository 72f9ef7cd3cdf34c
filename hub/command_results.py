"""Reads agents' command results from JetStream and turns each into state and one event.

Results arrive on `sentinel.results.<node_id>` (stream SENTINEL_RESULTS, consumed by
the durable `hub-results`, shared by hub replicas). The node is the subject's token:
a result claiming another node is dropped (once NATS is locked down, a node can
publish only on its own subject).

Exactly once, per (command, node, outcome): the announcement is looked up in the
node's status record; if absent, the outcome is appended to the audit log and the
event published (each with a `Nats-Msg-Id`), then the record is written, then the
result is acked. A crash between those steps
redelivers the result; JetStream drops the repeated event inside its dedup window,
and the record stops it after that. Results of messages whose signature never
verified carry no command id: they are announced (keyed by stream sequence) and
change no command's state, so a forged copy cannot mark a real command refused.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from hub.audit_log import AuditLog
from hub.command_store import FINAL_STATES, CommandStore, StatusRecord
from hub.events import EventPublisher
from hub.metrics import HubMetrics
from hub.state import consume
from sentinel import subjects
from sentinel.durations import to_timestamp
from sentinel.errors import SentinelError
from sentinel.v1 import command_pb2

log = logging.getLogger(__name__)

FETCH_BATCH = 256
_RESULT_PREFIX = subjects.result_subject("x").rpartition(".")[0]
_EVENT_OF_STATE = {
    command_pb2.COMMAND_STATE_EXECUTED: "succeeded",
    command_pb2.COMMAND_STATE_PLANNED: "planned",
    command_pb2.COMMAND_STATE_REFUSED: "refused",
    command_pb2.COMMAND_STATE_EXPIRED: "refused",
    command_pb2.COMMAND_STATE_FAILED: "failed",
    command_pb2.COMMAND_STATE_INTERRUPTED: "failed",
}


class ResultReader:
    def __init__(
        self,
        js: JetStreamContext,
        store: CommandStore,
        events: EventPublisher,
        metrics: HubMetrics,
        clock: Callable[[], datetime],
        *,
        audit: AuditLog | None = None,
    ) -> None:
        self._audit = audit
        self._js = js
        self._store = store
        self._events = events
        self._metrics = metrics
        self._clock = clock

    async def run(self) -> None:
        await consume(
            self._js,
            stream=subjects.RESULTS_STREAM,
            subject=subjects.RESULTS_ALL,
            durable=subjects.RESULTS_CONSUMER,
            batch=FETCH_BATCH,
            what="command results",
            handle=self._take_all,
        )

    async def _take_all(self, messages: list[Msg]) -> None:
        """Results about different (command, node) pairs are independent: record them
        concurrently (each waits on fsynced writes); one pair's results stay in order."""
        by_pair: dict[str, list[Msg]] = {}
        for message in messages:
            by_pair.setdefault(_pair_of(message), []).append(message)

        async def in_order(group: list[Msg]) -> None:
            for message in group:
                await self._take(message)

        await asyncio.gather(*(in_order(group) for group in by_pair.values()))

    async def _take(self, message: Msg) -> None:
        try:
            await self.handle(message.subject, message.data)
        except SentinelError as exc:  # the store is away: leave it for redelivery
            log.warning("command result not recorded yet: %s", exc)
            return
        await message.ack()

    async def handle(self, subject: str, data: bytes) -> None:
        node_id = subjects.node_of_subject(subject, _RESULT_PREFIX)
        result = command_pb2.CommandResult()
        try:
            result.ParseFromString(data)
        except DecodeError:
            self._metrics.command_result_dropped("MALFORMED")
            log.warning("dropped an undecodable command result on %s", subject)
            return
        if not node_id or result.node_id != node_id:
            self._metrics.command_result_dropped("NODE_ID_MISMATCH")
            log.warning("dropped a result for node %r published on %s", result.node_id, subject)
            return
        await self._record(node_id, result)

    async def _record(self, node_id: str, result: command_pb2.CommandResult) -> None:
        outcome = f"{command_pb2.CommandState.Name(result.state)}:{result.reason}"
        owner = result.command_id or f"seq-{result.stream_seq}"
        targeted = bool(result.command_id) and self._store.targets(result.command_id, node_id)
        record = self._store.status(result.command_id, node_id) if targeted else None
        if record is not None and outcome in record.announced:
            return
        await self._audit_outcome(node_id, result, msg_id=f"{owner}/{node_id}/{outcome}")
        await self._announce(node_id, result, msg_id=f"{owner}/{node_id}/{outcome}")
        self._metrics.command_outcome(_EVENT_OF_STATE.get(result.state, "unknown"), result.reason)
        if targeted:
            await self._store.put_status(
                result.command_id, node_id, self._next(record, node_id, result, outcome)
            )

    async def _audit_outcome(
        self, node_id: str, result: command_pb2.CommandResult, msg_id: str
    ) -> None:
        """`node.command.<state>`, once per (command, node, outcome): the status record
        stops repeats after it is written, JetStream's dedup (by `msg_id`) before."""
        if self._audit is None:
            return
        state = command_pb2.CommandState.Name(result.state).removeprefix("COMMAND_STATE_").lower()
        spec = self._store.spec(result.command_id) if result.command_id else None
        details: dict[str, object] = {"message": result.message, "stream_seq": result.stream_seq}
        if not result.command_id:
            details["claimed_command_id"] = result.claimed_command_id
        if spec is not None:
            details["action"] = spec.action
        await self._audit.append(
            f"node.command.{state}",
            actor=self._audit.node_actor(node_id),
            target=result.command_id,
            outcome=state,
            reason=result.reason,
            policy_version=spec.policy_version if spec is not None else 0,
            details=details,
            msg_id=f"result/{msg_id}",
        )

    def _next(
        self,
        record: StatusRecord | None,
        node_id: str,
        result: command_pb2.CommandResult,
        outcome: str,
    ) -> StatusRecord:
        if record is not None and record.state in FINAL_STATES:
            return StatusRecord(record.status, (*record.announced, outcome), record.state)
        status = command_pb2.NodeCommandStatus(
            node_id=node_id,
            state=result.state,
            reason=result.reason,
            message=result.message,
            updated_at=to_timestamp(self._clock()),
            plan=result.changes,
        )
        announced = record.announced if record else ()
        return StatusRecord(status.SerializeToString(), (*announced, outcome), status.state)

    async def _announce(self, node_id: str, result: command_pb2.CommandResult, msg_id: str) -> None:
        data: dict[str, object] = {
            "command_id": result.command_id,
            "reason": result.reason,
            "state": command_pb2.CommandState.Name(result.state).removeprefix("COMMAND_STATE_"),
            "message": result.message,
        }
        if not result.command_id:
            data["stream_seq"] = result.stream_seq
            data["claimed_command_id"] = result.claimed_command_id
        event = _EVENT_OF_STATE.get(result.state, "refused")
        await self._events.publish_once("command", event, node_id, data, msg_id=msg_id)


def _pair_of(message: Msg) -> str:
    """`<command or seq>/<node>` from the result's Nats-Msg-Id (its grouping key only)."""
    msg_id = (message.headers or {}).get("Nats-Msg-Id", "")
    return msg_id.rsplit("/", 1)[0] or message.subject
