"""Telemetry ingest: the acknowledgement contract.

For each batch: if its seq is at or below the highest acknowledged seq of its
(node_id, boot_id), it is a duplicate: dropped, counted, and acknowledged again so
the agent can forget it. Otherwise it is published to JetStream on
`sentinel.telemetry.<node_id>` with `Nats-Msg-Id: <node_id>/<boot_id>/<seq>`; only
after the PubAck is the high-water mark written to KV and the batch acknowledged.
A crash between PubAck and the KV write is covered by JetStream's duplicate window
(the re-sent batch gets a PubAck marked duplicate and is acknowledged as such).

Which boots a node may send batches of is its session's business (`hub.agent_service`);
`has_stored` tells it whether the hub ever stored a batch of a boot, without remembering
boots it did not.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from google.protobuf.message import DecodeError
from nats.js import JetStreamContext, api
from nats.js.errors import KeyNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from hub.state import store_unavailable
from sentinel import subjects
from sentinel.errors import InvalidArgument
from sentinel.v1 import telemetry_pb2

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IngestResult:
    duplicate: bool
    acked_seq: int


class TelemetryIngest:
    def __init__(self, js: JetStreamContext, hwm: KeyValue) -> None:
        self._js = js
        self._hwm_kv = hwm
        self._hwm: dict[tuple[str, str], int] = {}

    async def high_water_mark(self, node_id: str, boot_id: str) -> int:
        """The highest seq of (node, boot) known to be stored. First asked after a (re)start,
        it is the KV mark or the seq of the node's last stored batch, whichever is higher:
        a hub killed between a PubAck and its KV write stored a batch it never acknowledged,
        and the agent's re-send may come after JetStream's two-minute dedup window."""
        key = (node_id, boot_id)
        if key not in self._hwm:
            with store_unavailable("telemetry high-water marks unavailable"):
                try:
                    entry = await self._hwm_kv.get(subjects.hwm_key(node_id, boot_id))
                    marked = int(entry.value or b"0")
                except KeyNotFoundError:
                    marked = 0
                self._hwm[key] = max(marked, await self._last_stored_seq(node_id, boot_id))
        return self._hwm[key]

    async def has_stored(self, node_id: str, boot_id: str) -> bool:
        """Whether a batch of (node, boot) was ever stored: its high-water mark exists. A
        boot without one is not cached, so invented boot ids leave nothing behind."""
        if self._hwm.get((node_id, boot_id), 0) > 0:
            return True
        with store_unavailable("telemetry high-water marks unavailable"):
            try:
                await self._hwm_kv.get(subjects.hwm_key(node_id, boot_id))
            except KeyNotFoundError:
                return False
        return True

    async def _last_stored_seq(self, node_id: str, boot_id: str) -> int:
        try:
            last = await self._js.get_last_msg(
                subjects.TELEMETRY_STREAM, subjects.telemetry_subject(node_id)
            )
        except NotFoundError:
            return 0
        try:
            batch = telemetry_pb2.TelemetryBatch.FromString(last.data or b"")
        except DecodeError:
            log.warning("last stored batch of %s does not decode; using the KV mark", node_id)
            return 0
        return batch.seq if batch.boot_id == boot_id else 0

    async def accept(self, batch: telemetry_pb2.TelemetryBatch) -> IngestResult:
        validate_batch(batch)
        hwm = await self.high_water_mark(batch.node_id, batch.boot_id)
        if batch.seq <= hwm:
            return IngestResult(duplicate=True, acked_seq=hwm)
        with store_unavailable("telemetry stream unavailable"):
            ack = await self._publish(batch)
            await self._hwm_kv.put(
                subjects.hwm_key(batch.node_id, batch.boot_id), str(batch.seq).encode()
            )
        self._hwm[(batch.node_id, batch.boot_id)] = batch.seq
        return IngestResult(duplicate=bool(ack.duplicate), acked_seq=batch.seq)

    async def _publish(self, batch: telemetry_pb2.TelemetryBatch) -> api.PubAck:
        return await self._js.publish(
            subjects.telemetry_subject(batch.node_id),
            batch.SerializeToString(),
            headers={
                "Nats-Msg-Id": subjects.telemetry_msg_id(batch.node_id, batch.boot_id, batch.seq)
            },
        )


def validate_boot_id(boot_id: str) -> None:
    if not boot_id or len(boot_id) > 64 or not all(c.isalnum() or c == "-" for c in boot_id):
        raise InvalidArgument("boot_id must be 1-64 letters, digits or '-'", reason="BAD_BOOT_ID")


def validate_batch(batch: telemetry_pb2.TelemetryBatch) -> None:
    validate_boot_id(batch.boot_id)
    if batch.seq < 1:
        raise InvalidArgument("batch seq must start at 1", reason="BAD_BATCH")
