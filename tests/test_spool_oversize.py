"""A batch larger than the hub takes never blocks the spool: one spooled now is dropped
at once, and one an older agent left on disk is dropped when the spool opens; each is
counted and announced as an OVERFLOW gap, and the batches around it go on. Real files."""

from __future__ import annotations

from pathlib import Path

from edge_agent.spool import Spool
from edge_agent.spool_records import encode_record
from edge_agent.spool_recovery import segment_path
from sentinel.v1 import telemetry_pb2

BOOT = "boot-1"
OVERFLOW = telemetry_pb2.GAP_REASON_OVERFLOW
# Far above what the hub accepts (its gRPC limit is 1 MiB): what an older agent could seal.
HUGE_BYTES = 1536 * 1024


def batch(seq: int, padding: int = 0) -> telemetry_pb2.TelemetryBatch:
    made = telemetry_pb2.TelemetryBatch(node_id="node-a", boot_id=BOOT, seq=seq)
    sample = made.samples.add()
    sample.time.seconds = 1_700_000_000 + seq
    sample.host.cpu_percent = 12.5
    if padding:
        sample.gpus.add(index=0, uuid="x" * padding)
    return made


def pending(spool: Spool) -> list[int]:
    seqs, found = [], spool.next_after(0)
    while found is not None:
        seqs.append(found.seq)
        found = spool.next_after(found.seq)
    return seqs


def gaps(spool: Spool) -> list[tuple[str, int, int, int]]:
    return [(g.boot_id, g.from_seq, g.to_seq, g.reason) for g in spool.gaps()]


def open_spool(directory: Path) -> Spool:
    return Spool.open(directory, max_bytes=64 << 20, fsync=False)


def test_a_batch_too_large_to_send_is_dropped_as_a_gap_and_the_next_one_goes_on(
    tmp_path: Path,
) -> None:
    with open_spool(tmp_path) as spool:
        spool.add(batch(1))
        spool.add(batch(2, padding=HUGE_BYTES))
        spool.add(batch(3))
        assert (pending(spool), gaps(spool)) == ([1, 3], [(BOOT, 2, 2, OVERFLOW)])
        assert spool.dropped_batches == 1
        assert spool.next_after(1) == batch(3)
    with open_spool(tmp_path) as spool:  # and so it stays after a restart
        assert (pending(spool), gaps(spool)) == ([1, 3], [(BOOT, 2, 2, OVERFLOW)])


def test_an_oversized_record_an_older_agent_left_on_disk_is_dropped_as_a_gap(
    tmp_path: Path,
) -> None:
    records = [encode_record(batch(1).SerializeToString())]
    records.append(encode_record(batch(2, padding=HUGE_BYTES).SerializeToString()))
    records.append(encode_record(batch(3).SerializeToString()))
    segment_path(tmp_path, 1).write_bytes(b"".join(records))

    with open_spool(tmp_path) as spool:
        assert (pending(spool), gaps(spool)) == ([1, 3], [(BOOT, 2, 2, OVERFLOW)])
        assert spool.dropped_batches == 1
        spool.acknowledge(1)
        spool.acknowledge(3)
        spool.gap_announced(spool.gaps()[0])
        spool.gap_acknowledged(2, 2)
        assert (pending(spool), gaps(spool)) == ([], [])
    with open_spool(tmp_path) as spool:  # settled: neither sent nor announced again
        assert (pending(spool), gaps(spool)) == ([], [])
        assert list(tmp_path.glob("*.seg")) == []
