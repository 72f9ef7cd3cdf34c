"""The spool's ledger of gaps: ranges of batches it had to drop, until the hub acknowledges them.

A drop of the seq right after the newest gap
extends that gap while it is unannounced; a gap already announced to a hub is never
extended (the hub counts what it was told), so a later drop run gets its own gap. Gaps
read back from disk count as announced: the previous process may have sent them.
Every change is saved (`gaps.json`, durably when fsync is on) before the caller deletes
the data it describes; a failed save is retried on the next change or `retry_save`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from edge_agent.spool_state import Range, load_gaps, save_gaps
from sentinel.v1 import telemetry_pb2

log = logging.getLogger(__name__)


class GapLedger:
    def __init__(self, directory: Path, *, fsync: bool) -> None:
        self._directory = directory
        self._fsync = fsync
        loaded = load_gaps(directory)
        self._gaps = loaded or []
        self._announced: set[tuple[int, int]] = {(g.from_seq, g.to_seq) for g in self._gaps}
        self._saved = loaded is not None  # an unreadable file is replaced at the first save
        self._complained = False

    def record(
        self, boot_id: str, from_seq: int, to_seq: int, reason: telemetry_pb2.GapReason
    ) -> None:
        """Note the range as dropped; call `save` before deleting what it covers."""
        last = self._gaps[-1] if self._gaps else None
        if (
            last is not None
            and (last.boot_id, last.reason) == (boot_id, reason)
            and last.to_seq + 1 == from_seq
            and (last.from_seq, last.to_seq) not in self._announced
        ):
            last.to_seq = to_seq
            return
        self._gaps.append(
            telemetry_pb2.TelemetryGap(
                boot_id=boot_id, from_seq=from_seq, to_seq=to_seq, reason=reason
            )
        )

    def save(self, *, quiet: bool = False) -> None:
        """Write the gaps; a run of failures (a full disk) is logged once, unless `quiet`."""
        try:
            save_gaps(self._directory, self._gaps, durable=self._fsync)
        except OSError as exc:
            self._saved = False
            if not quiet and not self._complained:
                log.error("cannot record spool gaps (%s); retrying at every change", exc)
                self._complained = True
        else:
            self._saved, self._complained = True, False

    def retry_save(self) -> None:
        if not self._saved:
            self.save()

    def ranges(self) -> list[Range]:
        return [(g.from_seq, g.to_seq) for g in self._gaps]

    def pending(self) -> list[telemetry_pb2.TelemetryGap]:
        copies = []
        for gap in self._gaps:
            copy = telemetry_pb2.TelemetryGap()
            copy.CopyFrom(gap)
            copies.append(copy)
        return copies

    def announced(self, from_seq: int, to_seq: int) -> None:
        self._announced.add((from_seq, to_seq))

    def acknowledged(self, from_seq: int, to_seq: int) -> bool:
        """Forget the gap; False when there was no such gap."""
        kept = [g for g in self._gaps if (g.from_seq, g.to_seq) != (from_seq, to_seq)]
        self._announced.discard((from_seq, to_seq))
        if len(kept) == len(self._gaps):
            return False
        self._gaps = kept
        self.save()
        return True
