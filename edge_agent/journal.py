"""The command journal: every verified command id this agent has decided on, on disk.

One line per step, appended and fsynced before the step's effect:
`begin` before an executor runs, `finish` with the result once it returned, and a
single finished line for a command refused after verification. So:
- a command id is never executed twice, across restarts: a second copy (another
  stream sequence) is a replay; the same copy delivered again gets the recorded
  result re-reported, not a second run;
- a command begun but never finished (the agent died while executing) is found at
  open and must be reported `INTERRUPTED`, never re-run (its effect is unknown).

Lines are `<crc32 hex> <json>`. A torn last line (a crash mid-append) is dropped; a
damaged line anywhere else is an error at open — replay protection must not
silently forget an id. Entries whose command has expired are dropped when the file
is rewritten at open: the agent refuses those as expired before it looks here.
"""

from __future__ import annotations

import base64
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec

from sentinel.errors import ConfigError
from sentinel.files import replace_durably

JOURNAL_FILE = "command-journal.log"


class _Line(msgspec.Struct, frozen=True, omit_defaults=True):
    id: str
    seq: int
    not_after: float
    result: str | None = None  # base64 of the CommandResult


@dataclass
class Entry:
    command_id: str
    stream_seq: int
    not_after_s: float
    result: bytes | None = None

    @property
    def finished(self) -> bool:
        return self.result is not None


class CommandJournal:
    def __init__(self, path: Path, entries: dict[str, Entry]) -> None:
        self._path = path
        self._entries = entries
        self._file = path.open("ab")

    @classmethod
    def open(cls, data_dir: Path, now_s: float) -> CommandJournal:
        """Read the journal, drop expired entries and rewrite it compactly."""
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / JOURNAL_FILE
        entries: dict[str, Entry] = {}
        if path.exists():
            for line in _read_lines(path):
                entry = entries.setdefault(line.id, Entry(line.id, line.seq, line.not_after))
                if line.result is not None:
                    entry.result = base64.b64decode(line.result)
        kept = {k: e for k, e in entries.items() if e.not_after_s > now_s or not e.finished}
        replace_durably(path, b"".join(_encode(_line_of(e)) for e in kept.values()))
        return cls(path, kept)

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, command_id: str) -> Entry | None:
        return self._entries.get(command_id)

    def unfinished(self) -> list[Entry]:
        return [e for e in self._entries.values() if not e.finished]

    def begin(self, command_id: str, stream_seq: int, not_after_s: float) -> None:
        """Durably note that `command_id` is about to run."""
        entry = Entry(command_id, stream_seq, not_after_s)
        self._append(_line_of(entry))
        self._entries[command_id] = entry

    def finish(self, command_id: str, stream_seq: int, not_after_s: float, result: bytes) -> None:
        """Durably record the outcome (for a refusal, the only line)."""
        entry = Entry(command_id, stream_seq, not_after_s, result)
        self._append(_line_of(entry))
        self._entries[command_id] = entry

    def close(self) -> None:
        self._file.close()

    def _append(self, line: _Line) -> None:
        self._file.write(_encode(line))
        self._file.flush()
        os.fsync(self._file.fileno())


def _line_of(entry: Entry) -> _Line:
    result = base64.b64encode(entry.result).decode() if entry.result is not None else None
    return _Line(entry.command_id, entry.stream_seq, entry.not_after_s, result)


def _encode(line: _Line) -> bytes:
    body = msgspec.json.encode(line)
    return b"%08x %s\n" % (zlib.crc32(body), body)


def _read_lines(path: Path) -> Iterator[_Line]:
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    lines.pop()  # after the last newline: empty, or a torn append that never completed
    for number, text in enumerate(lines, start=1):
        line = _decode(text)
        if line is None:
            raise ConfigError(
                f"{path} line {number} is damaged; the agent will not run commands without "
                "its replay journal (restore it, or move it away to accept that replays of "
                "commands it already ran are no longer detected)",
                reason="JOURNAL_CORRUPT",
            )
        yield line


def _decode(text: bytes) -> _Line | None:
    crc, _, body = text.partition(b" ")
    try:
        if int(crc, 16) != zlib.crc32(body):
            return None
        return msgspec.json.decode(body, type=_Line)
    except (ValueError, msgspec.DecodeError):
        return None
