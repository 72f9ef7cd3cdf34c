"""The spool's in-memory index of unacknowledged batches, oldest first.

Batches are kept as their serialised bytes, so memory is bounded like the disk, and
decoded only when sent. Seqs are appended in increasing order; lookups by position use
bisection, so `next_after` stays cheap with a long backlog.
"""

from __future__ import annotations

import bisect
from typing import NamedTuple


class Pending(NamedTuple):
    payload: bytes
    boot_id: str
    segment: int  # the first seq of the segment that holds it


class PendingBatches:
    def __init__(self) -> None:
        self._by_seq: dict[int, Pending] = {}
        self._order: list[int] = []  # the keys of _by_seq, ascending

    def __len__(self) -> int:
        return len(self._order)

    def append(self, seq: int, entry: Pending) -> None:
        """Add the batch `seq`, which is above every seq held."""
        self._by_seq[seq] = entry
        self._order.append(seq)

    def next_after(self, seq: int) -> Pending | None:
        at = bisect.bisect_right(self._order, seq)
        return self._by_seq[self._order[at]] if at < len(self._order) else None

    def pop(self, seq: int) -> Pending | None:
        entry = self._by_seq.pop(seq, None)
        if entry is not None:
            del self._order[bisect.bisect_left(self._order, seq)]
        return entry

    def pop_through(self, seq: int) -> list[tuple[int, Pending]]:
        """Remove and return every batch at or below `seq`, oldest first."""
        end = bisect.bisect_right(self._order, seq)
        taken = self._order[:end]
        del self._order[:end]
        return [(s, self._by_seq.pop(s)) for s in taken]

    def boot_ids(self) -> list[str]:
        """The distinct boot ids of the batches held, oldest first."""
        return list(dict.fromkeys(self._by_seq[seq].boot_id for seq in self._order))

    def oldest(self) -> int | None:
        return self._order[0] if self._order else None

    def newest(self) -> int | None:
        return self._order[-1] if self._order else None
