"""What the hub has sent, for the policy's rate limits, durable in JetStream.

Every counted run is one message `<epoch microseconds> <key>` on the stream
SENTINEL_RATE_HISTORY (file storage, kept 31 days: longer than any sensible window).
A starting hub reads the stream back into a `policy.SlidingWindowLog`, so a hub restart
resets no limit, and replicas that start later see what earlier ones sent. (Replicas
running side by side each count only what they sent themselves since they started.)
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import nats.errors
from nats.js import JetStreamContext, api

import policy
from hub.state import ensure_stream
from hub.storage_budget import RATE_HISTORY_STREAM, StorageBudget

log = logging.getLogger(__name__)

STREAM = RATE_HISTORY_STREAM
SUBJECT = "sentinel.rate.history"
KEEP = timedelta(days=31)


def rate_history_stream(budget: StorageBudget) -> api.StreamConfig:
    """Drops its oldest events when full: a limit over the longest windows may then
    count short, but sending is never refused for want of room to count it."""
    return budget.stream_config(
        budget.rate_history, subjects=[SUBJECT], max_age=KEEP.total_seconds()
    )


class SentHistory:
    """A `policy.History` whose writes also go to JetStream."""

    def __init__(self, js: JetStreamContext, log_: policy.SlidingWindowLog) -> None:
        self._js = js
        self.log = log_

    @classmethod
    async def open(cls, js: JetStreamContext, budget: StorageBudget | None = None) -> SentHistory:
        await ensure_stream(js, rate_history_stream(budget or StorageBudget()))
        lines: list[str] = []
        info = await js.stream_info(STREAM)
        if info.state.messages:
            subscription = await js.subscribe(SUBJECT, ordered_consumer=True)
            try:
                while len(lines) < info.state.messages:
                    message = await subscription.next_msg(timeout=5)
                    lines.append(message.data.decode())
            except nats.errors.TimeoutError:
                log.warning("rate history: read %d of %d events", len(lines), info.state.messages)
            finally:
                await subscription.unsubscribe()
        return cls(js, policy.SlidingWindowLog.from_lines(lines))

    def count(self, key: str, since: datetime, until: datetime) -> int:
        return self.log.count(key, since, until)

    async def record(self, keys: list[str], at: datetime) -> None:
        for key in keys:
            line = policy.history_line(key, at)
            await self._js.publish(SUBJECT, line.encode(), stream=STREAM)
            self.log.record(key, at)
