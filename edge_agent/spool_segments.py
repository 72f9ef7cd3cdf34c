"""The spool's segment files: which exist, their sizes, and the one being appended to.

Only the newest segment (the active one) is ever appended to; a segment is sealed when
the next record would take it past the segment size, after a failed append, or on
close, and never written again. An append writes the whole record and fdatasyncs it
(fsync on); a new segment's directory entry is fsynced before its first record counts.
OSError from the disk is left to the caller, with the active segment still intact up to
its last whole record once `abandon_active` has run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from edge_agent.spool_recovery import segment_path
from edge_agent.spool_state import fsync_directory

log = logging.getLogger(__name__)


def default_segment_bytes(max_bytes: int) -> int:
    """1 MiB, or an eighth of the cap when that is smaller, but at least 64 KiB."""
    return min(max_bytes, max(64 * 1024, min(1024 * 1024, max_bytes // 8)))


@dataclass(slots=True)
class Segment:
    first_seq: int
    path: Path
    size_bytes: int
    live: set[int] = field(default_factory=set)  # unacknowledged seqs it holds


class SegmentFiles:
    def __init__(self, directory: Path, *, fsync: bool) -> None:
        self._directory = directory
        self._fsync = fsync
        self._by_first: dict[int, Segment] = {}  # oldest first: seqs only grow
        self.active: Segment | None = None
        self._fd = -1
        self.total_bytes = 0

    def __iter__(self) -> Iterator[Segment]:
        return iter(list(self._by_first.values()))

    def oldest(self) -> Segment | None:
        return next(iter(self._by_first.values()), None)

    def get(self, first_seq: int) -> Segment | None:
        return self._by_first.get(first_seq)

    def adopt(self, segment: Segment) -> None:
        """Take over a sealed segment found on disk."""
        self._by_first[segment.first_seq] = segment
        self.total_bytes += segment.size_bytes

    def append(self, seq: int, record: bytes, *, name_seq: int) -> Segment:
        """Write `record` (holding `seq`) at the end of the active segment, durably.

        A new segment is named `name_seq`: the seq after the last one written.
        """
        if self.active is None:
            self._start(name_seq)
        assert self.active is not None
        view = memoryview(record)
        while view:
            view = view[os.write(self._fd, view) :]
        if self._fsync:
            os.fdatasync(self._fd)
        self.active.size_bytes += len(record)
        self.total_bytes += len(record)
        self.active.live.add(seq)
        return self.active

    def _start(self, seq: int) -> None:
        path = segment_path(self._directory, seq)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            size = os.fstat(fd).st_size
            if self._fsync:
                fsync_directory(self._directory)
        except OSError:
            os.close(fd)
            raise
        self.active, self._fd = Segment(seq, path, size), fd
        self.adopt(self.active)

    def seal_active(self) -> Segment | None:
        """Stop appending to the active segment; returns it."""
        segment, self.active = self.active, None
        if segment is not None:
            try:
                os.close(self._fd)
            except OSError as exc:
                log.warning("closing spool segment %s: %s", segment.path, exc)
            self._fd = -1
        return segment

    def abandon_active(self) -> Segment | None:
        """After a failed append: cut the partial record off, then seal."""
        if self.active is not None:
            try:
                os.ftruncate(self._fd, self.active.size_bytes)
            except OSError as exc:
                log.warning("could not cut a failed append off %s: %s", self.active.path, exc)
        return self.seal_active()

    def delete(self, segment: Segment) -> None:
        if segment is self.active:
            self.seal_active()
        try:
            segment.path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not delete spool segment %s: %s", segment.path, exc)
        del self._by_first[segment.first_seq]
        self.total_bytes -= segment.size_bytes
