"""The spool's record format, and a segment scanner that never trusts what it reads.

A segment file is a run of records, each

    magic (4 bytes) | length (u32, little-endian) | crc32(payload) (u32, LE) | payload

where the payload is one `TelemetryBatch.SerializeToString()`. A record is good when
its magic matches, its payload fits in the file, the CRC matches, the payload parses
and its seq is above the previous good record's (seqs only grow within a spool).

`scan_segment` returns the good records oldest first, the places where damaged bytes
were skipped, and where an unusable tail begins. It never raises on bad data and
always terminates: after a bad record it resynchronises by searching forward for the
next magic whose record is good, and each search starts past the previous one.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError

from sentinel.v1 import telemetry_pb2

MAGIC = b"\xd7SP1"
HEADER = struct.Struct("<4sII")
# A batch is a few KiB; a length beyond this is damage, not data.
MAX_PAYLOAD_BYTES = 64 * 1024 * 1024


def encode_record(payload: bytes) -> bytes:
    return HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


@dataclass(frozen=True, slots=True)
class Record:
    """One good record: where it lies in its segment (header included) and what it holds."""

    seq: int
    boot_id: str
    start: int
    end: int
    payload: bytes


@dataclass(slots=True)
class SegmentScan:
    records: list[Record] = field(default_factory=list)
    # Indexes into `records`: damaged bytes were skipped just before records[i].
    damaged_before: list[int] = field(default_factory=list)
    # Offset where the unusable tail begins; equal to the file size when there is none.
    tail_start: int = 0


def decode_record(data: bytes, offset: int, min_seq: int) -> Record | None:
    """The good record at `offset` with a seq of at least `min_seq`, or None."""
    if len(data) - offset < HEADER.size:
        return None
    magic, length, crc = HEADER.unpack_from(data, offset)
    start = offset + HEADER.size
    end = start + length
    if magic != MAGIC or length > MAX_PAYLOAD_BYTES or end > len(data):
        return None
    payload = data[start:end]
    if zlib.crc32(payload) != crc:
        return None
    batch = telemetry_pb2.TelemetryBatch()
    try:
        batch.ParseFromString(payload)
    except DecodeError:
        return None
    if batch.seq < max(min_seq, 1):
        return None
    return Record(seq=batch.seq, boot_id=batch.boot_id, start=offset, end=end, payload=payload)


def _resynchronise(data: bytes, offset: int, min_seq: int) -> Record | None:
    candidate = data.find(MAGIC, offset)
    while candidate != -1:
        record = decode_record(data, candidate, min_seq)
        if record is not None:
            return record
        candidate = data.find(MAGIC, candidate + 1)
    return None


def scan_segment(data: bytes, first_seq: int) -> SegmentScan:
    """Good records of one segment, whose file name says its first seq is `first_seq`."""
    scan = SegmentScan()
    offset = 0
    while offset < len(data):
        min_seq = scan.records[-1].seq + 1 if scan.records else first_seq
        record = decode_record(data, offset, min_seq)
        if record is None:
            record = _resynchronise(data, offset + 1, min_seq)
            if record is None:
                break
            scan.damaged_before.append(len(scan.records))
        scan.records.append(record)
        offset = record.end
    scan.tail_start = offset
    return scan
