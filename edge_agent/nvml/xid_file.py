"""XID events to inject into a replay, read from a JSON-lines file.

One event a line: `{"t": 2.5, "gpu": 0, "xid": 79}`, where `t` is seconds since the replay
backend started (on its injected clock), `gpu` the replayed GPU's index and `xid` the XID code.
Blank lines are skipped; lines need not be in time order.

Invariant: `load_xid_events` returns events sorted by time (file order among equal times), each
with `t` finite and >= 0, `gpu` in `[0, gpus)` and `xid` in `[1, 2**32)`. Anything else is the
operator's mistake and is refused before the replay starts, with a `ConfigError` whose reason is
`BAD_XID_FILE` and which names the file and the 1-based line number (`details["line"]`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sentinel.errors import ConfigError

BAD_XID_FILE = "BAD_XID_FILE"
_KEYS = frozenset({"t", "gpu", "xid"})
_MAX_XID = 2**32 - 1


@dataclass(frozen=True)
class ScheduledXid:
    """One injected event: XID `xid` on GPU `gpu`, `at_s` seconds after the replay started."""

    at_s: float
    gpu: int
    xid: int


def load_xid_events(path: Path, *, gpus: int) -> list[ScheduledXid]:
    """The events in `path`, sorted by time; ConfigError (BAD_XID_FILE) for any bad line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ConfigError(
            f"cannot read XID event file {str(path)!r}: {reason}",
            reason=BAD_XID_FILE,
            source=str(path),
        ) from exc
    events = [
        _parse_line(path, number, line)
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]
    for number, event in events:
        if event.gpu >= gpus:
            raise _bad(path, number, f"gpu {event.gpu} is not replayed (replay has {gpus} GPUs)")
    return [event for _, event in sorted(events, key=lambda pair: (pair[1].at_s, pair[0]))]


def _parse_line(path: Path, number: int, line: str) -> tuple[int, ScheduledXid]:
    try:
        document = json.loads(line)
    except ValueError as exc:
        raise _bad(path, number, f"not JSON: {exc}") from exc
    if not isinstance(document, dict) or set(document) != _KEYS:
        raise _bad(path, number, 'expected an object with exactly "t", "gpu" and "xid"')
    at_s, gpu, xid = document["t"], document["gpu"], document["xid"]
    if not _is_number(at_s) or not math.isfinite(at_s) or at_s < 0:
        raise _bad(path, number, f'"t" must be a number of seconds >= 0, got {at_s!r}')
    if not _is_int(gpu) or gpu < 0:
        raise _bad(path, number, f'"gpu" must be a GPU index >= 0, got {gpu!r}')
    if not _is_int(xid) or not 1 <= xid <= _MAX_XID:
        raise _bad(path, number, f'"xid" must be an XID code from 1 to {_MAX_XID}, got {xid!r}')
    return number, ScheduledXid(at_s=float(at_s), gpu=gpu, xid=xid)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return _is_int(value) or isinstance(value, float)


def _bad(path: Path, number: int, message: str) -> ConfigError:
    return ConfigError(
        f"XID event file {str(path)!r}, line {number}: {message}",
        reason=BAD_XID_FILE,
        source=str(path),
        line=number,
    )
