"""The disk spool: queue semantics, restarts, the byte cap, torn tails, corruption, kill -9.

Everything runs on real files in tmp_path; crashes are real (SIGKILL of a child process)
or made by editing the files the way a crash or bit rot would leave them.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from inspect import getsource
from pathlib import Path

import pytest

from edge_agent.spool import Spool
from edge_agent.spool_records import MAGIC, encode_record
from sentinel.errors import ConfigError
from sentinel.v1 import telemetry_pb2

BOOT = "boot-1"
OVERFLOW = telemetry_pb2.GAP_REASON_OVERFLOW
CORRUPT = telemetry_pb2.GAP_REASON_CORRUPT
REPO = Path(__file__).resolve().parent.parent


def batch(seq: int, samples: int = 2, boot_id: str = BOOT) -> telemetry_pb2.TelemetryBatch:
    made = telemetry_pb2.TelemetryBatch(node_id="node-a", boot_id=boot_id, seq=seq)
    for i in range(samples):
        sample = made.samples.add()
        sample.time.seconds = 1_700_000_000 + 5 * seq + i
        sample.host.cpu_percent = (7 * seq + i) % 100
        sample.host.memory_used_bytes = 1_000_003 * seq + i
        gpu = sample.gpus.add(index=0, uuid=f"GPU-{seq:08d}")
        gpu.power_w = 80.0 + seq % 600
    return made


def record_size(seq: int, samples: int = 2) -> int:
    return len(encode_record(batch(seq, samples).SerializeToString()))


def holding(count: int) -> int:
    """A segment size that holds exactly `count` of the test's two-sample batches."""
    return count * max(record_size(seq) for seq in range(1, 30)) + 1


def pending(spool: Spool) -> list[int]:
    seqs, found = [], spool.next_after(0)
    while found is not None:
        assert found == batch(found.seq, samples=len(found.samples))
        seqs.append(found.seq)
        found = spool.next_after(found.seq)
    return seqs


def gap_tuples(spool: Spool) -> list[tuple[str, int, int, int]]:
    return [(g.boot_id, g.from_seq, g.to_seq, g.reason) for g in spool.gaps()]


def gap_seqs(spool: Spool) -> list[int]:
    return [s for g in spool.gaps() for s in range(g.from_seq, g.to_seq + 1)]


def segment_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


def open_spool(directory: Path, max_bytes: int = 1 << 20, **options: int) -> Spool:
    return Spool.open(directory, max_bytes=max_bytes, fsync=False, **options)


def filled(directory: Path, seqs: range, **options: int) -> None:
    with open_spool(directory, **options) as spool:
        for seq in seqs:
            spool.add(batch(seq))


def test_keeps_batches_until_acknowledged_oldest_first(tmp_path: Path) -> None:
    with Spool.open(tmp_path, max_bytes=1 << 20) as spool:
        for seq in (1, 2, 3):
            spool.changed.clear()
            spool.add(batch(seq))
            assert spool.changed.is_set()
        assert [spool.next_after(s).seq for s in (0, 1, 2)] == [1, 2, 3]  # type: ignore[union-attr]
        assert spool.next_after(3) is None
        spool.changed.clear()
        spool.acknowledge(2)
        spool.acknowledge(2)  # a repeated ack is harmless
        assert spool.changed.is_set()
        assert (len(spool), spool.oldest_seq(), spool.newest_seq()) == (2, 1, 3)
        assert spool.next_after(1).seq == 3  # type: ignore[union-attr]
        spool.acknowledge_through(3)
        assert (len(spool), spool.acked_batches, spool.gaps()) == (0, 3, [])
        assert (spool.oldest_seq(), spool.newest_seq()) == (None, None)
        with pytest.raises(ValueError, match="not above"):
            spool.add(batch(3))
    with pytest.raises(ValueError, match="closed"):
        spool.add(batch(4))


def test_restart_keeps_unacknowledged_batches_and_not_acknowledged_ones(tmp_path: Path) -> None:
    with open_spool(tmp_path, segment_bytes=holding(4)) as spool:
        for seq in range(1, 21):
            spool.add(batch(seq))
        assert len(segment_files(tmp_path)) == 5
        spool.acknowledge_through(6)
        for seq in (8, 11, 17):
            spool.acknowledge(seq)
        expected = pending(spool)
        assert len(segment_files(tmp_path)) == 4  # the first segment was all acknowledged
    with open_spool(tmp_path, segment_bytes=holding(4)) as again:
        assert pending(again) == expected == [7, 9, 10, 12, 13, 14, 15, 16, 18, 19, 20]
        again.add(batch(21))
        again.acknowledge_through(20)
    with open_spool(tmp_path) as third:
        assert pending(third) == [21]
        third.acknowledge(21)
    with open_spool(tmp_path) as empty:
        assert (len(empty), empty.bytes_on_disk(), segment_files(tmp_path)) == (0, 0, [])


