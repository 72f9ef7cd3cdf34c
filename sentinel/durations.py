"""Durations and instants: as people type them, and as protobuf carries them.

Text follows Go (`time.ParseDuration`, `Duration.String`) and RFC 3339, the forms
that kubectl, Prometheus and NATS users already know; the wire form is
`google.protobuf.Duration` and `google.protobuf.Timestamp`.

Invariants:
- every `datetime` this module returns is timezone-aware and in UTC; a naive one is
  never accepted, because it is ambiguous (reason `INVALID_TIME`);
- resolution is the microsecond, that of `timedelta`. Finer durations are rounded to
  the nearest microsecond, ties to even, as `timedelta` itself rounds. Finer instants
  are truncated, as protobuf's `Timestamp.ToDatetime` does: an instant (a deadline)
  then never lands later than stated, and 9999-12-31T23:59:59.9999999Z stays valid;
- a parsed duration is within Go's range (about 292 years), so every text accepted
  here is also valid to Go tools, and `parse_duration(format_duration(td)) == td`
  for every `td` in that range;
- bad input raises `InvalidArgument` with reason `INVALID_DURATION` or `INVALID_TIME`.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from sentinel.errors import InvalidArgument

_NS_PER_UNIT = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 MICRO SIGN, what Go prints
    "μs": 1_000,  # U+03BC GREEK SMALL LETTER MU, which Go also accepts
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
# Longer units first, so that "ms" is never read as "m" followed by junk.
_COMPONENT = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION = re.compile(rf"[-+]?(?:0|(?:{_COMPONENT.pattern})+)")
_GO_MIN_NS, _GO_MAX_NS = -(2**63), 2**63 - 1  # Go's time.Duration is an int64 of ns
_PROTO_MAX_DURATION_S = 315_576_000_000  # the bound google.protobuf.Duration documents
_PROTO_MIN_TS_S, _PROTO_MAX_TS_S = -62_135_596_800, 253_402_300_799  # years 0001..9999

_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]+))?(?:([Zz])|([-+])([0-9]{2}):([0-9]{2}))?"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_US_PER_S = 1_000_000


def parse_duration(text: str) -> timedelta:
    """Parse a Go duration such as `90s`, `1h30m`, `1.5h`, `-300ms` or `0`."""
    if not _DURATION.fullmatch(text):
        raise _duration_error(text, "use Go syntax such as 90s, 15m or 2h")
    total_ns = Fraction(0)
    for number, unit in _COMPONENT.findall(text):
        total_ns += Fraction(number) * _NS_PER_UNIT[unit]
    if text.startswith("-"):
        total_ns = -total_ns
    if not _GO_MIN_NS <= total_ns <= _GO_MAX_NS:
        raise _duration_error(text, "out of range: a duration must be within ±2562047h")
    return timedelta(microseconds=round(total_ns / 1000))


def format_duration(td: timedelta) -> str:
    """Format as Go's `Duration.String` does: `1h30m0s`, `5s`, `1.5s`, `300µs`, `0s`."""
    us = td // _MICROSECOND
    if us == 0:
        return "0s"
    sign = "-" if us < 0 else ""
    us = abs(us)
    if us < 1_000:
        return f"{sign}{us}µs"
    if us < _US_PER_S:
        return f"{sign}{_decimal(us, 3)}ms"
    hours, rest = divmod(us, 3_600 * _US_PER_S)
    minutes, rest = divmod(rest, 60 * _US_PER_S)
    text = f"{_decimal(rest, 6)}s"
    if hours or minutes:
        text = f"{minutes}m{text}"
    if hours:
        text = f"{hours}h{text}"
    return sign + text


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 date-time (`2026-11-27T13:00:00Z`, `...13:00:00.5+02:00`) to UTC."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise _time_error(text, "use RFC 3339 such as 2026-11-27T13:00:00Z")
    fraction, zulu, sign, off_h, off_m = match.groups()[6:]
    if zulu is None and sign is None:
        raise _time_error(text, "no time zone; add Z for UTC or an offset such as +02:00")
    offset = timedelta(0)
    if sign is not None:
        if int(off_h) > 23 or int(off_m) > 59:
            raise _time_error(text, "offset must be within -23:59..+23:59")
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        offset = -offset if sign == "-" else offset
    year, month, day, hour, minute, second = (int(field) for field in match.groups()[:6])
    micros = int((fraction or "")[:6].ljust(6, "0"))
    try:
        local = datetime(year, month, day, hour, minute, second, micros, tzinfo=timezone(offset))
        return local.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise _time_error(text, str(exc)) from exc


