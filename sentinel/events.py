"""Fleet events as CloudEvents 1.0 in structured JSON mode.

type `io.sentinel.<domain>.<event>`, subject `sentinel.events.<domain>.<event>.<node_id>`,
data with snake_case keys. The whole event is the NATS message payload, with
content type `application/cloudevents+json`, so any stock NATS client can read it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from sentinel.subjects import event_subject

CONTENT_TYPE = "application/cloudevents+json"


@dataclass(frozen=True, slots=True)
class FleetEvent:
    subject: str
    payload: bytes
    headers: dict[str, str]


def build_event(
    domain: str,
    event: str,
    node_id: str,
    data: dict[str, Any],
    *,
    source: str,
    now: datetime | None = None,
    event_id: str | None = None,
) -> FleetEvent:
    moment = now or datetime.now(UTC)
    body = {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": source,
        "type": f"io.sentinel.{domain}.{event}",
        "subject": node_id,
        "time": moment.isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": {"node_id": node_id, **data},
    }
    return FleetEvent(
        subject=event_subject(domain, event, node_id),
        payload=msgspec.json.encode(body),
        headers={"Content-Type": CONTENT_TYPE},
    )
