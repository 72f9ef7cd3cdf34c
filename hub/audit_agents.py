"""Adds what agents ship from their own audit journals to the hub's chain.

An agent publishes each record of its journal (the exact line) on
`sentinel.audit.node.<node_id>` (stream SENTINEL_AGENT_AUDIT, with
`Nats-Msg-Id: <node>/<journal>/<local seq>`); the durable consumer `hub-agent-audit`
reads them here. Invariants:
- the node is the subject's token, never the payload's: a record whose actor is not
  that node's SPIFFE id is dropped and counted (NODE_ID_MISMATCH), and so is one that
  does not parse or whose own hash does not hold (MALFORMED);
- each journal (node, journal id) is added in order and once: the KV bucket
  `sentinel_audit` keeps per journal the last local seq and hash added; a copy at or
  below it is dropped (DUPLICATE); the next one must chain onto it. One that skips
  ahead is put back a few times (the missing ones may be redelivered first), then
  added with the gap noted, so a record lost on the way never stalls a journal;
- the central record is `agent.<the agent's action>`, by the node, with the agent's
  seq, time, prev, hash and details under `details`: the agent's own record can be
  rebuilt, and its hash checked, from the hub's log alone. It is appended with
  `Nats-Msg-Id: agent/<node>/<journal>/<seq>`, so a crash between that append and the
  KV write does not add it twice (within the audit stream's dedup window).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass

from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from hub.audit_log import AuditLog
from hub.state import consume, ensure_stream, store_unavailable
from hub.storage_budget import StorageBudget
from sentinel import subjects
from sentinel.audit import ZERO_HASH, AuditRecord, RecordError, parse_record
from sentinel.errors import SentinelError

log = logging.getLogger(__name__)

AGENT_AUDIT_RETENTION_S = 30 * 86400.0
FETCH_BATCH = 64
# Deliveries of a record that skips ahead of its journal before it is added anyway.
GAP_PATIENCE = 5
GAP_RETRY_S = 2.0
_PREFIX = subjects.node_audit_subject("x").rpartition(".")[0]
_JOURNAL_ID = re.compile(r"[0-9a-f]{8,64}")


@dataclass(frozen=True, slots=True)
class _Mark:
    seq: int
    hash: str


def agent_audit_stream(budget: StorageBudget) -> api.StreamConfig:
    """Each node's journal records on its own subject; a node whose share is full is
    refused its next record (and ships it again later), never another node's evicted."""
    return budget.stream_config(
        budget.agent_audit,
        subjects=[subjects.AGENT_AUDIT_ALL],
        max_age=AGENT_AUDIT_RETENTION_S,
        duplicate_window=120.0,
    )


class AgentAuditReader:
    def __init__(self, js: JetStreamContext, marks: KeyValue, audit: AuditLog) -> None:
        self._js = js
        self._marks = marks
        self._audit = audit
        self.added = 0

    @classmethod
    async def open(
        cls, js: JetStreamContext, audit: AuditLog, budget: StorageBudget | None = None
    ) -> AgentAuditReader:
        await ensure_stream(js, agent_audit_stream(budget or StorageBudget()))
        marks = await js.key_value(subjects.AUDIT_BUCKET)
        return cls(js, marks, audit)

    async def run(self) -> None:
        await consume(
            self._js,
            stream=subjects.AGENT_AUDIT_STREAM,
            subject=subjects.AGENT_AUDIT_ALL,
            durable=subjects.AGENT_AUDIT_CONSUMER,
            batch=FETCH_BATCH,
            what="agent audit records",
            handle=self._take_each,
        )

    async def _take_each(self, messages: list[Msg]) -> None:
        for message in messages:
            await self._take(message)

    async def _take(self, message: Msg) -> None:
        try:
            done = await self.handle(
                message.subject, message.data, message.metadata.num_delivered or 1
            )
        except SentinelError as exc:  # the log or KV is away: try again later
            log.warning("agent audit record not added yet: %s", exc)
            await message.nak(delay=GAP_RETRY_S)
            return
        if done:
            await message.ack()
        else:
            await message.nak(delay=GAP_RETRY_S)

    async def handle(self, subject: str, data: bytes, deliveries: int = 1) -> bool:
        """False: put it back for later (it skips ahead of its journal)."""
        node_id = subjects.node_of_subject(subject, _PREFIX)
        try:
            record = parse_record(data)
            journal = record.details.get("journal_id")
            if not isinstance(journal, str) or not _JOURNAL_ID.fullmatch(journal):
                raise RecordError("no journal_id")
        except RecordError as exc:
            self._drop("MALFORMED", f"undecodable agent audit record on {subject}: {exc}")
            return True
        if not node_id or record.actor != self._audit.node_actor(node_id):
            self._drop("NODE_ID_MISMATCH", f"record by {record.actor!r} published on {subject}")
            return True
        key = f"agent.{node_id}.{journal}"
        mark = await self._mark(key)
        if record.seq <= mark.seq:
            self._drop("DUPLICATE", "")
            return True
        gap = record.seq != mark.seq + 1 or record.prev != mark.hash
        if gap and deliveries < GAP_PATIENCE:
            return False
        await self._add(node_id, journal, record, gap_after=mark.seq if gap else None)
        with store_unavailable("recording an agent journal's mark"):
            await self._marks.put(
                key, json.dumps({"seq": record.seq, "hash": record.hash}).encode()
            )
        self.added += 1
        return True

    async def _add(
        self, node_id: str, journal: str, record: AuditRecord, *, gap_after: int | None
    ) -> None:
        details: dict[str, object] = {
            "journal_id": journal,
            "local_seq": record.seq,
            "local_time": record.time,
            "local_prev": record.prev,
            "local_hash": record.hash,
            "local_details": record.details,
        }
        if gap_after is not None:
            log.warning(
                "agent %s journal %s: records after seq %d missing before seq %d",
                node_id,
                journal,
                gap_after,
                record.seq,
            )
            details["gap_after"] = gap_after
        await self._audit.append(
            f"agent.{record.action}",
            actor=record.actor,
            target=record.target,
            outcome=record.outcome,
            reason=record.reason,
            policy_version=record.policy_version,
            details=details,
            msg_id=f"agent/{subjects.agent_audit_msg_id(node_id, journal, record.seq)}",
        )

    async def _mark(self, key: str) -> _Mark:
        with store_unavailable("reading an agent journal's mark"):
            try:
                entry = await self._marks.get(key)
            except KeyNotFoundError:
                return _Mark(0, ZERO_HASH)
        value = json.loads(entry.value or b"{}")
        return _Mark(int(value.get("seq", 0)), str(value.get("hash", ZERO_HASH)))

    def _drop(self, reason: str, why: str) -> None:
        self._audit.metrics.agent_dropped.labels(reason=reason).inc()
        if why:
            log.warning("dropped an agent audit record (%s): %s", reason, why)