def format_time(dt: datetime) -> str:
    """Format an aware datetime as RFC 3339 in UTC: `2026-11-27T13:00:00Z`, `...:00.25Z`."""
    utc = _as_utc(dt)
    text = utc.replace(tzinfo=None).isoformat(timespec="seconds")
    if utc.microsecond:
        text += "." + f"{utc.microsecond:06d}".rstrip("0")
    return text + "Z"


def to_proto_duration(td: timedelta) -> Duration:
    """A `google.protobuf.Duration`; `seconds` and `nanos` carry the same sign."""
    us = td // _MICROSECOND
    sign = -1 if us < 0 else 1
    seconds, micros = divmod(abs(us), _US_PER_S)
    if seconds > _PROTO_MAX_DURATION_S:
        raise _duration_error(format_duration(td), "out of range for google.protobuf.Duration")
    return Duration(seconds=sign * seconds, nanos=sign * micros * 1_000)


def from_proto_duration(d: Duration) -> timedelta:
    total_ns = d.seconds * 1_000_000_000 + d.nanos
    try:
        return timedelta(microseconds=round(Fraction(total_ns, 1_000)))
    except OverflowError as exc:
        raise _duration_error(f"{d.seconds}s{d.nanos}ns", "out of range") from exc


def to_timestamp(dt: datetime) -> Timestamp:
    """A `google.protobuf.Timestamp` for an aware datetime."""
    us = (_as_utc(dt) - _EPOCH) // _MICROSECOND
    seconds, micros = divmod(us, _US_PER_S)  # floor: nanos stays within [0, 1e9)
    return Timestamp(seconds=seconds, nanos=micros * 1_000)


def from_timestamp(ts: Timestamp) -> datetime:
    """The instant `ts` names, aware and in UTC, truncated to the microsecond."""
    us = (ts.seconds * 1_000_000_000 + ts.nanos) // 1_000
    if not _PROTO_MIN_TS_S * _US_PER_S <= us < (_PROTO_MAX_TS_S + 1) * _US_PER_S:
        raise InvalidArgument(
            f"invalid timestamp {ts.seconds}s {ts.nanos}ns: outside years 0001..9999",
            reason="INVALID_TIME",
        )
    return _EPOCH + timedelta(microseconds=us)


def timestamp_now() -> Timestamp:
    """The current wall-clock time; code that decides things takes an injected clock."""
    return to_timestamp(datetime.now(UTC))


def _decimal(value: int, places: int) -> str:
    """`value / 10**places` in decimal, without trailing zeros: 1500, 3 -> "1.5"."""
    whole, fraction = divmod(value, 10**places)
    digits = f"{fraction:0{places}d}".rstrip("0")
    return f"{whole}.{digits}" if digits else str(whole)


def _as_utc(dt: datetime) -> datetime:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise InvalidArgument(
            f"naive datetime {dt.isoformat()}: attach a time zone (e.g. UTC) first",
            reason="INVALID_TIME",
        )
    try:
        return dt.astimezone(UTC)
    except OverflowError as exc:
        raise InvalidArgument(
            f"datetime {dt.isoformat()} is outside years 0001..9999 in UTC", reason="INVALID_TIME"
        ) from exc


def _duration_error(text: str, problem: str) -> InvalidArgument:
    return InvalidArgument(
        f"invalid duration {_quote(text)}: {problem}", reason="INVALID_DURATION", duration=text
    )


def _time_error(text: str, problem: str) -> InvalidArgument:
    return InvalidArgument(
        f"invalid time {_quote(text)}: {problem}", reason="INVALID_TIME", time=text
    )


def _quote(text: str) -> str:
    """Quote as Go's %q does, so that empty and blank inputs stay visible."""
    return json.dumps(text, ensure_ascii=False)


__all__ = [
    "format_duration",
    "format_time",
    "from_proto_duration",
    "from_timestamp",
    "parse_duration",
    "parse_time",
    "timestamp_now",
    "to_proto_duration",
    "to_timestamp",
]
