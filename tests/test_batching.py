"""The agent's batches stay under MAX_BATCH_BYTES serialised: a batch that would grow
past it is sealed early and the rest goes into the next one (same boot, next seq); a
sample too large for any batch is dropped, counted and announced as a gap. Real spool."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.batching import MAX_BATCH_BYTES, Batcher, sample_field_bytes
from edge_agent.spool import Spool
from edge_agent.state import SequenceState
from sentinel.v1 import telemetry_pb2

KIB = 1024
OVERFLOW = telemetry_pb2.GAP_REASON_OVERFLOW


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[Batcher, Spool, SequenceState]]:
    sequence = SequenceState.open(tmp_path / "agent")
    spool = Spool.open(tmp_path / "spool", max_bytes=64 << 20, fsync=False)
    yield Batcher("node-a", sequence, spool), spool, sequence
    spool.close()


def sample(index: int, padding: int) -> telemetry_pb2.Sample:
    made = telemetry_pb2.Sample()
    made.time.seconds = 1_700_000_000 + index
    made.host.cpu_percent = index % 100
    made.gpus.add(index=0, uuid=f"{index:08d}" + "x" * padding)
    return made


def spooled(spool: Spool) -> list[telemetry_pb2.TelemetryBatch]:
    batches, found = [], spool.next_after(0)
    while found is not None:
        batches.append(found)
        found = spool.next_after(found.seq)
    return batches


def test_a_batch_that_would_outgrow_the_limit_is_sealed_early_and_the_rest_follows(
    parts: tuple[Batcher, Spool, SequenceState],
) -> None:
    batcher, spool, sequence = parts
    samples = [sample(index, padding=60 * KIB) for index in range(30)]  # about 1.8 MiB
    for one in samples:
        batcher.add(one)
    batcher.seal()

    batches = spooled(spool)
    assert len(batches) == 4  # 8 samples fit under 512 KiB, the 9th does not
    assert all(batch.ByteSize() <= MAX_BATCH_BYTES for batch in batches)
    assert [batch.seq for batch in batches] == [1, 2, 3, 4]
    assert {batch.boot_id for batch in batches} == {sequence.boot_id}
    assert [s for batch in batches for s in batch.samples] == samples  # none lost, in order
    assert (spool.gaps(), spool.dropped_batches) == ([], 0)


def test_a_sample_larger_than_any_batch_is_dropped_counted_and_announced_as_a_gap(
    parts: tuple[Batcher, Spool, SequenceState],
) -> None:
    batcher, spool, sequence = parts
    small, huge, after = sample(1, 10), sample(2, MAX_BATCH_BYTES), sample(3, 10)
    batcher.add(small)
    batcher.add(huge)  # seals the small one first, then cannot be sent at all
    batcher.add(after)
    batcher.seal()

    assert [(b.seq, list(b.samples)) for b in spooled(spool)] == [(1, [small]), (3, [after])]
    [gap] = spool.gaps()
    assert (gap.boot_id, gap.from_seq, gap.to_seq, gap.reason) == (sequence.boot_id, 2, 2, OVERFLOW)
    assert (spool.dropped_batches, spool.oversized_batches) == (1, 1)
    assert sequence.next_seq == 4


def test_an_exactly_full_batch_is_kept_whole(parts: tuple[Batcher, Spool, SequenceState]) -> None:
    batcher, spool, _ = parts
    first = sample(1, 100 * KIB)
    batcher.add(first)
    room = MAX_BATCH_BYTES - batcher.batch_bytes
    # A sample whose field takes exactly the room left (tag, length and body).
    filler = sample(2, 0)
    for _ in range(3):  # lengths are varints: the size settles in two rounds
        length = len(filler.gpus[0].uuid) + room - sample_field_bytes(filler)
        filler.gpus[0].uuid = "x" * length
    assert sample_field_bytes(filler) == room
    batcher.add(filler)
    batcher.seal()

    [whole] = spooled(spool)
    assert list(whole.samples) == [first, filler]
    assert whole.ByteSize() <= MAX_BATCH_BYTES
