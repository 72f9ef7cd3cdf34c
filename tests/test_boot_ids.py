"""A telemetry batch's boot_id is bounded by its session: the hello's, an older boot the
hello lists as backlog, or one the hub already stored batches of. Anything else is
refused and mints nothing (no high-water key, nothing stored), so a node cannot grow the
hub's state by inventing boot ids; a real agent whose spool still holds an older boot's
batches after its telemetry state was reset still delivers them."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from edge_agent.app import Agent
from edge_agent.state import STATE_FILE
from hub.app import Hub
from hub.state import bucket_keys
from sentinel import subjects
from sentinel.rpc_errors import reason_of
from sentinel.tls import TlsFiles
from sentinel.v1 import agent_pb2, agent_pb2_grpc, telemetry_pb2
from tests.conftest import Pki, counter, spool_until, within
from tests.test_durability import _closed_port
from tests.test_observe_path import agent_settings, open_stream, send_batch, stream_count

Channels = Callable[[TlsFiles], grpc.aio.Channel]


async def hwm_keys(hub: Hub) -> list[str]:
    return await bucket_keys(hub.state.js, subjects.TELEMETRY_HWM_BUCKET)


async def stored_boots(hub: Hub, node_id: str) -> list[tuple[str, int]]:
    """(boot_id, seq) of every batch of `node_id` in the telemetry stream, in order."""
    js = hub.state.js
    subject = subjects.telemetry_subject(node_id)
    found = []
    for seq in range(1, (await js.stream_info(subjects.TELEMETRY_STREAM)).state.last_seq + 1):
        message = await js.get_msg(subjects.TELEMETRY_STREAM, seq)
        if message.subject == subject:
            batch = telemetry_pb2.TelemetryBatch.FromString(message.data or b"")
            found.append((batch.boot_id, batch.seq))
    return found


async def test_a_batch_of_an_unannounced_boot_is_refused_and_mints_no_key(
    hub: Hub, pki: Pki, channel_to: Channels
) -> None:
    call, _ = await open_stream(channel_to(pki.node("node-a")), "node-a")
    assert (await send_batch(call, 1)).seq == 1
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await send_batch(call, 2, boot_id=uuid.uuid4().hex)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(caught.value) == "UNKNOWN_BOOT_ID"
    assert await hwm_keys(hub) == [subjects.hwm_key("node-a", "b00t")]
    assert await stored_boots(hub, "node-a") == [("b00t", 1)]
    assert counter(hub, "node-a", "batches_received") == 1
    # A gap of an unannounced boot is refused the same way, and counts nothing.
    call, _ = await open_stream(channel_to(pki.node("node-a")), "node-a")
    await call.write(
        agent_pb2.ConnectRequest(gap={"boot_id": "invented", "from_seq": 1, "to_seq": 9})
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await within(call.read())
    assert reason_of(caught.value) == "UNKNOWN_BOOT_ID"
    assert counter(hub, "node-a", "gaps_announced") == 0


async def test_boots_the_hello_lists_or_the_hub_stored_are_accepted(
    hub: Hub, pki: Pki, channel_to: Channels
) -> None:
    channel = channel_to(pki.node("node-a"))
    call = agent_pb2_grpc.AgentServiceStub(channel).Connect()
    hello = agent_pb2.AgentHello(node_id="node-a", boot_id="new", backlog_boot_ids=["old"])
    await call.write(agent_pb2.ConnectRequest(hello=hello))
    reply = await within(call.read())
    assert isinstance(reply, agent_pb2.ConnectResponse)
    assert reply.WhichOneof("message") == "hello_reply"
    await call.write(agent_pb2.ConnectRequest(batch={"boot_id": "old", "seq": 1}))
    await call.write(agent_pb2.ConnectRequest(batch={"boot_id": "new", "seq": 2}))
    acks: list[tuple[str, int]] = []
    while len(acks) < 2:
        response = await within(call.read())
        assert isinstance(response, agent_pb2.ConnectResponse)
        if response.WhichOneof("message") == "ack":
            acks.append((response.ack.boot_id, response.ack.seq))
    assert acks == [("old", 1), ("new", 2)]
    call.cancel()
    # A later session (an agent that does not list its backlog) may still send batches of
    # a boot the hub stored before: that mints no new key.
    later, _ = await open_stream(channel, "node-a", boot_id="newer")
    assert (await send_batch(later, 3, boot_id="old")).seq == 3
    assert await hwm_keys(hub) == [
        subjects.hwm_key("node-a", "new"),
        subjects.hwm_key("node-a", "old"),
    ]


async def test_a_hello_listing_too_many_boots_is_refused(
    hub: Hub, pki: Pki, channel_to: Channels
) -> None:
    call = agent_pb2_grpc.AgentServiceStub(channel_to(pki.node("node-a"))).Connect()
    boots = [f"old-{n}" for n in range(9)]
    hello = agent_pb2.AgentHello(node_id="node-a", boot_id="b00t", backlog_boot_ids=boots)
    await call.write(agent_pb2.ConnectRequest(hello=hello))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await within(call.read())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(caught.value) == "TOO_MANY_BOOT_IDS"
    assert hub.registry.get("node-a") is None


async def test_an_agent_with_a_reset_sequence_delivers_the_old_boots_backlog(
    hub: Hub, pki: Pki, tmp_path: Path
) -> None:
    settings = agent_settings(pki, hub, tmp_path / "agent")
    away = f"127.0.0.1:{_closed_port()}"
    first = await Agent.start(replace(settings, link=replace(settings.link, hub_address=away)))
    try:  # the hub never heard of this boot: nothing of it has a high-water mark
        await within(spool_until(first, lambda: len(first.spool) >= 3))
    finally:
        await first.stop()
    old_boot, old_end = first.sequence.boot_id, first.sequence.last_allocated
    # An operator moved a corrupt telemetry state away: the agent starts a new boot, its
    # spool still holding the old one's batches.
    (settings.data_dir / STATE_FILE).unlink()
    second = await Agent.start(settings)
    try:
        assert second.sequence.boot_id != old_boot
        await within(
            hub.registry.wait_for(lambda: counter(hub, "node-a", "last_acked_seq") > old_end)
        )
    finally:
        await second.stop()  # seals the partial batch and drains the spool
    assert len(second.spool) == 0
    stored = await stored_boots(hub, "node-a")
    assert [seq for _, seq in stored] == list(range(1, second.sequence.last_allocated + 1))
    assert {boot for boot, seq in stored if seq <= old_end} == {old_boot}
    assert {boot for boot, seq in stored if seq > old_end} == {second.sequence.boot_id}
    assert await stream_count(hub, "node-a") == len(stored)
