"""Publishes fleet events (CloudEvents) on NATS. Never blocks or fails the caller:
an event that cannot be published is logged and counted, the fleet keeps working."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import nats.errors
from nats.aio.client import Client as NatsClient

from sentinel.errors import Unavailable
from sentinel.events import build_event

log = logging.getLogger(__name__)


class EventPublisher:
    def __init__(
        self, nc: NatsClient, source: str, on_failure: Callable[[], None] = lambda: None
    ) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._source = source
        self._on_failure = on_failure
        self.failed = 0

    async def publish_once(
        self, domain: str, event: str, node_id: str, data: dict[str, Any], *, msg_id: str
    ) -> None:
        """Publish on the events stream and await its PubAck; JetStream drops a second
        publish with the same `msg_id` (within its dedup window), and the CloudEvent id
        is the msg id, so a subscriber can drop repeats too. Raises on failure: the
        caller retries rather than lose the announcement."""
        fleet_event = build_event(
            domain, event, node_id, data, source=self._source, event_id=msg_id
        )
        headers = {**fleet_event.headers, "Nats-Msg-Id": msg_id}
        try:
            await self._js.publish(fleet_event.subject, fleet_event.payload, headers=headers)
        except (nats.errors.Error, TimeoutError) as exc:
            self.failed += 1
            self._on_failure()
            raise Unavailable(
                f"could not publish {fleet_event.subject}: {exc!r}", reason="STORE_UNAVAILABLE"
            ) from exc

    async def publish(self, domain: str, event: str, node_id: str, data: dict[str, Any]) -> None:
        fleet_event = build_event(domain, event, node_id, data, source=self._source)
        try:
            await self._nc.publish(
                fleet_event.subject, fleet_event.payload, headers=fleet_event.headers
            )
        except Exception as exc:  # a lost event must never break the data path
            self.failed += 1
            self._on_failure()
            log.warning("could not publish %s: %s", fleet_event.subject, exc)
