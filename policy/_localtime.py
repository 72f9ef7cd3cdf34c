"""Local wall-clock times in IANA zones, resolved to instants deterministically.

Freeze windows are written in local time ("22:00 for 8h, Europe/Berlin"), but a
local time names zero instants on the day clocks spring forward (the gap) and two
on the day they fall back (the fold). A window `[start, end)` of local times is
resolved so that it never covers *less* than its wall-clock span:

- the start resolves to the earliest instant that reads `start` (in a fold: its
  first occurrence, PEP 495 `fold=0`);
- the end resolves to the latest instant that reads `end` (in a fold: its second
  occurrence, `fold=1`); so a window over the repeated hour keeps both passes;
- a time in a gap resolves, at either end, to the transition itself (the first
  instant after the gap): 02:30-03:30 on a day that skips 02:00-03:00 covers
  03:00-03:30; a window entirely inside the gap covers nothing that day.

Invariants: every instant returned is aware and in UTC; inputs are naive local
times (the zone is a separate argument); results depend only on the arguments and
the tz database.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_SECOND = timedelta(seconds=1)


def load_zone(name: str) -> ZoneInfo | None:
    """The IANA zone called `name`, or None if there is none (paths and typos included)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def earliest(local: datetime, zone: ZoneInfo) -> datetime:
    """The first instant whose wall-clock reading in `zone` is `local` (see module doc)."""
    first, second, kind = _readings(local, zone)
    return _transition(second, first, zone) if kind == "gap" else first


def latest(local: datetime, zone: ZoneInfo) -> datetime:
    """The last instant whose wall-clock reading in `zone` is `local` (see module doc)."""
    first, second, kind = _readings(local, zone)
    return _transition(second, first, zone) if kind == "gap" else second


def local_span(start: datetime, end: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The instants `[earliest(start), latest(end))` of a window of local times."""
    return earliest(start, zone), latest(end, zone)


def describe(instant: datetime, zone: ZoneInfo) -> str:
    """`Saturday 2026-11-28 10:00 Europe/Berlin`: the instant as people there read it
    (day names are spelled here, not by the C locale)."""
    local = instant.astimezone(zone)
    return f"{_DAY_NAMES[local.weekday()]} {local:%Y-%m-%d %H:%M} {zone.key}"


def _readings(local: datetime, zone: ZoneInfo) -> tuple[datetime, datetime, str]:
    """Both PEP 495 readings of `local` as UTC instants, and whether it is in a gap or a fold.

    With `fold=0` zoneinfo applies the offset from before a transition, with `fold=1`
    the one after. They differ only near a transition: if the earlier offset is the
    larger, clocks went back (a fold, `fold=0` is the earlier instant); if it is the
    smaller, they jumped forward and `local` never happened (a gap)."""
    naive = local.replace(tzinfo=None)
    before = naive.replace(tzinfo=zone, fold=0)
    after = naive.replace(tzinfo=zone, fold=1)
    offset_before, offset_after = before.utcoffset(), after.utcoffset()
    assert offset_before is not None and offset_after is not None  # a ZoneInfo always has one
    first, second = before.astimezone(UTC), after.astimezone(UTC)
    if offset_before == offset_after:
        return first, first, "plain"
    return first, second, "fold" if offset_before > offset_after else "gap"


def _transition(old_side: datetime, new_side: datetime, zone: ZoneInfo) -> datetime:
    """The first instant in `(old_side, new_side]` with the new offset (tzdata uses whole
    seconds), found by bisection on whole seconds."""
    old_offset = old_side.astimezone(zone).utcoffset()
    low = int(old_side.timestamp() // 1)  # has the old offset
    high = -int(-new_side.timestamp() // 1)  # has the new offset
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, UTC).astimezone(zone).utcoffset() == old_offset:
            low = middle
        else:
            high = middle
    return datetime.fromtimestamp(high, UTC)
