"""Ships the agent's audit journal to the hub over NATS, during each command session.

Each record after the shipped mark is published, oldest first, on
`sentinel.audit.node.<node_id>` (stream SENTINEL_AGENT_AUDIT) with
`Nats-Msg-Id: <node>/<journal>/<seq>`, awaiting its PubAck; only then does the mark
move. After a reconnect the shipper starts again from the mark, so nothing is lost,
and JetStream (then the hub, by journal and seq) drops what is sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.js import JetStreamContext

from edge_agent.audit_journal import AuditJournal
from sentinel import subjects
from sentinel.tasks import raise_if_cancelling

log = logging.getLogger(__name__)

# Unshipped records are looked at again this often even without a new one (a failed
# publish, or a hub that created the stream late).
SHIP_POLL_S = 5.0


class AuditShipper:
    def __init__(self, node_id: str, journal: AuditJournal) -> None:
        self._node_id = node_id
        self.journal = journal
        # Set on the event loop after each append, so shipping follows at once.
        self.changed = asyncio.Event()
        self.shipped = 0

    async def run(self, js: JetStreamContext) -> None:
        """Ship for as long as the session lasts (cancelled with it)."""
        while True:
            self.changed.clear()
            await self.ship(js)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SHIP_POLL_S):
                    await self.changed.wait()

    async def ship(self, js: JetStreamContext) -> int:
        """Publish every unshipped record; returns the last seq shipped (0: none)."""
        journal = self.journal
        last = 0
        try:
            for seq, line in journal.unshipped():
                await js.publish(
                    subjects.node_audit_subject(self._node_id),
                    line,
                    stream=subjects.AGENT_AUDIT_STREAM,
                    headers={
                        "Nats-Msg-Id": subjects.agent_audit_msg_id(
                            self._node_id, journal.journal_id, seq
                        )
                    },
                )
                last = seq
                self.shipped += 1
        except Exception as exc:  # NATS away, or no stream yet: the next round retries
            raise_if_cancelling()
            log.debug("audit journal shipping paused: %r", exc)
        if last:
            await asyncio.to_thread(journal.mark_shipped, last)
        return last
