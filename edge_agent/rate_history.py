"""The agent's own record of what it ran, for the policy's node-scope rate limits.

Kept on disk (`rate-history.log`, one `<epoch microseconds> <key>` line per event,
fsynced as it is appended) so that neither a hub outage nor an agent restart resets a
limit. At start the file is read, events older than the longest window a policy may
use are dropped, and the file is rewritten compactly.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

import policy
from sentinel.files import replace_durably

HISTORY_FILE = "rate-history.log"
# Events older than this are forgotten at start: longer than any sensible window.
KEEP = timedelta(days=31)


class RateHistory:
    def __init__(self, path: Path, log: policy.SlidingWindowLog) -> None:
        self._path = path
        self._log = log
        self._file = path.open("a")

    @classmethod
    def open(cls, data_dir: Path, now: datetime) -> RateHistory:
        path = data_dir / HISTORY_FILE
        log = policy.SlidingWindowLog()
        if path.exists():
            with path.open() as lines:
                log = policy.SlidingWindowLog.from_lines(lines)
            log.prune(now - KEEP)
        replace_durably(path, "".join(f"{line}\n" for line in log.to_lines()).encode(), 0o644)
        return cls(path, log)

    def count(self, key: str, since: datetime, until: datetime) -> int:
        return self._log.count(key, since, until)

    def record(self, keys: Iterable[str], at: datetime) -> None:
        """Durably note one run under each key (before it runs: a crash still counts)."""
        keys = list(keys)
        lines = [f"{policy.history_line(key, at)}\n" for key in keys]
        if not lines:
            return
        self._file.write("".join(lines))
        self._file.flush()
        os.fsync(self._file.fileno())
        for key in keys:
            self._log.record(key, at)

    def close(self) -> None:
        self._file.close()