def test_the_byte_cap_holds_and_drops_are_exactly_the_gaps(tmp_path: Path) -> None:
    rng = random.Random(7)
    max_bytes, segment_bytes = 6000, 1000
    acked: set[int] = set()
    with open_spool(tmp_path, max_bytes, segment_bytes=segment_bytes) as spool:
        for seq in range(1, 801):
            spool.add(batch(seq, samples=rng.randint(0, 6)))
            if rng.random() < 0.2:  # the hub acknowledges a few, out of order
                target = rng.choice(pending(spool))
                spool.acknowledge(target)
                acked.add(target)
            on_disk = sum(p.stat().st_size for p in segment_files(tmp_path))
            assert on_disk == spool.bytes_on_disk() <= max_bytes  # within max + one segment
        dropped = set(range(1, 801)) - acked - set(pending(spool))
        assert sorted(gap_seqs(spool)) == sorted(dropped)
        assert spool.dropped_batches == len(dropped) > 400
        assert {g.reason for g in spool.gaps()} == {OVERFLOW}
        before = gap_tuples(spool), pending(spool)
    with open_spool(tmp_path, max_bytes, segment_bytes=segment_bytes) as again:
        assert (gap_tuples(again), pending(again)) == before
    with open_spool(tmp_path, max_bytes // 2, segment_bytes=segment_bytes) as smaller:
        assert smaller.bytes_on_disk() <= max_bytes // 2
        held = set(pending(smaller))
        assert held < set(before[1])
        assert set(gap_seqs(smaller)) == dropped | (set(before[1]) - held)


def test_gaps_survive_a_restart_until_acknowledged_and_announced_ones_never_grow(
    tmp_path: Path,
) -> None:
    options = {"max_bytes": holding(4), "segment_bytes": holding(1)}  # one batch per segment
    with open_spool(tmp_path, **options) as spool:
        for seq in range(1, 7):
            spool.add(batch(seq))
        assert gap_tuples(spool) == [(BOOT, 1, 2, OVERFLOW)]  # consecutive drops merge
        spool.gap_announced(spool.gaps()[0])
        spool.add(batch(7))
        assert gap_tuples(spool) == [(BOOT, 1, 2, OVERFLOW), (BOOT, 3, 3, OVERFLOW)]
    with open_spool(tmp_path, **options) as again:
        assert gap_tuples(again) == [(BOOT, 1, 2, OVERFLOW), (BOOT, 3, 3, OVERFLOW)]
        again.add(batch(8))  # a gap read back from disk may have been announced: not extended
        assert gap_tuples(again)[1:] == [(BOOT, 3, 3, OVERFLOW), (BOOT, 4, 4, OVERFLOW)]
        again.gap_acknowledged(1, 2)
        again.gap_acknowledged(3, 3)
    with open_spool(tmp_path, **options) as third:
        assert gap_tuples(third) == [(BOOT, 4, 4, OVERFLOW)]
        assert pending(third) == [5, 6, 7, 8]


def test_a_batch_larger_than_the_spool_becomes_a_gap(tmp_path: Path) -> None:
    with open_spool(tmp_path, max_bytes=record_size(1, samples=3)) as spool:
        spool.add(batch(1, samples=50))
        spool.add(batch(2, samples=1))
        assert (pending(spool), gap_tuples(spool)) == ([2], [(BOOT, 1, 1, OVERFLOW)])


@pytest.mark.parametrize("kept", [0, 1, 5, 11, 12, 13, 40])
def test_a_torn_append_is_cut_off_silently(tmp_path: Path, kept: int) -> None:
    filled(tmp_path, range(1, 5))
    (segment,) = segment_files(tmp_path)
    good_size = segment.stat().st_size
    with segment.open("ab") as handle:  # the process died inside add(5)
        handle.write(encode_record(batch(5).SerializeToString())[:kept])
    with open_spool(tmp_path) as spool:
        assert pending(spool) == [1, 2, 3, 4]
        assert (spool.corrupt_records, spool.gaps()) == (0, [])
        assert segment.stat().st_size == good_size
        spool.add(batch(5))
    with open_spool(tmp_path) as again:
        assert pending(again) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("cut", [1, 4, 30])
def test_a_cut_off_durable_record_is_announced(tmp_path: Path, cut: int) -> None:
    filled(tmp_path, range(1, 6))
    (segment,) = segment_files(tmp_path)
    size = segment.stat().st_size
    os.truncate(segment, size - cut)  # add(5) had returned: this is damage, not a torn append
    with open_spool(tmp_path) as spool:
        assert pending(spool) == [1, 2, 3, 4]
        assert gap_tuples(spool) == [(BOOT, 5, 5, CORRUPT)]
        assert spool.corrupt_records == 1
        assert segment.stat().st_size == size - record_size(5)


def test_random_byte_flips_in_a_middle_record_lose_only_that_record(tmp_path: Path) -> None:
    sizes = [record_size(seq) for seq in range(1, 10)]
    for seed in range(200):
        rng = random.Random(seed)
        directory = tmp_path / str(seed)
        filled(directory, range(1, 10))
        (segment,) = segment_files(directory)
        data = bytearray(segment.read_bytes())
        start = sum(sizes[:4])  # record 5
        for at in rng.sample(range(sizes[4]), rng.randint(1, 4)):
            data[start + at] ^= rng.randint(1, 255)
        segment.write_bytes(bytes(data))
        with open_spool(directory) as spool:
            assert pending(spool) == [1, 2, 3, 4, 6, 7, 8, 9], seed
            assert gap_tuples(spool) == [(BOOT, 5, 5, CORRUPT)], seed
            assert spool.corrupt_records >= 1
        with open_spool(directory) as again:  # repaired: reported once, not on every start
            assert (again.corrupt_records, gap_tuples(again)) == (0, [(BOOT, 5, 5, CORRUPT)])
            assert pending(again) == [1, 2, 3, 4, 6, 7, 8, 9]


def test_a_segment_cut_exactly_at_a_record_boundary_is_noticed(tmp_path: Path) -> None:
    options = {"segment_bytes": holding(3)}
    filled(tmp_path, range(1, 10), **options)
    _, middle, last = segment_files(tmp_path)
    os.truncate(middle, record_size(4))  # keeps record 4 whole; 5 and 6 are gone
    os.truncate(last, record_size(7) + record_size(8))  # keeps 7 and 8; add(9) had returned
    with open_spool(tmp_path, **options) as spool:
        assert pending(spool) == [1, 2, 3, 4, 7, 8]
        assert gap_tuples(spool) == [(BOOT, 5, 6, CORRUPT), (BOOT, 9, 9, CORRUPT)]


def test_seqs_skipped_by_a_crash_are_not_reported(tmp_path: Path) -> None:
    options = {"segment_bytes": holding(2)}
    filled(tmp_path, range(1, 4), **options)
    filled(tmp_path, range(5, 8), **options)  # seq 4 died with the process that took it
    with open_spool(tmp_path, **options) as spool:
        assert (pending(spool), spool.gaps(), spool.corrupt_records) == ([1, 2, 3, 5, 6, 7], [], 0)
        spool.acknowledge_through(6)
    with open_spool(tmp_path, **options) as again:
        assert (pending(again), again.gaps(), again.corrupt_records) == ([7], [], 0)


def test_a_garbage_segment_becomes_a_gap(tmp_path: Path) -> None:
    options = {"segment_bytes": holding(3)}
    filled(tmp_path, range(1, 10), **options)
    first, middle, last = segment_files(tmp_path)
    assert middle.name == f"{4:020d}.seg"
    middle.write_bytes(random.Random(1).randbytes(middle.stat().st_size))
    last.write_bytes(MAGIC * 5000)  # the worst case for resynchronising, still quick
    with open_spool(tmp_path, **options) as spool:
        assert pending(spool) == [1, 2, 3]
        assert gap_tuples(spool) == [(BOOT, 4, 9, CORRUPT)]
        assert spool.corrupt_records == 2
        assert segment_files(tmp_path) == [first]
        spool.add(batch(10))
    with open_spool(tmp_path, **options) as again:
        assert (pending(again), again.corrupt_records) == ([1, 2, 3, 10], 0)


def test_empty_segments_and_unreadable_state_files_are_survived(tmp_path: Path) -> None:
    options = {"segment_bytes": holding(2)}
    filled(tmp_path, range(1, 7), **options)
    (tmp_path / f"{7:020d}.seg").touch()  # died between creating a segment and its first record
    (tmp_path / "progress.json").write_text('{"acked": [[1, ')
    (tmp_path / "gaps.json").write_text("[{")
    with open_spool(tmp_path, **options) as spool:
        assert pending(spool) == [1, 2, 3, 4, 5, 6]
        assert (spool.corrupt_records, spool.gaps()) == (0, [])
    first, middle, last = segment_files(tmp_path)
    os.truncate(middle, 0)  # a middle segment emptied: its batches are gone, and said so
    with open_spool(tmp_path, **options) as again:
        assert pending(again) == [1, 2, 5, 6]
        assert gap_tuples(again) == [(BOOT, 3, 4, CORRUPT)]
        assert segment_files(tmp_path) == [first, last]


def test_a_second_process_cannot_open_the_same_spool(tmp_path: Path) -> None:
    with open_spool(tmp_path), pytest.raises(ConfigError) as refused:
        open_spool(tmp_path)
    assert refused.value.reason == "SPOOL_LOCKED"
    with open_spool(tmp_path):
        pass


def run_child(code: str, *args: str) -> subprocess.Popen[str]:
    """`code` runs with `batch` and `BOOT` defined, as this module defines them."""
    prelude = "from sentinel.v1 import telemetry_pb2\nBOOT = 'boot-1'\n" + getsource(batch)
    return subprocess.Popen(
        [sys.executable, "-c", prelude + textwrap.dedent(code), *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_failed_writes_are_retried_in_a_fresh_segment_without_loss(tmp_path: Path) -> None:
    # A file size limit makes the kernel refuse writes (EFBIG), as a failing disk would.
    child = run_child(
        """
        import json, resource, signal, sys
        from pathlib import Path
        from edge_agent.spool import Spool

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        spool = Spool.open(Path(sys.argv[1]), max_bytes=1 << 20, segment_bytes=1 << 16)
        resource.setrlimit(resource.RLIMIT_FSIZE, (3000, resource.RLIM_INFINITY))
        for seq in range(1, 61):
            spool.add(batch(seq))
        print(json.dumps([spool.write_errors, len(spool), len(spool.gaps())]))
        """,
        str(tmp_path),
    )
    output, _ = child.communicate(timeout=60)
    write_errors, held, gaps = json.loads(output)
    assert write_errors >= 2
    assert (held, gaps) == (60, 0)
    assert all(path.stat().st_size <= 3000 for path in segment_files(tmp_path))
    with open_spool(tmp_path) as spool:
        assert pending(spool) == list(range(1, 61))
        assert (spool.corrupt_records, spool.gaps()) == (0, [])


# The agent in miniature: add a batch, then say so (as the sender would then send it).
CHILD = (
    textwrap.dedent(
        """
    import sys
    from pathlib import Path
    from edge_agent.spool import Spool
    from sentinel.v1 import telemetry_pb2
    BOOT = "boot-1"
    """
    )
    + getsource(batch)
    + textwrap.dedent(
        """
    spool = Spool.open(Path(sys.argv[1]), max_bytes=1 << 20, segment_bytes=4096)
    seq = int(sys.argv[2])
    while True:
        spool.add(batch(seq, samples=seq % 5))
        print(seq, flush=True)
        seq += 1
    """
    )
)


def test_kill_9_at_random_points_loses_no_batch_whose_add_returned(tmp_path: Path) -> None:
    rng = random.Random(2024)
    added: set[int] = set()
    acked: set[int] = set()
    next_seq = 1
    for _ in range(20):
        child = run_child(CHILD, str(tmp_path), str(next_seq))
        assert child.stdout is not None
        for _ in range(rng.randint(1, 25)):
            added.add(int(child.stdout.readline()))
        time.sleep(rng.random() * 0.003)  # picks the kill point; waits for nothing
        child.send_signal(signal.SIGKILL)
        child.wait()
        added.update(int(line) for line in child.stdout.read().split())
        child.stdout.close()
        with Spool.open(tmp_path, max_bytes=1 << 20, segment_bytes=4096) as spool:
            seqs = pending(spool)
            assert added - acked <= set(seqs)  # nothing whose add returned is lost
            assert not acked & set(seqs)  # nothing acknowledged comes back
            assert spool.gaps() == []
            # Sometimes a seq was taken for a batch that died with the process: a hole.
            next_seq = max([*seqs, *added]) + rng.randint(1, 2)
            through = rng.choice(seqs)
            spool.acknowledge_through(through)
            acked.update(s for s in seqs if s <= through)
    assert len(added) > 100
