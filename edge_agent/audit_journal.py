"""The agent's audit journal: its own hash chain of command decisions, shipped to the hub.

`<data-dir>/audit-journal.log` holds one record per line in the `sentinel.audit`
format, numbered by the journal itself; each append is fsynced before the step it
records happens (an intent before an executor runs), so no action runs without an
intent record on disk. The first record, `journal.opened`, names the journal's id;
every record carries it in `details.journal_id`, and the hub adds each (node,
journal) once, in order.

At open the chain is verified:
- a torn last line (no newline: the agent died mid-append, before the fsync that
  would have let the step go ahead) is cut off and reported;
- any other damage sets the file aside (`audit-journal.log.damaged-<n>`, kept, never
  deleted) and a new journal begins, whose first record names the old one and the
  damage; the agent keeps running (its command journal, not this one, guards replays).

Shipping: `unshipped()` lists the records after the persisted mark
(`audit-shipped`: journal id and seq); the shipper publishes each with
`Nats-Msg-Id: <node>/<journal>/<seq>` (a resend is dropped) and then moves the mark.
Appends happen on the action thread, shipping on the event loop: a lock guards both.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sentinel import audit
from sentinel.files import sync_directory

log = logging.getLogger(__name__)

JOURNAL_FILE = "audit-journal.log"
SHIPPED_FILE = "audit-shipped"
OPENED = "journal.opened"


class AuditJournal:
    def __init__(
        self,
        data_dir: Path,
        *,
        actor: str,
        journal_id: str,
        head: tuple[int, str],
        unshipped: list[tuple[int, bytes]],
        clock: Callable[[], datetime],
    ) -> None:
        self._dir = data_dir
        self.actor = actor
        self.journal_id = journal_id
        self._seq, self._hash = head
        self._unshipped = unshipped
        self._clock = clock
        self._lock = threading.Lock()
        self._file = (data_dir / JOURNAL_FILE).open("ab")
        self.torn_bytes = 0

    @classmethod
    def open(
        cls,
        data_dir: Path,
        actor: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> AuditJournal:
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / JOURNAL_FILE
        raw = path.read_bytes() if path.exists() else b""
        torn = _cut_torn_tail(path, raw)
        lines = audit.split_lines(raw[: len(raw) - torn])
        result = audit.verify_chain(lines, require_seal=False)
        journal_id = _journal_id(lines[0]) if lines and result.ok else ""
        if result.problem is not None or (lines and not journal_id):
            why = result.problem.message if result.problem else "no journal id"
            line = result.problem.line if result.problem else 1
            aside = _set_aside(path)
            log.error("audit journal damaged at line %d (%s): kept as %s", line, why, aside)
            journal = cls._fresh(data_dir, actor, clock, {"previous": aside.name, "damage": why})
        elif not lines:
            journal = cls._fresh(data_dir, actor, clock, {})
        else:
            shipped = _read_shipped(data_dir / SHIPPED_FILE, journal_id)
            unshipped = [(i, line) for i, line in enumerate(lines, start=1) if i > shipped]
            journal = cls(
                data_dir,
                actor=actor,
                journal_id=journal_id,
                head=(result.last_seq, result.head),
                unshipped=unshipped,
                clock=clock,
            )
        if torn:
            log.warning("audit journal: a torn last record (%d bytes) was cut off", torn)
        journal.torn_bytes = torn
        return journal

    @classmethod
    def _fresh(
        cls,
        data_dir: Path,
        actor: str,
        clock: Callable[[], datetime],
        details: Mapping[str, Any],
    ) -> AuditJournal:
        journal_id = uuid.uuid4().hex
        (data_dir / SHIPPED_FILE).unlink(missing_ok=True)
        journal = cls(
            data_dir,
            actor=actor,
            journal_id=journal_id,
            head=(0, audit.ZERO_HASH),
            unshipped=[],
            clock=clock,
        )
        journal.append(OPENED, details=details)
        sync_directory(data_dir)
        return journal

    @property
    def last_seq(self) -> int:
        return self._seq

    def append(
        self,
        action: str,
        *,
        target: str = "",
        outcome: str = "",
        reason: str = "",
        policy_version: int = 0,
        details: Mapping[str, Any] | None = None,
    ) -> audit.AuditRecord:
        """Append and fsync one record; raises OSError when the disk refuses it."""
        with self._lock:
            record = audit.new_record(
                self._seq + 1,
                self._hash,
                time=self._clock(),
                action=action,
                actor=self.actor,
                target=target,
                outcome=outcome,
                reason=reason,
                policy_version=policy_version,
                details={**(details or {}), "journal_id": self.journal_id},
            )
            line = record.line()
            self._file.write(line + b"\n")
            self._file.flush()
            os.fsync(self._file.fileno())
            self._seq, self._hash = record.seq, record.hash
            self._unshipped.append((record.seq, line))
            return record

    def unshipped(self) -> list[tuple[int, bytes]]:
        with self._lock:
            return list(self._unshipped)

    def mark_shipped(self, seq: int) -> None:
        """The hub's stream holds every record through `seq` (persisted; no fsync needed:
        a mark lost to a power cut only resends, and the hub drops the copies)."""
        with self._lock:
            self._unshipped = [(s, line) for s, line in self._unshipped if s > seq]
        (self._dir / SHIPPED_FILE).write_text(f"{self.journal_id} {seq}\n")

    def close(self) -> None:
        self._file.close()


def _cut_torn_tail(path: Path, raw: bytes) -> int:
    """Bytes after the last newline: a record whose append never completed."""
    torn = len(raw) - (raw.rfind(b"\n") + 1)
    if torn:
        with path.open("r+b") as handle:
            handle.truncate(len(raw) - torn)
            handle.flush()
            os.fsync(handle.fileno())
    return torn


def _journal_id(first: bytes) -> str:
    record = audit.parse_record(first)
    journal_id = record.details.get("journal_id")
    if record.action != OPENED or not isinstance(journal_id, str):
        return ""
    return journal_id


def _set_aside(path: Path) -> Path:
    number = 1
    while (aside := path.with_name(f"{path.name}.damaged-{number}")).exists():
        number += 1
    os.replace(path, aside)
    sync_directory(path.parent)
    return aside


def _read_shipped(path: Path, journal_id: str) -> int:
    try:
        owner, _, seq = path.read_text().strip().partition(" ")
        return int(seq) if owner == journal_id else 0
    except (OSError, ValueError):
        return 0


__all__ = ["JOURNAL_FILE", "SHIPPED_FILE", "AuditJournal"]
