"""An upgrade deletes nothing that was stored: streams and buckets made by an earlier
version without limits keep every message when the hub applies its budgets, on a real
nats-server."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext, api

from hub.embedded_nats import EmbeddedNats
from hub.revocation import Revocations
from hub.state import ensure_stream
from sentinel import subjects

KIB = 1024
# What HubState made before budgets: no byte, message or per-subject limit.
OLD_RESULTS = api.StreamConfig(
    name=subjects.RESULTS_STREAM,
    subjects=[subjects.RESULTS_ALL],
    storage=api.StorageType.FILE,
    max_age=timedelta(days=8).total_seconds(),
    duplicate_window=120.0,
)
# The same stream with a budget smaller than what it holds.
NEW_RESULTS = api.StreamConfig(
    name=subjects.RESULTS_STREAM,
    subjects=[subjects.RESULTS_ALL],
    storage=api.StorageType.FILE,
    max_age=timedelta(days=8).total_seconds(),
    duplicate_window=120.0,
    max_bytes=4 * KIB,
    max_msg_size=2 * KIB,
    max_msgs_per_subject=3,
    discard=api.DiscardPolicy.NEW,
    discard_new_per_subject=True,
)


@pytest.fixture
async def nc(tmp_path: Path) -> AsyncIterator[NatsClient]:
    server = await EmbeddedNats.start(tmp_path / "nats")
    client = await nats.connect(server.url)
    try:
        yield client
    finally:
        await client.close()
        await server.stop()


async def stored(js: JetStreamContext, stream: str) -> list[tuple[str, bytes]]:
    info = await js.stream_info(stream)
    messages = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        message = await js.get_msg(stream, seq)
        messages.append((message.subject or "", message.data or b""))
    return messages


async def test_a_budget_smaller_than_what_a_stream_holds_trims_nothing(
    nc: NatsClient, caplog: pytest.LogCaptureFixture
) -> None:
    js = nc.jetstream()
    await js.add_stream(OLD_RESULTS)
    for index in range(10):  # 10 on one subject, where the new budget allows 3
        await js.publish(subjects.result_subject("node-a"), bytes([index]) * KIB)
    await js.publish(subjects.result_subject("node-b"), b"b" * KIB)
    before = await stored(js, subjects.RESULTS_STREAM)

    with caplog.at_level(logging.WARNING, logger="hub.state"):
        await ensure_stream(js, NEW_RESULTS)

    assert await stored(js, subjects.RESULTS_STREAM) == before
    info = await js.stream_info(subjects.RESULTS_STREAM)
    assert info.state.messages == 11
    # The limits it holds more than stay as they were; the rest of the budget applies.
    assert info.config.max_bytes in (None, -1)
    assert info.config.max_msgs_per_subject in (None, -1)
    assert info.config.max_msg_size == 2 * KIB
    assert info.config.discard == api.DiscardPolicy.NEW
    warnings = " ".join(r.getMessage() for r in caplog.records)
    assert "SENTINEL_RESULTS holds" in warnings and "nothing is trimmed" in warnings

    # Once what it holds fits (here: purged by an operator), the next start applies it all.
    await js.purge_stream(subjects.RESULTS_STREAM)
    await ensure_stream(js, NEW_RESULTS)
    info = await js.stream_info(subjects.RESULTS_STREAM)
    assert (info.config.max_bytes, info.config.max_msgs_per_subject) == (4 * KIB, 3)


async def test_a_bucket_made_without_a_budget_gets_one_and_keeps_its_keys(nc: NatsClient) -> None:
    js = nc.jetstream()
    # What Revocations.open made before budgets.
    old = await js.create_key_value(
        bucket=subjects.REVOKED_BUCKET, history=1, storage=api.StorageType.FILE
    )
    record = {"revoked_at": 1.0, "revoked_by": "admin", "reason": "stolen", "node_id": "node-a"}
    await old.put("node.node-a", msgspec.json.encode(record))
    await old.put("serial.0abc", msgspec.json.encode({**record, "node_id": ""}))

    revocations = await Revocations.open(js, lambda: datetime.now(UTC), timedelta(seconds=10))

    assert set(revocations.nodes) == {"node-a"} and set(revocations.serials) == {"0abc"}
    info = await js.stream_info(f"KV_{subjects.REVOKED_BUCKET}")
    assert info.state.messages == 2
    assert info.config.max_bytes is not None and info.config.max_bytes > 0
    await revocations.revoke_node("node-b", by="admin", reason="test")
    assert set(revocations.nodes) == {"node-a", "node-b"}
