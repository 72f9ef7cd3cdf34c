"""The hub's audit log: a hash chain (`sentinel.audit`) in the JetStream stream SENTINEL_AUDIT.

Invariants:
- the stream keeps every record (no age limit) and denies delete and purge; JetStream
  refuses to turn either back on for an existing stream. Its byte budget is reserved
  (hub.storage_budget): nothing else can take its room, and when the log itself is full
  an append is refused (AUDIT_UNAVAILABLE, "the audit log is full"), never an older
  record dropped;
- a record's `seq` is its stream sequence. Every append states
  `Nats-Expected-Last-Sequence` = the head it chained onto, so no two writers (hub
  replicas, or one hub and its own earlier life) can fork the chain: a stale head is
  refused (10071), read again, and the record rebuilt on the new head. Appends within
  one hub are serialised by a lock;
- JetStream appends are atomic: a hub killed mid-append leaves the whole record or
  none, and the next append (by any hub) chains onto whatever the stream holds. A last
  record that does not parse (nothing of ours writes one) is logged and counted, and the
  chain continues past it (`damaged_head_hash`); the verifier names it;
- an append that cannot be written raises Unavailable (reason AUDIT_UNAVAILABLE):
  whatever had to be audited first is refused (actuation fails closed);
- a signed checkpoint is appended every `checkpoint_interval_s` when records were added
  since the last one, and also kept in the KV bucket `sentinel_audit` (a witness outside
  the stream): at open, a stream that lost the witnessed checkpoint (deleted and created
  again) is reported, and recorded as `audit.witness_mismatch`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext, api
from nats.js.errors import APIError, KeyNotFoundError, NotFoundError
from nats.js.kv import KeyValue
from prometheus_client import CollectorRegistry, Counter

from hub.state import ensure_bucket, ensure_stream
from hub.storage_budget import StorageBudget, stream_full
from sentinel import subjects
from sentinel.audit import (
    CHECKPOINT,
    ZERO_HASH,
    AuditRecord,
    RecordError,
    checkpoint_details,
    damaged_head_hash,
    new_record,
    parse_record,
)
from sentinel.envelope import SigningKey
from sentinel.errors import Unavailable
from sentinel.identity import Kind, spiffe_id

log = logging.getLogger(__name__)

WRONG_LAST_SEQUENCE = 10071
EXPECTED_LAST_SEQUENCE = "Nats-Expected-Last-Sequence"
# Records that carry a Nats-Msg-Id (e.g. an agent's result, which a hub restart may
# read twice) are dropped as copies within this window.
DUPLICATE_WINDOW_S = 600.0
# Another writer moving the head this many times in a row means something is wrong.
MAX_APPEND_TRIES = 64
READ_BATCH = 256
_WITNESS_KEY = "checkpoint"


@dataclass(frozen=True, slots=True)
class Head:
    seq: int
    hash: str
    action: str = ""


class AuditMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.appended = Counter(
            "sentinel_hub_audit_records_total",
            "Records this hub appended to the audit log, by action.",
            ["action"],
            registry=registry,
        )
        self.failed = Counter(
            "sentinel_hub_audit_append_failures_total",
            "Audit appends that failed; the operation they recorded was refused.",
            registry=registry,
        )
        self.damaged = Counter(
            "sentinel_hub_audit_damaged_records_total",
            "Last records of the audit stream that did not parse, chained past.",
            registry=registry,
        )
        self.agent_dropped = Counter(
            "sentinel_hub_audit_agent_records_dropped_total",
            "Agent journal records not added to the audit log, by reason.",
            ["reason"],
            registry=registry,
        )


def audit_stream(budget: StorageBudget) -> api.StreamConfig:
    return budget.stream_config(
        budget.audit,
        subjects=[subjects.AUDIT_SUBJECT],
        deny_delete=True,
        deny_purge=True,
        duplicate_window=DUPLICATE_WINDOW_S,
    )


class AuditLog:
    """Create with `await AuditLog.open(...)`; `append` is the one way records are written."""

    def __init__(
        self,
        nc: NatsClient,
        js: JetStreamContext,
        witness: KeyValue,
        *,
        hub_id: str,
        trust_domain: str,
        signer: SigningKey | None,
        clock: Callable[[], datetime],
        metrics: AuditMetrics,
    ) -> None:
        self._trust_domain = trust_domain
        self._nc = nc
        self._js = js
        self._witness = witness
        self.hub_actor = f"hub/{hub_id}"
        self._signer = signer
        self._clock = clock
        self.metrics = metrics
        self._lock = asyncio.Lock()
        self._head: Head | None = None

    @classmethod
    async def open(
        cls,
        nc: NatsClient,
        js: JetStreamContext,
        *,
        hub_id: str,
        trust_domain: str,
        signer: SigningKey | None,
        clock: Callable[[], datetime],
        metrics: AuditMetrics | None = None,
        budget: StorageBudget | None = None,
    ) -> AuditLog:
        budget = budget or StorageBudget()
        await ensure_stream(js, audit_stream(budget))
        witness = await ensure_bucket(js, budget.bucket_config(budget.audit_witness))
        audit = cls(
            nc,
            js,
            witness,
            hub_id=hub_id,
            trust_domain=trust_domain,
            signer=signer,
            clock=clock,
            metrics=metrics or AuditMetrics(CollectorRegistry()),
        )
        audit._head = await audit._read_head()
        await audit._check_witness()
        return audit

    def node_actor(self, node_id: str) -> str:
        """A node's SPIFFE id: the actor of what it did."""
        return spiffe_id(self._trust_domain, Kind.NODE, node_id)

    def check_ready(self) -> None:
        """Raise Unavailable(AUDIT_UNAVAILABLE) when an append cannot succeed now."""
        if not self._nc.is_connected:
            raise Unavailable(
                "the audit log cannot be written (NATS is away); nothing was changed",
                reason="AUDIT_UNAVAILABLE",
            )

    async def append(
        self,
        action: str,
        *,
        actor: str,
        target: str = "",
        outcome: str = "",
        reason: str = "",
        policy_version: int = 0,
        details: Mapping[str, Any] | None = None,
        msg_id: str = "",
    ) -> AuditRecord:
        """Append one record; durable when this returns. `msg_id` (optional) makes a
        repeated append of the same fact within the dedup window return the first."""
        now = self._clock()

        def build(head: Head) -> AuditRecord:
            return new_record(
                head.seq + 1,
                head.hash,
                time=now,
                action=action,
                actor=actor,
                target=target,
                outcome=outcome,
                reason=reason,
                policy_version=policy_version,
                details=details,
            )

        record = await self._append(build, msg_id=msg_id)
        assert record is not None  # build never declines
        return record

    async def checkpoint(self) -> AuditRecord | None:
        """Sign the current head into the chain, unless the head is a checkpoint already
        (or the log is empty). Also keeps the checkpoint in the witness bucket."""
        signer = self._signer
        if signer is None:
            return None

        def build(head: Head) -> AuditRecord | None:
            if head.seq == 0 or head.action == CHECKPOINT:
                return None
            return new_record(
                head.seq + 1,
                head.hash,
                time=self._clock(),
                action=CHECKPOINT,
                actor=self.hub_actor,
                details=checkpoint_details(head.seq, head.hash, signer),
            )

        record = await self._append(build, fresh=True)
        if record is not None:
            try:
                await self._witness.put(_WITNESS_KEY, record.line())
            except (nats.errors.Error, TimeoutError) as exc:
                log.warning("audit checkpoint %d not witnessed in KV: %r", record.seq, exc)
        return record

    async def run_checkpoints(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.checkpoint()
            except Unavailable as exc:
                log.warning("audit checkpoint skipped: %s", exc)

    async def head(self) -> Head:
        """The head as the stream holds it now (another hub may have appended)."""
        with _unavailable("reading the audit log"):
            return await self._read_head()

    async def read(self, from_seq: int, through_seq: int) -> AsyncGenerator[tuple[int, bytes]]:
        """Every record `from_seq..through_seq`, in order, as stored."""
        if through_seq < from_seq:
            return
        with _unavailable("reading the audit log"):
            subscription = await self._js.pull_subscribe(
                subjects.AUDIT_SUBJECT,
                durable=None,
                stream=subjects.AUDIT_STREAM,
                config=api.ConsumerConfig(
                    deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                    opt_start_seq=from_seq,
                    ack_policy=api.AckPolicy.NONE,
                    inactive_threshold=30.0,
                    mem_storage=True,
                    num_replicas=1,
                ),
            )
        try:
            seq = from_seq - 1
            while seq < through_seq:
                with _unavailable("reading the audit log"):
                    messages = await subscription.fetch(min(READ_BATCH, through_seq - seq))
                for message in messages:
                    seq = message.metadata.sequence.stream
                    if seq > through_seq:
                        return
                    yield seq, message.data
        finally:
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await subscription.unsubscribe()

    async def _append(
        self, build: Callable[[Head], AuditRecord | None], *, msg_id: str = "", fresh: bool = False
    ) -> AuditRecord | None:
        async with self._lock:
            if fresh:
                self._head = None
            try:
                for _ in range(MAX_APPEND_TRIES):
                    if self._head is None:
                        self._head = await self._read_head()
                    record = build(self._head)
                    if record is None:
                        return None
                    stored = await self._publish(record, self._head, msg_id)
                    if stored is not None:
                        self.metrics.appended.labels(action=stored.action).inc()
                        return stored
            except (nats.errors.Error, TimeoutError) as exc:
                self._head = None  # the record may have landed: read the head again
                self.metrics.failed.inc()
                if isinstance(exc, APIError) and stream_full(exc):
                    log.error("the audit log is full (%s): every audited action is refused", exc)
                    raise Unavailable(
                        "the audit log is full (its storage budget is spent: raise "
                        "StorageBudget.audit, docs/sizing.md); nothing was changed",
                        reason="AUDIT_UNAVAILABLE",
                    ) from exc
                raise Unavailable(
                    f"the audit log cannot be written ({exc!r}); nothing was changed",
                    reason="AUDIT_UNAVAILABLE",
                ) from exc
        self.metrics.failed.inc()
        raise Unavailable(
            f"the audit log's head moved {MAX_APPEND_TRIES} times during one append",
            reason="AUDIT_UNAVAILABLE",
        )

    async def _publish(self, record: AuditRecord, head: Head, msg_id: str) -> AuditRecord | None:
        """The record as stored; None when another writer moved the head first."""
        headers = {EXPECTED_LAST_SEQUENCE: str(head.seq)}
        if msg_id:
            headers["Nats-Msg-Id"] = msg_id
        try:
            ack = await self._js.publish(
                subjects.AUDIT_SUBJECT, record.line(), stream=subjects.AUDIT_STREAM, headers=headers
            )
        except APIError as exc:
            if exc.err_code != WRONG_LAST_SEQUENCE:
                raise
            self._head = None
            return None
        if ack.duplicate:  # this fact is in the log already; the head did not move
            message = await self._js.get_msg(subjects.AUDIT_STREAM, ack.seq)
            return parse_record(message.data or b"")
        if ack.seq != record.seq:  # cannot happen with the expected-sequence header
            log.error("audit record %d stored at seq %d", record.seq, ack.seq)
        self._head = Head(record.seq, record.hash, record.action)
        return record

    async def _read_head(self) -> Head:
        try:
            message = await self._js.get_last_msg(subjects.AUDIT_STREAM, subjects.AUDIT_SUBJECT)
        except NotFoundError:
            return Head(0, ZERO_HASH)
        data = message.data or b""
        try:
            record = parse_record(data)
            if record.seq != message.seq:
                raise RecordError(f"it says seq {record.seq}")
        except RecordError as exc:
            self.metrics.damaged.inc()
            log.error(
                "the audit record at seq %d is damaged (%s); the chain continues past it and "
                "`sentinel audit verify` names it",
                message.seq,
                exc,
            )
            return Head(message.seq or 0, damaged_head_hash(data))
        return Head(record.seq, record.hash, record.action)

    async def _check_witness(self) -> None:
        """Report a stream that no longer holds the last witnessed checkpoint."""
        try:
            entry = await self._witness.get(_WITNESS_KEY)
        except KeyNotFoundError:
            return
        witnessed = entry.value or b""
        try:
            checkpoint = parse_record(witnessed)
        except RecordError as exc:
            log.error("the audit witness in KV %s is damaged: %s", subjects.AUDIT_BUCKET, exc)
            return
        head = self._head or Head(0, ZERO_HASH)
        stored = b""
        if checkpoint.seq <= head.seq:
            message = await self._js.get_msg(subjects.AUDIT_STREAM, checkpoint.seq)
            stored = message.data or b""
        if stored == witnessed:
            return
        log.error(
            "the audit stream does not hold the checkpoint witnessed at seq %d (its head is "
            "seq %d): it was truncated or replaced",
            checkpoint.seq,
            head.seq,
        )
        await self.append(
            "audit.witness_mismatch",
            actor=self.hub_actor,
            outcome="TRUNCATED",
            reason="AUDIT_TRUNCATED",
            details={
                "witness_seq": checkpoint.seq,
                "witness_hash": checkpoint.hash,
                "head_seq": head.seq,
            },
        )


@contextlib.contextmanager
def _unavailable(what: str) -> Iterator[None]:
    try:
        yield
    except (nats.errors.Error, TimeoutError) as exc:
        raise Unavailable(f"{what}: {exc!r}", reason="AUDIT_UNAVAILABLE") from exc
