"""SlidingWindowLog: half-open counts, out-of-order records, pruning, and its text form."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from policy import SlidingWindowLog
from sentinel.errors import ConfigError, InvalidArgument

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
US = timedelta(microseconds=1)


def test_count_is_open_at_since_and_closed_at_until() -> None:
    log = SlidingWindowLog()
    for offset in (0, 1, 1, 2):
        log.record("k", T0 + offset * US)
    assert log.count("k", T0, T0 + 2 * US) == 3  # t=0 excluded, t=2 included
    assert log.count("k", T0 - US, T0) == 1
    assert log.count("k", T0 + US, T0 + US) == 0
    assert log.count("k", T0 + 2 * US, T0) == 0  # an empty span
    assert log.count("other", T0 - US, T0 + 2 * US) == 0
    assert len(log) == 4


def test_instants_in_any_zone_are_the_same_instants() -> None:
    log = SlidingWindowLog()
    log.record("k", T0.astimezone(timezone(timedelta(hours=5, minutes=30))))
    assert log.count("k", T0 - US, T0) == 1


def test_out_of_order_records_keep_counts_right() -> None:
    log = SlidingWindowLog()
    for minutes in (5, 1, 3, 2, 4):
        log.record("k", T0 + timedelta(minutes=minutes))
    assert log.count("k", T0 + timedelta(minutes=1), T0 + timedelta(minutes=3)) == 2
    assert [line.split()[0] for line in log.to_lines()] == sorted(
        line.split()[0] for line in log.to_lines()
    )


def test_prune_drops_older_events_and_empty_keys() -> None:
    log = SlidingWindowLog()
    log.record("old", T0 - timedelta(hours=2))
    log.record("k", T0 - timedelta(hours=1))
    log.record("k", T0)
    assert log.prune(T0 - timedelta(hours=1)) == 1  # strictly before
    assert log.keys() == ["k"]
    assert log.prune(T0 + US) == 2
    assert len(log) == 0 and log.keys() == []


def test_text_round_trip() -> None:
    log = SlidingWindowLog()
    log.record("restarts|node_action|n1|node.systemd.restart", T0)
    log.record("budget|target|deployment/ml/my trainer", T0 - US)
    log.record("a|fleet", datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC))
    lines = list(log.to_lines())
    assert lines == [  # keys sorted, each key's events in time order
        "-1000000 a|fleet",
        "1795607999999999 budget|target|deployment/ml/my trainer",
        "1795608000000000 restarts|node_action|n1|node.systemd.restart",
    ]
    again = SlidingWindowLog.from_lines(
        ["# sentinel rate-limit history", "", *(f"{line}\n" for line in lines)]
    )
    assert again == log
    assert list(again.to_lines()) == lines


@pytest.mark.parametrize(
    "line", ["12", "x key", "12  key", "1.5 key", "99999999999999999999 key", "² key"]
)
def test_a_corrupt_line_names_its_number(line: str) -> None:
    with pytest.raises(ConfigError, match=r"^rate-limit history line 2: "):
        SlidingWindowLog.from_lines(["1 ok", line])


def test_naive_times_and_bad_keys_are_refused() -> None:
    log = SlidingWindowLog()
    with pytest.raises(InvalidArgument, match="naive"):
        log.record("k", datetime(2026, 1, 1))
    with pytest.raises(InvalidArgument, match="naive"):
        log.count("k", datetime(2026, 1, 1), T0)
    for key in ("", "a\nb", " k"):
        with pytest.raises(InvalidArgument):
            log.record(key, T0)
