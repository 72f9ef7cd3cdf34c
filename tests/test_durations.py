"""Go-syntax durations, RFC 3339 times and their protobuf forms."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from sentinel.durations import (
    format_duration,
    format_time,
    from_proto_duration,
    from_timestamp,
    parse_duration,
    parse_time,
    timestamp_now,
    to_proto_duration,
    to_timestamp,
)
from sentinel.errors import InvalidArgument

US = timedelta(microseconds=1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1.5h", timedelta(hours=1, minutes=30)),
        ("300ms", timedelta(milliseconds=300)),
        ("250us", 250 * US),
        ("250µs", 250 * US),  # U+00B5 micro sign, as Go prints it
        ("250μs", 250 * US),  # U+03BC Greek mu, which Go also accepts
        ("10ns", timedelta(0)),  # below the microsecond: rounded away
        ("1500ns", 2 * US),  # a tie rounds to even
        ("2500ns", 2 * US),
        ("1501ns", 2 * US),
        ("-1h30m", -timedelta(hours=1, minutes=30)),
        ("+5s", timedelta(seconds=5)),
        ("0", timedelta(0)),
        ("-0", timedelta(0)),
        ("0s", timedelta(0)),
        (".5s", timedelta(milliseconds=500)),
        ("1.s", timedelta(seconds=1)),
        ("1h1m1s1ms1us", timedelta(hours=1, minutes=1, seconds=1, milliseconds=1, microseconds=1)),
        ("2562047h", timedelta(hours=2562047)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "5", "5 m", " 5m", "5m ", "1d", "abc", "h", ".s", "5x", "--1s", "1h-1m", "0x", "00", "5M"],
)
def test_parse_duration_refuses_non_go_syntax(text: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_duration(text)
    assert caught.value.reason == "INVALID_DURATION"
    assert str(caught.value) == f'invalid duration "{text}": use Go syntax such as 90s, 15m or 2h'
    assert caught.value.details == {"duration": text}


def test_parse_duration_refuses_what_go_cannot_hold() -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_duration("2562048h")
    assert caught.value.reason == "INVALID_DURATION"
    assert str(caught.value) == (
        'invalid duration "2562048h": out of range: a duration must be within ±2562047h'
    )


@pytest.mark.parametrize(
    ("td", "expected"),
    [
        (timedelta(0), "0s"),
        (timedelta(seconds=5), "5s"),
        (timedelta(seconds=1.5), "1.5s"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(hours=1, minutes=30), "1h30m0s"),
        (timedelta(hours=2), "2h0m0s"),
        (timedelta(hours=1, seconds=0.25), "1h0m0.25s"),
        (timedelta(days=2), "48h0m0s"),
        (timedelta(milliseconds=300), "300ms"),
        (timedelta(microseconds=1500), "1.5ms"),
        (250 * US, "250µs"),
        (US, "1µs"),
        (-timedelta(minutes=15), "-15m0s"),
        (-timedelta(microseconds=1), "-1µs"),
        (timedelta(seconds=1, microseconds=1), "1.000001s"),
    ],
)
def test_format_duration_is_go_style(td: timedelta, expected: str) -> None:
    assert format_duration(td) == expected


@pytest.mark.parametrize(
    "td",
    [
        timedelta(0),
        US,
        -US,
        999 * US,
        timedelta(milliseconds=999, microseconds=999),
        timedelta(hours=25, minutes=59, seconds=59, microseconds=123456),
        -timedelta(days=3, seconds=1, microseconds=7),
        timedelta(hours=2562047),
    ],
)
def test_duration_text_round_trips(td: timedelta) -> None:
    assert parse_duration(format_duration(td)) == td


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-27T13:00:00Z", datetime(2026, 11, 27, 13, tzinfo=UTC)),
        ("2026-11-27t13:00:00z", datetime(2026, 11, 27, 13, tzinfo=UTC)),
        ("2026-11-27T15:00:00+02:00", datetime(2026, 11, 27, 13, tzinfo=UTC)),
        ("2026-11-27T07:30:00-05:30", datetime(2026, 11, 27, 13, tzinfo=UTC)),
        ("2026-11-27T13:00:00-00:00", datetime(2026, 11, 27, 13, tzinfo=UTC)),
        ("2026-11-27T13:00:00.5Z", datetime(2026, 11, 27, 13, 0, 0, 500000, tzinfo=UTC)),
        ("2026-11-27T13:00:00.123456Z", datetime(2026, 11, 27, 13, 0, 0, 123456, tzinfo=UTC)),
        # Finer than a microsecond is truncated, never rounded past the stated instant.
        ("2026-11-27T13:00:00.123456999Z", datetime(2026, 11, 27, 13, 0, 0, 123456, tzinfo=UTC)),
        ("9999-12-31T23:59:59.9999999Z", datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
        ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC)),
    ],
)
def test_parse_time(text: str, expected: datetime) -> None:
    parsed = parse_time(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("2026-11-27T13:00:00", "no time zone; add Z for UTC or an offset such as +02:00"),
        ("2026-11-27T13:00:00.5", "no time zone; add Z for UTC or an offset such as +02:00"),
        ("", "use RFC 3339 such as 2026-11-27T13:00:00Z"),
        ("2026-11-27", "use RFC 3339 such as 2026-11-27T13:00:00Z"),
        ("2026-11-27 13:00:00Z", "use RFC 3339 such as 2026-11-27T13:00:00Z"),
        ("2026-11-27T13:00Z", "use RFC 3339 such as 2026-11-27T13:00:00Z"),
        ("2026-11-27T13:00:00+0200", "use RFC 3339 such as 2026-11-27T13:00:00Z"),
        ("2026-11-27T13:00:00.Z", "use RFC 3339 such as 2026-11-27T13:00:00Z"),
        ("tomorrow", "use RFC 3339 such as 2026-11-27T13:00:00Z"),
        ("2026-11-27T13:00:00+24:00", "offset must be within -23:59..+23:59"),
        ("2026-11-27T13:00:00+01:60", "offset must be within -23:59..+23:59"),
        ("2026-13-27T13:00:00Z", "month must be in 1..12"),
        ("2026-02-30T13:00:00Z", "day is out of range for month"),
        ("2026-11-27T13:00:60Z", "second must be in 0..59"),
        ("0001-01-01T00:00:00+01:00", "date value out of range"),
    ],
)
def test_parse_time_refuses(text: str, problem: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_time(text)
    assert caught.value.reason == "INVALID_TIME"
    assert str(caught.value) == f'invalid time "{text}": {problem}'


@pytest.mark.parametrize(
    ("dt", "expected"),
    [
        (datetime(2026, 11, 27, 13, tzinfo=UTC), "2026-11-27T13:00:00Z"),
        (datetime(2026, 11, 27, 15, tzinfo=timezone(timedelta(hours=2))), "2026-11-27T13:00:00Z"),
        (datetime(2026, 11, 27, 13, 0, 0, 250000, tzinfo=UTC), "2026-11-27T13:00:00.25Z"),
        (datetime(2026, 11, 27, 13, 0, 0, 1, tzinfo=UTC), "2026-11-27T13:00:00.000001Z"),
        (datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC), "0999-01-02T03:04:05Z"),
    ],
)
def test_format_time_is_utc_with_z(dt: datetime, expected: str) -> None:
    assert format_time(dt) == expected
    assert parse_time(format_time(dt)) == dt


def test_naive_datetimes_are_refused() -> None:
    naive = datetime(2026, 11, 27, 13)
    for convert in (format_time, to_timestamp):
        with pytest.raises(InvalidArgument) as caught:
            convert(naive)
        assert caught.value.reason == "INVALID_TIME"
        assert str(caught.value) == (
            "naive datetime 2026-11-27T13:00:00: attach a time zone (e.g. UTC) first"
        )


def test_an_aware_datetime_outside_utc_years_is_refused() -> None:
    early = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    with pytest.raises(InvalidArgument) as caught:
        format_time(early)
    assert caught.value.reason == "INVALID_TIME"
    assert str(caught.value) == (
        "datetime 0001-01-01T00:00:00+01:00 is outside years 0001..9999 in UTC"
    )


@pytest.mark.parametrize(
    ("td", "seconds", "nanos"),
    [
        (timedelta(0), 0, 0),
        (timedelta(seconds=90), 90, 0),
        (timedelta(seconds=1.5), 1, 500_000_000),
        (-timedelta(seconds=1.5), -1, -500_000_000),  # both fields carry the sign
        (-US, 0, -1_000),
        (timedelta(days=1, microseconds=7), 86_400, 7_000),
    ],
)
def test_proto_duration_round_trip(td: timedelta, seconds: int, nanos: int) -> None:
    proto = to_proto_duration(td)
    assert (proto.seconds, proto.nanos) == (seconds, nanos)
    assert from_proto_duration(proto) == td


@pytest.mark.parametrize(
    ("seconds", "nanos", "expected"),
    [
        (0, 1_499, US),  # rounded to the nearest microsecond
        (0, 1_500, 2 * US),
        (0, 999, US),
        (0, 400, timedelta(0)),
        (-2, -1, -timedelta(seconds=2)),
    ],
)
def test_from_proto_duration_rounds_nanos(seconds: int, nanos: int, expected: timedelta) -> None:
    assert from_proto_duration(Duration(seconds=seconds, nanos=nanos)) == expected


def test_proto_duration_limits() -> None:
    with pytest.raises(InvalidArgument) as caught:
        to_proto_duration(timedelta(seconds=315_576_000_001))
    assert caught.value.reason == "INVALID_DURATION"
    assert str(caught.value) == (
        'invalid duration "87660000h0m1s": out of range for google.protobuf.Duration'
    )
    with pytest.raises(InvalidArgument) as caught:
        from_proto_duration(Duration(seconds=2**62))
    assert caught.value.reason == "INVALID_DURATION"
    assert str(caught.value) == f'invalid duration "{2**62}s0ns": out of range'


@pytest.mark.parametrize(
    ("dt", "seconds", "nanos"),
    [
        (datetime(1970, 1, 1, tzinfo=UTC), 0, 0),
        (datetime(2026, 11, 27, 13, tzinfo=UTC), 1_795_784_400, 0),
        (datetime(2026, 11, 27, 15, tzinfo=timezone(timedelta(hours=2))), 1_795_784_400, 0),
        (datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC), -1, 500_000_000),
        (datetime(1, 1, 1, tzinfo=UTC), -62_135_596_800, 0),
        (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), 253_402_300_799, 999_999_000),
    ],
)
def test_timestamp_round_trip(dt: datetime, seconds: int, nanos: int) -> None:
    ts = to_timestamp(dt)
    assert (ts.seconds, ts.nanos) == (seconds, nanos)
    back = from_timestamp(ts)
    assert back == dt
    assert back.tzinfo is UTC


def test_from_timestamp_truncates_nanos() -> None:
    ts = Timestamp(seconds=253_402_300_799, nanos=999_999_999)
    assert from_timestamp(ts) == datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


@pytest.mark.parametrize("seconds", [-62_135_596_801, 253_402_300_800])
def test_from_timestamp_refuses_out_of_range(seconds: int) -> None:
    with pytest.raises(InvalidArgument) as caught:
        from_timestamp(Timestamp(seconds=seconds))
    assert caught.value.reason == "INVALID_TIME"
    assert str(caught.value) == f"invalid timestamp {seconds}s 0ns: outside years 0001..9999"


def test_timestamp_now_is_the_current_time() -> None:
    before = datetime.now(UTC)
    now = from_timestamp(timestamp_now())
    after = datetime.now(UTC)
    assert before <= now <= after
