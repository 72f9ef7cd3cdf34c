"""The spool's small state files: written atomically, read without trusting them.

- `gaps.json`: gaps the hub has not acknowledged yet. A gap is the only trace of
  telemetry that was dropped, so it is written with fsync (file and directory) before
  the data it describes is deleted.
- `progress.json`: the settled seqs from the oldest segment's first seq on (as ranges):
  acknowledged batches and acknowledged gaps, so recovery neither reloads nor reports
  them; plus a hint: the last seq `add` took and its boot_id. Rewritten by rename on
  every add and acknowledgement, without fsync: losing it in a power cut only means
  re-sending batches the hub already holds (it drops them), and it keeps fsyncs off the
  hot path.
- `LOCK`: flock-ed while a process has the spool open, so two agents never interleave.

Every write is temporary file + rename, so a reader sees the old or the new content. A
file that does not parse is logged and read as empty; it never stops the agent.
"""

from __future__ import annotations

import bisect
import fcntl
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sentinel.errors import ConfigError
from sentinel.v1 import telemetry_pb2

log = logging.getLogger(__name__)

PROGRESS_FILE = "progress.json"
GAPS_FILE = "gaps.json"
LOCK_FILE = "LOCK"
TMP_SUFFIX = ".tmp"

Range = tuple[int, int]


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes, *, durable: bool) -> None:
    tmp = path.with_name(path.name + TMP_SUFFIX)
    with tmp.open("wb") as handle:
        handle.write(data)
        if durable:
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(tmp, path)
    if durable:
        fsync_directory(path.parent)


def lock_directory(directory: Path) -> int:
    """Hold the spool's lock; the returned descriptor keeps it until closed."""
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise ConfigError(
            f"spool {directory} is in use by another process", reason="SPOOL_LOCKED"
        ) from exc
    return fd


def merge_ranges(ranges: Iterable[Range]) -> list[Range]:
    merged: list[Range] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def to_ranges(seqs: Iterable[int]) -> list[Range]:
    return merge_ranges((seq, seq) for seq in seqs)


def in_ranges(merged: list[Range], seq: int) -> bool:
    index = bisect.bisect_right(merged, seq, key=lambda r: r[0]) - 1
    return index >= 0 and seq <= merged[index][1]


def insert_seq(merged: list[Range], seq: int) -> None:
    """Add `seq` to sorted, merged ranges in place, keeping them merged."""
    at = bisect.bisect_right(merged, seq, key=lambda r: r[0])
    if at and merged[at - 1][1] >= seq:
        return
    joins_left = at > 0 and merged[at - 1][1] == seq - 1
    joins_right = at < len(merged) and merged[at][0] == seq + 1
    if joins_left and joins_right:
        merged[at - 1] = (merged[at - 1][0], merged[at][1])
        del merged[at]
    elif joins_left:
        merged[at - 1] = (merged[at - 1][0], seq)
    elif joins_right:
        merged[at] = (seq, merged[at][1])
    else:
        merged.insert(at, (seq, seq))


def prune_ranges(merged: list[Range], below: int) -> None:
    """Remove the seqs under `below` from sorted, merged ranges in place."""
    while merged and merged[0][1] < below:
        del merged[0]
    if merged and merged[0][0] < below:
        merged[0] = (below, merged[0][1])


def subtract_ranges(low: int, high: int, merged: list[Range]) -> list[Range]:
    """[low, high] without the seqs in `merged`, as ranges; never expands a range."""
    left: list[Range] = []
    for start, end in merged:
        if end < low or start > high:
            continue
        if start > low:
            left.append((low, start - 1))
        low = max(low, end + 1)
    if low <= high:
        left.append((low, high))
    return left


@dataclass(slots=True)
class Progress:
    settled: list[Range] = field(default_factory=list)
    last_seq: int = 0
    boot_id: str = ""


class ProgressFile:
    """`progress.json`. Saving never raises: a run of failures (a full disk) is logged once."""

    def __init__(self, directory: Path) -> None:
        self._path = directory / PROGRESS_FILE
        self._failing = False

    def load(self) -> Progress:
        if not self._path.exists():
            return Progress()
        try:
            raw = json.loads(self._path.read_bytes())
            settled = [(int(low), int(high)) for low, high in raw["settled"]]
            return Progress(
                settled=merge_ranges(r for r in settled if 1 <= r[0] <= r[1]),
                last_seq=max(0, int(raw["last_seq"])),
                boot_id=str(raw["boot_id"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Only costs duplicates: acknowledged batches are sent again and the hub drops them.
            log.warning(
                "spool %s is unreadable (%s); nothing counts as acknowledged", self._path, exc
            )
            return Progress()

    def save(self, progress: Progress) -> None:
        data = {
            "settled": progress.settled,
            "last_seq": progress.last_seq,
            "boot_id": progress.boot_id,
        }
        try:
            write_atomically(self._path, json.dumps(data).encode(), durable=False)
        except OSError as exc:
            if not self._failing:
                log.warning("cannot record spool progress (%s); acked batches may be resent", exc)
            self._failing = True
        else:
            self._failing = False


def load_gaps(directory: Path) -> list[telemetry_pb2.TelemetryGap] | None:
    """The saved gaps; None when the file is unreadable (logged)."""
    path = directory / GAPS_FILE
    if not path.exists():
        return []
    try:
        raw = json.loads(path.read_bytes())
        gaps = [
            telemetry_pb2.TelemetryGap(
                boot_id=str(item["boot_id"]),
                from_seq=int(item["from_seq"]),
                to_seq=int(item["to_seq"]),
                reason=telemetry_pb2.GapReason.Name(int(item["reason"])),
            )
            for item in raw
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.error("spool %s is unreadable (%s); pending gaps are lost", path, exc)
        return None
    return [g for g in gaps if 1 <= g.from_seq <= g.to_seq]


def save_gaps(directory: Path, gaps: list[telemetry_pb2.TelemetryGap], *, durable: bool) -> None:
    """Raises OSError when the disk refuses."""
    data = [
        {"boot_id": g.boot_id, "from_seq": g.from_seq, "to_seq": g.to_seq, "reason": g.reason}
        for g in gaps
    ]
    write_atomically(directory / GAPS_FILE, json.dumps(data).encode(), durable=durable)
