"""Gathers the agent's samples into telemetry batches that the hub always takes.

Invariants:
- a sealed batch's serialised size is at most `max_bytes` (MAX_BATCH_BYTES): a sample
  that would take the batch past it seals the batch first and opens the next one (same
  boot, next seq), so nothing is lost and no batch is refused for its size;
- a sample that cannot fit even alone is sealed on its own and the spool drops it as an
  OVERFLOW gap (counted, announced to the hub), rather than blocking the spool behind
  a batch the hub would refuse for ever;
- a batch is durable in the spool before its seq is used up (`SequenceState.commit`).
The size is kept as an upper bound while samples arrive (each sample's field, plus the
largest header a batch of this node and boot can have), so no batch is serialised twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sentinel.durations import timestamp_now
from sentinel.v1 import telemetry_pb2

if TYPE_CHECKING:  # the spool imports MAX_BATCH_BYTES from here
    from edge_agent.spool import Spool
    from edge_agent.state import SequenceState

# Half the hub's 1 MiB gRPC receive limit: the ConnectRequest frame around a batch, and
# a hub configured a little tighter, still leave it room, and a batch never gets near
# NATS's 1 MiB max_payload when the hub stores it.
MAX_BATCH_BYTES = 512 * 1024
# TelemetryBatch field 4 (`samples`) is a length-delimited field: a 1-byte tag.
_SAMPLE_TAG_BYTES = 1
# The latest time a google.protobuf.Timestamp holds (9999-12-31T23:59:59.999999999Z).
_MAX_TIMESTAMP_S, _MAX_NANOS = 253_402_300_799, 999_999_999


def _varint_bytes(value: int) -> int:
    return max(1, (value.bit_length() + 6) // 7)


def _header_bytes(node_id: str, boot_id: str) -> int:
    """The largest a batch without samples can serialise to, for this node and boot."""
    header = telemetry_pb2.TelemetryBatch(node_id=node_id, boot_id=boot_id, seq=2**64 - 1)
    header.sealed_at.seconds, header.sealed_at.nanos = _MAX_TIMESTAMP_S, _MAX_NANOS
    return header.ByteSize()


def sample_field_bytes(sample: telemetry_pb2.Sample) -> int:
    """What one sample adds to a batch's serialised size."""
    size = sample.ByteSize()
    return _SAMPLE_TAG_BYTES + _varint_bytes(size) + size


class Batcher:
    def __init__(
        self,
        node_id: str,
        sequence: SequenceState,
        spool: Spool,
        *,
        max_bytes: int = MAX_BATCH_BYTES,
    ) -> None:
        self._node_id = node_id
        self._sequence = sequence
        self._spool = spool
        self._max_bytes = max_bytes
        self._header_bytes = _header_bytes(node_id, sequence.boot_id)
        self._samples: list[telemetry_pb2.Sample] = []
        self.batch_bytes = self._header_bytes  # the open batch's size bound
        self.early_seals = 0

    def __len__(self) -> int:
        """Samples gathered since the last seal."""
        return len(self._samples)

    def add(self, sample: telemetry_pb2.Sample) -> None:
        """Gather `sample`, sealing the open batch first when it would not fit."""
        size = sample_field_bytes(sample)
        if self._samples and self.batch_bytes + size > self._max_bytes:
            self.early_seals += 1
            self.seal()
        self._samples.append(sample)
        self.batch_bytes += size
        if self.batch_bytes > self._max_bytes:  # alone, and perhaps too large even so:
            self.seal()  # sealed on its own; the spool drops one too large as a gap

    def seal(self) -> None:
        """Turn the samples gathered so far into one batch, durable in the spool."""
        if not self._samples:
            return
        batch = telemetry_pb2.TelemetryBatch(
            node_id=self._node_id,
            boot_id=self._sequence.boot_id,
            seq=self._sequence.next_seq,
            samples=self._samples,
            sealed_at=timestamp_now(),
        )
        self._samples = []
        self.batch_bytes = self._header_bytes
        self._spool.add(batch)  # durable first, then the seq is used up
        self._sequence.commit(batch.seq)
