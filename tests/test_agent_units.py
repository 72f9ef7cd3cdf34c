"""The agent's small parts, in isolation: backoff and the persisted sequence state
(the spool has its own tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.backoff import Backoff
from edge_agent.state import STATE_FILE, SequenceState
from sentinel.errors import ConfigError


def test_backoff_grows_exponentially_with_full_jitter_and_caps() -> None:
    top = Backoff(0.5, 30.0, rand=lambda: 1.0)
    assert [top.next_delay_s() for _ in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    top.reset()
    assert top.next_delay_s() == 0.5
    low = Backoff(0.5, 30.0, rand=lambda: 0.25)
    assert [low.next_delay_s() for _ in range(3)] == [0.125, 0.25, 0.5]


def test_sequence_state_survives_a_restart(tmp_path: Path) -> None:
    first = SequenceState.open(tmp_path)
    for seq in (1, 2, 3):
        assert first.next_seq == seq
        first.commit(seq)
    again = SequenceState.open(tmp_path)
    assert again.boot_id == first.boot_id
    assert (again.next_seq, again.last_allocated) == (4, 3)
    again.advance_past(2)  # behind: no change
    assert again.next_seq == 4
    again.advance_past(9)  # a batch the spool holds beyond the state: skip past it
    assert SequenceState.open(tmp_path).next_seq == 10


def test_corrupt_sequence_state_is_an_error_not_a_reset(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_text('{"boot_id": "x"')
    with pytest.raises(ConfigError) as caught:
        SequenceState.open(tmp_path)
    assert caught.value.reason == "STATE_CORRUPT"
    assert (tmp_path / STATE_FILE).read_text() == '{"boot_id": "x"'
