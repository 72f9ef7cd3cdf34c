"""The agent's small parts, in isolation: outbox bounds and gaps, backoff, the persisted
sequence state."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.backoff import Backoff
from edge_agent.outbox import Outbox
from edge_agent.state import STATE_FILE, SequenceState
from sentinel.errors import ConfigError
from sentinel.v1 import telemetry_pb2


def batch(seq: int, boot_id: str = "boot") -> telemetry_pb2.TelemetryBatch:
    return telemetry_pb2.TelemetryBatch(node_id="n", boot_id=boot_id, seq=seq)


def test_outbox_keeps_batches_until_acknowledged_oldest_first() -> None:
    outbox = Outbox(max_batches=10)
    for seq in (1, 2, 3):
        outbox.add(batch(seq))
    assert [outbox.next_after(s).seq for s in (0, 1, 2)] == [1, 2, 3]  # type: ignore[union-attr]
    assert outbox.next_after(3) is None
    outbox.acknowledge(2)
    assert (len(outbox), outbox.oldest_seq(), outbox.newest_seq()) == (2, 1, 3)
    outbox.acknowledge_through(3)
    assert len(outbox) == 0
    assert outbox.acked_batches == 3
    assert outbox.gaps() == []


def test_outbox_overflow_drops_oldest_and_records_one_gap_per_run() -> None:
    outbox = Outbox(max_batches=3)
    for seq in range(1, 9):
        outbox.add(batch(seq))
    assert [outbox.next_after(s).seq for s in (0, 6, 7)] == [6, 7, 8]  # type: ignore[union-attr]
    assert outbox.dropped_batches == 5
    (gap,) = outbox.gaps()
    assert (gap.boot_id, gap.from_seq, gap.to_seq, gap.reason) == (
        "boot",
        1,
        5,
        telemetry_pb2.GAP_REASON_OVERFLOW,
    )
    outbox.gap_acknowledged(1, 5)
    assert outbox.gaps() == []


def test_backoff_grows_exponentially_with_full_jitter_and_caps() -> None:
    top = Backoff(0.5, 30.0, rand=lambda: 1.0)
    assert [top.next_delay_s() for _ in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    top.reset()
    assert top.next_delay_s() == 0.5
    low = Backoff(0.5, 30.0, rand=lambda: 0.25)
    assert [low.next_delay_s() for _ in range(3)] == [0.125, 0.25, 0.5]


def test_sequence_state_survives_a_restart(tmp_path: Path) -> None:
    first = SequenceState.open(tmp_path)
    assert [first.allocate() for _ in range(3)] == [1, 2, 3]
    again = SequenceState.open(tmp_path)
    assert again.boot_id == first.boot_id
    assert again.allocate() == 4
    assert again.last_allocated == 4


def test_corrupt_sequence_state_is_an_error_not_a_reset(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_text('{"boot_id": "x"')
    with pytest.raises(ConfigError) as caught:
        SequenceState.open(tmp_path)
    assert caught.value.reason == "STATE_CORRUPT"
    assert (tmp_path / STATE_FILE).read_text() == '{"boot_id": "x"'
