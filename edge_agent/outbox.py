"""Batches waiting for the hub's acknowledgement, oldest first, bounded.

A batch leaves only when the hub acknowledges it. When the bound is reached the
oldest batch is dropped and the dropped range is kept as a gap (reason overflow) to
announce to the hub, so nothing is lost silently. This in-memory outbox does not
survive a restart; the disk spool replaces it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

from sentinel.v1 import telemetry_pb2

log = logging.getLogger(__name__)


class Outbox:
    def __init__(self, max_batches: int) -> None:
        if max_batches < 1:
            raise ValueError("max_batches must be at least 1")
        self._max = max_batches
        self._batches: OrderedDict[int, telemetry_pb2.TelemetryBatch] = OrderedDict()
        self._gaps: list[telemetry_pb2.TelemetryGap] = []
        # Gaps already sent to a hub are never extended: a second drop run gets its own gap.
        self._announced: set[tuple[int, int]] = set()
        self.changed = asyncio.Event()
        self.dropped_batches = 0
        self.acked_batches = 0

    def __len__(self) -> int:
        return len(self._batches)

    def add(self, batch: telemetry_pb2.TelemetryBatch) -> None:
        if len(self._batches) >= self._max:
            seq, dropped = self._batches.popitem(last=False)
            self.dropped_batches += 1
            self._record_gap(dropped.boot_id, seq)
            log.warning("outbox full: dropped batch %d, announced as a gap", seq)
        self._batches[batch.seq] = batch
        self.changed.set()

    def _record_gap(self, boot_id: str, seq: int) -> None:
        last = self._gaps[-1] if self._gaps else None
        if (
            last is not None
            and last.boot_id == boot_id
            and last.to_seq + 1 == seq
            and (last.from_seq, last.to_seq) not in self._announced
        ):
            last.to_seq = seq
            return
        self._gaps.append(
            telemetry_pb2.TelemetryGap(
                boot_id=boot_id, from_seq=seq, to_seq=seq, reason=telemetry_pb2.GAP_REASON_OVERFLOW
            )
        )

    def next_after(self, seq: int) -> telemetry_pb2.TelemetryBatch | None:
        """The oldest pending batch with a seq above `seq`."""
        for pending_seq, batch in self._batches.items():
            if pending_seq > seq:
                return batch
        return None

    def acknowledge(self, seq: int) -> None:
        if self._batches.pop(seq, None) is not None:
            self.acked_batches += 1
            self.changed.set()

    def acknowledge_through(self, seq: int) -> None:
        """Drop everything at or below `seq`: the hub already holds it."""
        for pending in [s for s in self._batches if s <= seq]:
            self.acknowledge(pending)

    def gaps(self) -> list[telemetry_pb2.TelemetryGap]:
        return list(self._gaps)

    def gap_announced(self, gap: telemetry_pb2.TelemetryGap) -> None:
        self._announced.add((gap.from_seq, gap.to_seq))

    def gap_acknowledged(self, from_seq: int, to_seq: int) -> None:
        self._gaps = [g for g in self._gaps if (g.from_seq, g.to_seq) != (from_seq, to_seq)]
        self._announced.discard((from_seq, to_seq))

    def oldest_seq(self) -> int | None:
        return next(iter(self._batches), None)

    def newest_seq(self) -> int | None:
        return next(reversed(self._batches), None)
