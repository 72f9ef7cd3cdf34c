"""The agent's persistent telemetry identity: its boot_id and the next batch seq.

The boot_id is created once with the agent's data directory and kept with it, so a
restarted agent continues the same sequence and the hub's duplicate detection holds.
Writes are atomic (temporary file, fsync, rename): a crash leaves the old or the new
state, never a torn file. A corrupt file is an error, not a silent reset.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from sentinel.errors import ConfigError
from sentinel.files import replace_durably

STATE_FILE = "telemetry-state.json"


class SequenceState:
    def __init__(self, path: Path, boot_id: str, next_seq: int) -> None:
        self.path = path
        self.boot_id = boot_id
        self._next_seq = next_seq

    @classmethod
    def open(cls, data_dir: Path) -> SequenceState:
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / STATE_FILE
        if not path.exists():
            state = cls(path, uuid.uuid4().hex, 1)
            state._write()
            return state
        try:
            raw = json.loads(path.read_text())
            boot_id, next_seq = str(raw["boot_id"]), int(raw["next_seq"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"{path} is corrupt ({exc}); move it away to start a new sequence",
                reason="STATE_CORRUPT",
            ) from exc
        return cls(path, boot_id, next_seq)

    @property
    def last_allocated(self) -> int:
        """The highest seq handed out so far (0 before the first)."""
        return self._next_seq - 1

    @property
    def next_seq(self) -> int:
        return self._next_seq

    def commit(self, seq: int) -> None:
        """Record that `seq` is used (the batch is durable in the spool): never issued again.

        The agent spools a batch first and commits its seq after; a crash in between
        leaves the seq in the spool but not here, which `advance_past` repairs at start."""
        if seq >= self._next_seq:
            self._next_seq = seq + 1
            self._write()

    def advance_past(self, seq: int) -> None:
        self.commit(seq)

    def _write(self) -> None:
        state = {"boot_id": self.boot_id, "next_seq": self._next_seq}
        replace_durably(self.path, json.dumps(state).encode())
