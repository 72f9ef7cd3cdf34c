"""A durable, bounded disk spool of telemetry batches waiting for the hub's acknowledgement.

The hub link reads it as a queue (`next_after`, `acknowledge`, `gaps`, `changed`); the
agent adds sealed batches; `bytes_on_disk`, `corrupt_records` and `write_errors` feed its
metrics. The directory holds segments (`<20 digits>.seg`, each named by the seq after
the last one written before it; format in `spool_records`, naming in `spool_recovery`)
and `gaps.json`, `progress.json`, `LOCK` (`spool_state`).

Durability, with `fsync=True`: `add` appends the batch's record to the newest segment
and fdatasyncs it (and the directory, when it starts a segment) before it returns, so a
sealed batch is durable once `add` returns — one fsync per batch interval, which is
cheap. The loss window of a crash or power cut is what was not sealed yet: the samples
of the current batch interval, plus a batch whose `add` was cut short. A gap is written
durably before the batches it covers are deleted. Acknowledgement progress is written
without fsync: after a power cut the agent may resend batches the hub already holds
(it drops them) — duplicates, never loss. With `fsync=False` nothing is fsynced.
A failed write (ENOSPC, EIO) never raises: on a full disk the oldest segment is dropped,
and the append is tried once more in a fresh segment; if that fails too, the batch
becomes an OVERFLOW gap. `write_errors` counts the failures.

Invariants:
- A batch leaves only when acknowledged, or inside a gap (overflow, write error,
  damaged record) that is kept, durably, until the hub acknowledges the gap.
- Segment bytes never exceed `max_bytes` after `open` or any `add`: the oldest whole
  segments are dropped first, their unacknowledged batches recorded as OVERFLOW gaps;
  consecutive drops share a gap until it is announced, and an announced gap (or one
  read back from disk) is never extended.
- Seqs strictly increase. Unacknowledged batches are kept in memory oldest first as
  their serialised bytes (memory is bounded like the disk) and decoded when sent.
- No pending batch is larger than `max_batch_bytes` (what the hub takes): a larger one,
  added now or left on disk by an older agent, is dropped as an OVERFLOW gap and counted
  (`oversized_batches`), so it never blocks the batches behind it.
- A segment is deleted once it holds no unacknowledged batch, unless it is still being
  appended to. Recovery never raises on bad data (`spool_recovery`).

All methods are synchronous, for the event loop thread (at most a write and an fsync).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from pathlib import Path

from edge_agent.batching import MAX_BATCH_BYTES
from edge_agent.spool_gaps import GapLedger
from edge_agent.spool_pending import Pending, PendingBatches
from edge_agent.spool_records import encode_record
from edge_agent.spool_recovery import repair, scan_directory
from edge_agent.spool_segments import Segment, SegmentFiles, default_segment_bytes
from edge_agent.spool_state import (
    Progress,
    ProgressFile,
    Range,
    in_ranges,
    insert_seq,
    lock_directory,
    merge_ranges,
    prune_ranges,
)
from sentinel.v1 import telemetry_pb2

log = logging.getLogger(__name__)

_OVERFLOW = telemetry_pb2.GAP_REASON_OVERFLOW
_CORRUPT = telemetry_pb2.GAP_REASON_CORRUPT


class Spool:
    """Open with `Spool.open(directory, max_bytes=...)`; `close()` when done."""

    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        segment_bytes: int,
        fsync: bool,
        lock_fd: int,
        *,
        max_batch_bytes: int = MAX_BATCH_BYTES,
    ) -> None:
        self.directory = directory
        self._max_bytes = max_bytes
        self._max_batch_bytes = max_batch_bytes
        self._segment_bytes = segment_bytes
        self._lock_fd: int | None = lock_fd
        self._files = SegmentFiles(directory, fsync=fsync)
        self._progress = ProgressFile(directory)
        self._gaps = GapLedger(directory, fsync=fsync)
        self._fsync = fsync
        self._pending = PendingBatches()
        self._settled: list[Range] = []  # acknowledged batches and gaps, from the oldest segment
        self._last_seq = 0  # the last seq `add` took
        self._last_written = 0  # the last seq written to a segment
        self._boot_id = ""
        self.changed = asyncio.Event()
        self.dropped_batches = 0
        self.acked_batches = 0
        self.corrupt_records = 0
        self.write_errors = 0
        self.oversized_batches = 0

    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        max_bytes: int,
        segment_bytes: int | None = None,
        fsync: bool = True,
        max_batch_bytes: int = MAX_BATCH_BYTES,
    ) -> Spool:
        """Open (creating it if needed) and recover the spool in `directory`."""
        if segment_bytes is None:
            segment_bytes = default_segment_bytes(max_bytes)
        if not 0 < segment_bytes <= max_bytes:
            raise ValueError(f"need 0 < segment_bytes <= max_bytes, got {segment_bytes}")
        directory.mkdir(parents=True, exist_ok=True)
        lock_fd = lock_directory(directory)
        try:
            spool = cls(
                directory,
                max_bytes,
                segment_bytes,
                fsync,
                lock_fd,
                max_batch_bytes=max_batch_bytes,
            )
            spool._recover()
        except BaseException:
            os.close(lock_fd)
            raise
        return spool

    def _recover(self) -> None:
        progress = self._progress.load()
        self._boot_id = progress.boot_id
        settled = merge_ranges([*progress.settled, *self._gaps.ranges()])
        scan = scan_directory(self.directory, progress, settled)
        self.corrupt_records = scan.damaged_regions
        for lost in scan.lost:
            self._gaps.record(lost.boot_id, lost.from_seq, lost.to_seq, _CORRUPT)
        if scan.lost:
            self._gaps.save()  # before the repair erases the evidence
        for found in scan.segments:
            size = repair(found, fsync=self._fsync) if found.needs_repair else found.size_bytes
            segment = Segment(found.first_seq, found.path, size)
            for record in found.records:
                self._last_seq, self._boot_id = record.seq, record.boot_id
                if in_ranges(settled, record.seq):
                    continue
                if len(record.payload) > self._max_batch_bytes:  # an older agent's
                    self._oversized(record.seq, len(record.payload))
                    self.dropped_batches += 1
                    self._gaps.record(record.boot_id, record.seq, record.seq, _OVERFLOW)
                    continue
                entry = Pending(record.payload, record.boot_id, found.first_seq)
                self._pending.append(record.seq, entry)
                segment.live.add(record.seq)
            if found.path.exists():
                self._files.adopt(segment)
        if self.oversized_batches:
            self._gaps.save()  # before a segment holding only such records is deleted
        self._settled = progress.settled
        self._last_written = self._last_seq or progress.last_seq
        for segment in self._files:
            if not segment.live:
                self._delete(segment)
        self._prune_settled()
        self._make_room(0)
        self._save_progress()
        self._gaps.retry_save()
        log.info("spool: %d pending, %d damaged", len(self._pending), scan.damaged_regions)

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, batch: telemetry_pb2.TelemetryBatch) -> None:
        """Append `batch` durably: once this returns, it survives a crash."""
        if self._lock_fd is None:
            raise ValueError("the spool is closed")
        seq = batch.seq
        if seq <= self._last_seq:
            raise ValueError(f"batch seq {seq} is not above the last spooled seq {self._last_seq}")
        payload = batch.SerializeToString()
        record = encode_record(payload)
        self._last_seq, self._boot_id = seq, batch.boot_id
        segment = None
        if len(payload) > self._max_batch_bytes:
            self._oversized(seq, len(payload))
        elif len(record) > self._max_bytes:
            log.error("batch %d (%d bytes) is larger than the whole spool", seq, len(record))
        else:
            segment = self._write(seq, record)
        if segment is None:
            self.dropped_batches += 1
            self._gaps.record(batch.boot_id, seq, seq, _OVERFLOW)
            self._gaps.save()
        else:
            self._pending.append(seq, Pending(payload, batch.boot_id, segment.first_seq))
            self._last_written = seq
        self._gaps.retry_save()
        self._save_progress()
        self.changed.set()

    def _oversized(self, seq: int, size: int) -> None:
        """A batch the hub would refuse for its size at every try: the caller drops it
        as an OVERFLOW gap instead of letting it block the spool."""
        self.oversized_batches += 1
        log.error(
            "batch %d (%d bytes) is larger than a batch may be (%d): dropped, announced as a gap",
            seq,
            size,
            self._max_batch_bytes,
        )

    def _write(self, seq: int, record: bytes) -> Segment | None:
        self._make_room(len(record))
        for attempt in (1, 2):
            try:
                return self._files.append(seq, record, name_seq=min(seq, self._last_written + 1))
            except OSError as exc:
                self.write_errors += 1
                log.error("spool write of batch %d failed (try %d): %s", seq, attempt, exc)
                self._retire(self._files.abandon_active())
                full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
                if full and attempt == 1 and (oldest := self._files.oldest()):
                    self._drop_oldest(oldest)  # make space, then try once more afresh
        return None

    def _make_room(self, record_bytes: int) -> None:
        active = self._files.active
        if active and active.size_bytes and active.size_bytes + record_bytes > self._segment_bytes:
            self._retire(self._files.seal_active())
        while self._files.total_bytes + record_bytes > self._max_bytes:
            oldest = self._files.oldest()
            if oldest is None or oldest is self._files.active:
                break
            self._drop_oldest(oldest)

    def _drop_oldest(self, segment: Segment) -> None:
        # The oldest segment holds the oldest pending seqs.
        dropped = self._pending.pop_through(max(segment.live, default=0))
        for seq, entry in dropped:
            self._gaps.record(entry.boot_id, seq, seq, _OVERFLOW)
        self.dropped_batches += len(dropped)
        if dropped:
            first, last = dropped[0][0], dropped[-1][0]
            log.warning("spool full: dropped batches %d..%d, announced as gaps", first, last)
            self._gaps.save(quiet=True)  # on a full disk it needs the space the deletion frees
        self._delete(segment)
        self._gaps.retry_save()

    def _retire(self, segment: Segment | None) -> None:
        """Delete a sealed segment once it holds no pending batch."""
        if segment is not None and not segment.live and segment is not self._files.active:
            self._delete(segment)

    def _delete(self, segment: Segment) -> None:
        self._files.delete(segment)
        self._prune_settled()

    def _prune_settled(self) -> None:
        """Settled seqs matter to recovery only from the oldest segment on."""
        oldest = self._files.oldest()
        prune_ranges(self._settled, oldest.first_seq if oldest else self._last_seq + 1)

    def next_after(self, seq: int) -> telemetry_pb2.TelemetryBatch | None:
        """The oldest pending batch with a seq above `seq`."""
        entry = self._pending.next_after(seq)
        return None if entry is None else telemetry_pb2.TelemetryBatch.FromString(entry.payload)

    def _acknowledge_one(self, seq: int, entry: Pending) -> None:
        self.acked_batches += 1
        insert_seq(self._settled, seq)
        segment = self._files.get(entry.segment)
        if segment is not None:
            segment.live.discard(seq)
            self._retire(segment)

    def acknowledge(self, seq: int) -> None:
        entry = self._pending.pop(seq)
        if entry is None:
            return
        self._acknowledge_one(seq, entry)
        self._save_progress()
        self.changed.set()

    def acknowledge_through(self, seq: int) -> None:
        """Drop everything at or below `seq`: the hub already holds it."""
        acknowledged = self._pending.pop_through(seq)
        if not acknowledged:
            return
        for pending, entry in acknowledged:
            self._acknowledge_one(pending, entry)
        self._save_progress()
        self.changed.set()

    def gaps(self) -> list[telemetry_pb2.TelemetryGap]:
        return self._gaps.pending()

    def gap_announced(self, gap: telemetry_pb2.TelemetryGap) -> None:
        self._gaps.announced(gap.from_seq, gap.to_seq)

    def gap_acknowledged(self, from_seq: int, to_seq: int) -> None:
        if self._gaps.acknowledged(from_seq, to_seq):
            self._settled = merge_ranges([*self._settled, (from_seq, to_seq)])
            self._prune_settled()
            self._save_progress()

    def backlog_boot_ids(self, current: str, limit: int) -> list[str]:
        """Boots other than `current` with gaps or batches still to send, oldest first, at
        most `limit`: what a hello lists so that the hub takes them."""
        boots = [gap.boot_id for gap in self._gaps.pending()] + self._pending.boot_ids()
        return [boot for boot in dict.fromkeys(boots) if boot != current][:limit]

    def oldest_seq(self) -> int | None:
        return self._pending.oldest()

    def newest_seq(self) -> int | None:
        return self._pending.newest()

    @property
    def last_seq(self) -> int:
        """The highest seq ever added here, acknowledged or not (0: none)."""
        return max(self._last_seq, self._last_written)

    def bytes_on_disk(self) -> int:
        """Bytes in segment files (the small state files are not counted)."""
        return self._files.total_bytes

    def _save_progress(self) -> None:
        last_seq = max(self._last_seq, self._last_written)
        self._progress.save(Progress(list(self._settled), last_seq, self._boot_id))

    def close(self) -> None:
        """Release the files; idempotent. Everything is already on disk."""
        if self._lock_fd is None:
            return
        self._retire(self._files.seal_active())
        self._save_progress()
        self._gaps.retry_save()
        os.close(self._lock_fd)
        self._lock_fd = None

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
