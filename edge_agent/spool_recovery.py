"""Reading a spool directory back after any stop: clean, kill -9, power loss or bit rot.

Segments are read oldest first. A segment's name is the seq after the last one
written before it (its first record may be later: a seq skipped by a crash lies inside
a segment, never between two), so the seqs a segment should hold end just before the
next segment's name, and those of the newest end at the hint in `progress.json` (the
last seq `add` took; updated after the append). Rules:
- The newest segment's unusable tail holding no seq up to the hint is a torn append
  (the process died inside `add`, which therefore never returned): it is cut off, and
  nothing durable is lost.
- Otherwise, seqs a segment should hold but does not are lost: between good records
  around damaged bytes, after the last good record (a damaged tail, or a file cut
  exactly at a record boundary), or all of an unreadable file.
Lost seqs, less the settled ones (acknowledged, or in a gap already), become CORRUPT
gaps. Scanning only reads; `repair` (cut the torn tail, rewrite the segment with
its good records only, or delete it) runs after the caller has made those gaps
durable, so a crash in between finds the damage again instead of forgetting it, and
after a repair the same damage is never reported twice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from edge_agent.spool_records import Record, encode_record, scan_segment
from edge_agent.spool_state import TMP_SUFFIX, Progress, Range, fsync_directory, subtract_ranges

log = logging.getLogger(__name__)

SEGMENT_NAME = re.compile(r"^(\d{20})\.seg$")


def segment_path(directory: Path, first_seq: int) -> Path:
    return directory / f"{first_seq:020d}.seg"


@dataclass(slots=True)
class ScannedSegment:
    first_seq: int
    path: Path
    size_bytes: int
    records: list[Record]
    rewrite: bool = False  # damage between good records: keep only the good ones
    cut_tail: bool = False  # unusable bytes after the last good record

    @property
    def needs_repair(self) -> bool:
        return self.rewrite or self.cut_tail or not self.records


@dataclass(frozen=True, slots=True)
class LostRange:
    boot_id: str
    from_seq: int
    to_seq: int


@dataclass(slots=True)
class DirectoryScan:
    segments: list[ScannedSegment] = field(default_factory=list)
    lost: list[LostRange] = field(default_factory=list)
    damaged_regions: int = 0
    torn_tails: int = 0


def _segment_files(directory: Path) -> list[tuple[int, Path]]:
    found: list[tuple[int, Path]] = []
    for path in directory.iterdir():
        if path.name.endswith(TMP_SUFFIX):  # an interrupted atomic write: the old file stands
            with contextlib.suppress(OSError):
                path.unlink()
        elif match := SEGMENT_NAME.match(path.name):
            found.append((int(match[1]), path))
    return sorted(found)


def scan_directory(directory: Path, hint: Progress, settled: list[Range]) -> DirectoryScan:
    result = DirectoryScan()

    def lose(boot_id: str, from_seq: int, to_seq: int, *, bytes_bad: bool) -> None:
        lost = subtract_ranges(from_seq, to_seq, settled) if from_seq <= to_seq else []
        result.damaged_regions += bool(lost) or bytes_bad
        for low, high in lost:
            log.error("spool records %d..%d are damaged or missing; announcing a gap", low, high)
            result.lost.append(LostRange(boot_id, low, high))

    files = _segment_files(directory)
    floor = 1  # seqs, and so segment keys, only grow
    for index, (named_seq, path) in enumerate(files):
        first_seq = max(named_seq, floor)
        tail_end = files[index + 1][0] - 1 if index + 1 < len(files) else hint.last_seq
        try:
            data = path.read_bytes()
        except OSError as exc:
            log.error("spool segment %s is unreadable (%s); its batches are lost", path, exc)
            result.segments.append(ScannedSegment(first_seq, path, _size_of(path), []))
            lose(hint.boot_id, first_seq, tail_end, bytes_bad=True)
            floor = first_seq + 1
            continue
        scan = scan_segment(data, first_seq)
        records = scan.records
        segment = ScannedSegment(first_seq, path, len(data), records)
        for at in scan.damaged_before:
            low = records[at - 1].seq + 1 if at else first_seq
            lose(records[at].boot_id, low, records[at].seq - 1, bytes_bad=True)
            segment.rewrite = True
        segment.cut_tail = scan.tail_start < len(data) or not records  # empty is all tail
        low = records[-1].seq + 1 if records else first_seq
        if tail_end >= low:
            boot_id = records[-1].boot_id if records else hint.boot_id
            lose(boot_id, low, tail_end, bytes_bad=segment.cut_tail)
        elif segment.cut_tail:
            log.info("cutting a torn append off spool segment %s", path)
            result.torn_tails += 1
        floor = (records[-1].seq if records else first_seq) + 1
        result.segments.append(segment)
    return result


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def repair(segment: ScannedSegment, *, fsync: bool) -> int:
    """Make the file hold exactly its good records; returns its size afterwards."""
    path = segment.path
    good = b"".join(encode_record(record.payload) for record in segment.records)
    try:
        if not segment.records:
            path.unlink(missing_ok=True)
        elif segment.rewrite:
            tmp = path.with_name(path.name + TMP_SUFFIX)
            with tmp.open("wb") as handle:
                handle.write(good)
                if fsync:
                    handle.flush()
                    os.fsync(handle.fileno())
            os.replace(tmp, path)
        else:
            with path.open("r+b") as handle:
                handle.truncate(len(good))
                if fsync:
                    os.fsync(handle.fileno())
        if fsync:
            fsync_directory(path.parent)
    except OSError as exc:
        log.error("could not repair spool segment %s (%s); leaving it as it is", path, exc)
        return segment.size_bytes
    return len(good)
