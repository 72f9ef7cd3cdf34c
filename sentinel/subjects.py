"""NATS subject and message-id names: the one place they are spelled.

Node ids are DNS labels (validated before they reach here), so they are always
a single, safe subject token.
"""

from __future__ import annotations

TELEMETRY_STREAM = "SENTINEL_TELEMETRY"
EVENTS_STREAM = "SENTINEL_EVENTS"
NODES_BUCKET = "sentinel_nodes"
TELEMETRY_HWM_BUCKET = "sentinel_telemetry_hwm"

TELEMETRY_ALL = "sentinel.telemetry.*"
EVENTS_ALL = "sentinel.events.>"


def telemetry_subject(node_id: str) -> str:
    return f"sentinel.telemetry.{node_id}"


def telemetry_msg_id(node_id: str, boot_id: str, seq: int) -> str:
    """`Nats-Msg-Id` of a batch: JetStream drops a second publish with the same id."""
    return f"{node_id}/{boot_id}/{seq}"


def event_subject(domain: str, event: str, node_id: str) -> str:
    return f"sentinel.events.{domain}.{event}.{node_id}"


def hwm_key(node_id: str, boot_id: str) -> str:
    return f"{node_id}.{boot_id}"
