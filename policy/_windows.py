"""Freeze windows: one-off spans, RRULE recurrences in a local zone, and holiday calendars.

    windows:
      - once: {start: "2026-12-20T00:00:00+01:00", end: "2027-01-04T00:00:00+01:00"}
      - recurring: {rrule: "FREQ=DAILY", start: "22:00", duration: 8h,
                    timezone: Europe/Berlin, dtstart: "2026-01-05"}   # dtstart optional
      - holidays: {calendar: de-be, timezone: Europe/Berlin}

Invariants:
- every window is half-open, `[start, end)`, in instants;
- recurrences are computed on the local wall clock of their zone with dateutil's rrule:
  "22:00 for 8h" is 22:00-06:00 local every night, so it lasts 7 or 9 hours of real
  time on the nights clocks change; gaps and folds resolve as `policy._localtime` says;
- an RRULE picks days (FREQ is YEARLY, MONTHLY, WEEKLY or DAILY; BYHOUR, BYMINUTE,
  BYSECOND and COUNT are refused): the time of day is `start`. `dtstart` (a local date,
  default 2000-01-03) anchors INTERVAL; UNTIL is a local time, written without `Z`;
- a holiday covers its whole local day, midnight to midnight in its zone;
- recurring and holiday windows exist in local years 2..9997 (so that date arithmetic
  never overflows `datetime`); one-off windows anywhere;
- occurrences are memoised per window and local year (the last few years asked for);
  the memo never changes a result. dateutil iterates from `dtstart`, so the first
  question about a year costs time in proportion to the years since `dtstart` (about
  0.5 ms a year for a daily rule): instants centuries away are slow, not wrong.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from dateutil.rrule import rrule, rrulestr

from policy._localtime import describe, load_zone, local_span
from policy._reader import Node
from sentinel.durations import parse_duration, parse_time
from sentinel.errors import InvalidArgument

_FREQS = ("YEARLY", "MONTHLY", "WEEKLY", "DAILY")
_PARTS = (
    *("FREQ", "INTERVAL", "UNTIL", "BYDAY", "BYMONTH", "BYMONTHDAY", "BYYEARDAY"),
    *("BYWEEKNO", "BYSETPOS", "WKST"),
)
_HH_MM = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_UNTIL = re.compile(r"[0-9]{8}(T[0-9]{6})?")
_DEFAULT_DTSTART = date(2000, 1, 3)
_MAX_DURATION = timedelta(days=366)
_SLACK = timedelta(days=2)  # more than any zone's offset changes by between two days
_DAY = timedelta(days=1)
_MIN_YEAR, _MAX_YEAR = 2, 9997  # local years where recurring and holiday windows exist
_YEARS_KEPT = 4  # memoised years per window: this one, its neighbours, and a spare
_UTC_ZONE = ZoneInfo("UTC")


@dataclass(frozen=True)
class WindowHit:
    start: datetime  # the occurrence that contains the instant, in UTC
    end: datetime
    local_time: str  # the instant as read in the window's zone
    window: str  # the window in words: "the recurring window FREQ=DAILY (22:00 for 8h)"


class Window(Protocol):
    def hit(self, now: datetime) -> WindowHit | None:
        """The occurrence that contains `now`, if any."""
        ...


@dataclass(frozen=True)
class OnceWindow:
    start: datetime
    end: datetime
    text: str

    def hit(self, now: datetime) -> WindowHit | None:
        if not self.start <= now < self.end:
            return None
        return WindowHit(self.start, self.end, describe(now, _UTC_ZONE), self.text)


@dataclass(frozen=True)
class RecurringWindow:
    rrule_text: str
    dtstart: datetime  # local: the anchor date at the start time of day
    duration: timedelta
    zone: ZoneInfo
    until: datetime | None  # the RRULE's UNTIL, local
    text: str
    rule: rrule = field(compare=False)  # rrule objects compare by identity
    _years: dict[int, tuple[datetime, ...]] = field(default_factory=dict, compare=False)

    def hit(self, now: datetime) -> WindowHit | None:
        local_now = now.astimezone(self.zone).replace(tzinfo=None)
        if not _MIN_YEAR <= local_now.year <= _MAX_YEAR:  # (evaluate() checks `now` in UTC)
            return None
        low, high = local_now - self.duration - _SLACK, local_now + _SLACK
        for year in range(high.year, low.year - 1, -1):
            starts = self._occurrences(year)
            index = bisect_right(starts, high)
            while index:  # latest first
                index -= 1
                if starts[index] < low:
                    return None
                local_end = starts[index] + self.duration
                start, end = local_span(starts[index], local_end, self.zone)
                if start <= now < end:
                    return WindowHit(start, end, describe(now, self.zone), self.text)
        return None

    def _occurrences(self, year: int) -> tuple[datetime, ...]:
        """Local start times in `year`; the query is bounded, even for a rule that never fires."""
        cached = self._years.get(year)
        if cached is None:
            first, after = datetime(year, 1, 1), datetime(year + 1, 1, 1)
            bounded = self.rule.replace(until=min(self.until or after, after))
            cached = tuple(t for t in bounded.between(first, after, inc=True) if t.year == year)
            if len(self._years) >= _YEARS_KEPT:  # bounded, whatever years callers ask about
                del self._years[next(iter(self._years))]
            self._years[year] = cached
        return cached


@dataclass(frozen=True)
class HolidayWindow:
    calendar: str
    dates: frozenset[date]
    zone: ZoneInfo

    def hit(self, now: datetime) -> WindowHit | None:
        today = now.astimezone(self.zone).date()
        if not _MIN_YEAR <= today.year <= _MAX_YEAR:
            return None
        for day in (today, today - _DAY):  # yesterday: its end may fall in a repeated hour
            if day in self.dates:
                midnight = datetime.combine(day, time())
                start, end = local_span(midnight, midnight + _DAY, self.zone)
                if start <= now < end:
                    text = f"the holiday {day.isoformat()} of calendar {self.calendar!r}"
                    return WindowHit(start, end, describe(now, self.zone), text)
        return None


def read_window(node: Node, calendars: Mapping[str, frozenset[date]]) -> Window:
    fields = node.fields((), ("once", "recurring", "holidays"))
    if len(fields) != 1:
        raise node.error("must have exactly one of: once, recurring, holidays")
    (kind, body), *_ = fields.items()
    if kind == "once":
        return _read_once(body)
    if kind == "recurring":
        return _read_recurring(body)
    return _read_holidays(body, calendars)


def read_zone(node: Node) -> ZoneInfo:
    name = node.text()
    zone = load_zone(name)
    if zone is None:
        raise node.error(f"unknown time zone {name!r}")
    return zone


def read_instant(node: Node) -> datetime:
    """An RFC 3339 time with an offset (a naive one is an error), in UTC."""
    try:
        return parse_time(node.text())
    except InvalidArgument as exc:
        raise node.error(exc.message) from exc


def read_date(node: Node) -> date:
    text = node.text()
    try:
        if _DATE.fullmatch(text) is None:
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError as exc:
        raise node.error(f"invalid date {text!r}: use YYYY-MM-DD") from exc


def read_duration(node: Node) -> timedelta:
    try:
        return parse_duration(node.text())
    except InvalidArgument as exc:
        raise node.error(exc.message) from exc


def _read_once(node: Node) -> OnceWindow:
    fields = node.fields(("start", "end"))
    start, end = read_instant(fields["start"]), read_instant(fields["end"])
    if end <= start:
        raise fields["end"].error("must be after start")
    text = f"the one-off window {fields['start'].text()} to {fields['end'].text()}"
    return OnceWindow(start, end, text)


def _read_recurring(node: Node) -> RecurringWindow:
    fields = node.fields(("rrule", "start", "duration", "timezone"), ("dtstart",))
    zone = read_zone(fields["timezone"])
    start_text = fields["start"].text()
    match = _HH_MM.fullmatch(start_text)
    if match is None:
        raise fields["start"].error(f"invalid time of day {start_text!r}: use HH:MM (24 h)")
    duration = read_duration(fields["duration"])
    if not timedelta(0) < duration <= _MAX_DURATION:
        raise fields["duration"].error("must be more than 0 and at most 366 days (8784h)")
    anchor = read_date(fields["dtstart"]) if "dtstart" in fields else _DEFAULT_DTSTART
    dtstart = datetime.combine(anchor, time(int(match[1]), int(match[2])))
    rule, until = _read_rrule(fields["rrule"], dtstart)
    rrule_text = fields["rrule"].text()
    text = f"the recurring window {rrule_text} ({start_text} for {fields['duration'].text()})"
    return RecurringWindow(rrule_text, dtstart, duration, zone, until, text, rule)


def _read_rrule(node: Node, dtstart: datetime) -> tuple[rrule, datetime | None]:
    text = node.text()
    parts: dict[str, str] = {}
    for part in text.split(";"):
        name, equals, value = part.partition("=")
        if not equals or name not in _PARTS or name in parts:
            supported = ", ".join(_PARTS)
            raise node.error(f"unsupported RRULE part {part!r} (supported once each: {supported})")
        parts[name] = value
    if parts.get("FREQ") not in _FREQS:
        raise node.error(f"RRULE FREQ must be one of {', '.join(_FREQS)} (start sets the time)")
    until_text = parts.get("UNTIL")
    if until_text is not None and not _UNTIL.fullmatch(until_text):
        raise node.error("RRULE UNTIL is local time: write YYYYMMDD or YYYYMMDDTHHMMSS, no Z")
    try:
        rule = rrulestr(text, dtstart=dtstart)
        until = None if until_text is None else datetime.fromisoformat(until_text)
    except (ValueError, TypeError, IndexError) as exc:
        raise node.error(f"invalid RRULE {text!r}: {exc}") from exc
    assert isinstance(rule, rrule)  # a single RRULE line always gives one
    return rule, until


def _read_holidays(node: Node, calendars: Mapping[str, frozenset[date]]) -> HolidayWindow:
    fields = node.fields(("calendar", "timezone"))
    name = fields["calendar"].text()
    if name not in calendars:
        known = ", ".join(sorted(calendars)) or "none"
        raise fields["calendar"].error(f"unknown calendar {name!r} (defined: {known})")
    return HolidayWindow(name, calendars[name], read_zone(fields["timezone"]))
