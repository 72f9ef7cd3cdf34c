"""`SlidingWindowLog`: an in-memory `History` of permitted executions, for rate limits.

Per key, a sorted `array('q')` of instants in integer microseconds since the Unix
epoch (8 bytes an event, exact: no float rounding at window edges); counts are two
binary searches. The agent keeps one for its own node and persists it as text lines,
`<epoch microseconds> <key>`, one an event (append-friendly; `#` lines are comments).

Invariants: instants are aware (naive ones are refused); each key's array stays sorted
(an out-of-order record is inserted in place); `count(key, since, until)` counts
events with `since < t <= until`, as `History` specifies; `prune(before)` drops events
with `t < before` and keys left empty; `from_lines(to_lines())` is an equal log.
"""

from __future__ import annotations

import re
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

from policy._model import require_aware
from sentinel.errors import ConfigError, InvalidArgument

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_INTEGER = re.compile(r"-?[0-9]{1,19}")


class SlidingWindowLog:
    __slots__ = ("_events",)

    def __init__(self) -> None:
        self._events: dict[str, array[int]] = {}

    def record(self, key: str, at: datetime) -> None:
        """Note one permitted execution under `key` at `at`."""
        if not key or "\n" in key or key != key.strip():
            raise InvalidArgument(f"invalid rate-limit key {key!r}", reason="INVALID_ARGUMENT")
        self._insert(key, _micros(at, "record time"))

    def count(self, key: str, since: datetime, until: datetime) -> int:
        low, high = _micros(since, "since"), _micros(until, "until")
        events = self._events.get(key)
        if not events or high <= low:
            return 0
        return bisect_right(events, high) - bisect_right(events, low)

    def prune(self, before: datetime) -> int:
        """Forget events older than `before`; return how many were dropped."""
        cutoff = _micros(before, "prune time")
        dropped = 0
        for key in list(self._events):
            events = self._events[key]
            old = bisect_left(events, cutoff)
            if old:
                del events[:old]
                dropped += old
            if not events:
                del self._events[key]
        return dropped

    def keys(self) -> list[str]:
        return sorted(self._events)

    def __len__(self) -> int:
        return sum(len(events) for events in self._events.values())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SlidingWindowLog) and self._events == other._events

    __hash__ = None  # type: ignore[assignment]  # mutable

    def to_lines(self) -> Iterator[str]:
        """`<epoch microseconds> <key>` per event, keys sorted, each key's events in order."""
        for key in sorted(self._events):
            for micros in self._events[key]:
                yield _line(micros, key)

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> SlidingWindowLog:
        """Read what `to_lines` wrote (trailing newlines allowed); a bad line is a
        `ConfigError` naming its number, since the agent's state file is unusable."""
        log = cls()
        for number, line in enumerate(lines, start=1):
            text = line.rstrip("\r\n")
            if not text or text.startswith("#"):
                continue
            micros, _, key = text.partition(" ")
            try:
                if not _INTEGER.fullmatch(micros) or not key or key != key.strip():
                    raise ValueError(text)
                log._insert(key, int(micros))
            except (ValueError, OverflowError) as exc:
                problem = f"rate-limit history line {number}: expected '<epoch micros> <key>'"
                raise ConfigError(problem) from exc
        return log

    def _insert(self, key: str, micros: int) -> None:
        events = self._events.get(key)
        if events is None:
            self._events[key] = array("q", (micros,))
        elif events[-1] <= micros:
            events.append(micros)
        else:
            events.insert(bisect_right(events, micros), micros)


def history_line(key: str, at: datetime) -> str:
    """One event in the `to_lines` format, for a caller that appends to its own record."""
    return _line(_micros(at, "at"), key)


def _line(micros: int, key: str) -> str:
    return f"{micros} {key}"


def _micros(instant: datetime, what: str) -> int:
    require_aware(instant, what)
    return (instant - _EPOCH) // _MICROSECOND
