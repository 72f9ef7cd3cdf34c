"""Per-identity call budgets and the message size limit, against a real hub over mTLS
(THREATS 23 and 37): one identity's streams cannot lock other identities out, a refusal
says why and when to retry, a closed stream gives its slot back, and a frame over 1 MiB is
refused while the hub keeps serving everyone else. The caps are made small through
`ServerLimits`, so a handful of streams reach them."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from hub.app import Hub
from hub.budgets import (
    RPC_BUDGET_EXHAUSTED,
    STREAM_BUDGET_EXHAUSTED,
    USER_SHARE_EXHAUSTED,
    CallBudgets,
)
from hub.settings import ServerLimits
from sentinel.errors import ResourceExhausted
from sentinel.identity import Identity, Kind, Role
from sentinel.rpc_errors import reason_of
from sentinel.tls import MIB, TlsFiles, secure_aio_channel
from sentinel.v1 import agent_pb2, agent_pb2_grpc, fleet_pb2, fleet_pb2_grpc, telemetry_pb2
from tests.conftest import WAIT_S, Pki, counter, hub_settings, within
from tests.test_metrics import scrape
from tests.test_observe_path import open_stream, send_batch, stream_count

# A viewer may hold 3 streams, all users together 4 calls, a node 2 streams.
SMALL = ServerLimits(
    user_streams_per_identity=3,
    user_calls_total=4,
    node_streams_per_identity=2,
    unary_per_identity=2,
    budget_retry_after_s=7.0,
)


ALICE = Identity("sentinel.local", Kind.USER, "alice", Role.VIEWER)
BOB = Identity("sentinel.local", Kind.USER, "bob", Role.ADMIN)
GPU_1 = Identity("sentinel.local", Kind.NODE, "gpu-1", Role.NODE)


def test_budgets_cap_each_identity_and_all_users_together() -> None:
    refusals: list[str] = []
    budgets = CallBudgets(SMALL, on_refused=refusals.append)
    alice = [budgets.take(ALICE, stream=True) for _ in range(SMALL.user_streams_per_identity)]
    with pytest.raises(ResourceExhausted) as caught:
        budgets.take(ALICE, stream=True)
    assert caught.value.reason == STREAM_BUDGET_EXHAUSTED
    assert caught.value.retry_after_s == SMALL.budget_retry_after_s
    assert caught.value.details == {"identity": "spiffe://sentinel.local/user/alice"}
    # Unary calls have their own budget, but count towards the users' share (4 calls).
    alice.append(budgets.take(ALICE, stream=False))
    with pytest.raises(ResourceExhausted) as caught:
        budgets.take(BOB, stream=True)
    assert caught.value.reason == USER_SHARE_EXHAUSTED
    # Nodes are outside the users' share, and capped on their own.
    node = [budgets.take(GPU_1, stream=True) for _ in range(SMALL.node_streams_per_identity)]
    with pytest.raises(ResourceExhausted) as caught:
        budgets.take(GPU_1, stream=True)
    assert caught.value.reason == STREAM_BUDGET_EXHAUSTED
    node += [budgets.take(GPU_1, stream=False) for _ in range(SMALL.unary_per_identity)]
    with pytest.raises(ResourceExhausted) as caught:
        budgets.take(GPU_1, stream=False)
    assert caught.value.reason == RPC_BUDGET_EXHAUSTED
    assert refusals == [
        STREAM_BUDGET_EXHAUSTED,
        USER_SHARE_EXHAUSTED,
        STREAM_BUDGET_EXHAUSTED,
        RPC_BUDGET_EXHAUSTED,
    ]
    assert (budgets.held_by(ALICE), budgets.held_by(BOB), budgets.held_by(GPU_1)) == (
        (3, 1),
        (0, 0),
        (2, 2),
    )

    # A slot given back is free again, for whoever comes next.
    budgets.give_back(alice.pop(0))
    bob = budgets.take(BOB, stream=True)
    assert budgets.user_calls == SMALL.user_calls_total
    for slot in [*alice, bob, *node]:
        budgets.give_back(slot)
    assert (budgets.user_calls, budgets.holders()) == (0, 0)


@pytest.fixture
async def small_hub(pki: Pki, tmp_path: Path) -> AsyncIterator[Hub]:
    settings = replace(
        hub_settings(pki, tmp_path / "hub"), limits=SMALL, metrics_listen="127.0.0.1:0"
    )
    started = await Hub.start(settings)
    try:
        yield started
    finally:
        await started.stop()


@pytest.fixture
async def channels(small_hub: Hub) -> AsyncIterator[Callable[[TlsFiles], grpc.aio.Channel]]:
    opened: list[grpc.aio.Channel] = []

    def open_channel(tls: TlsFiles) -> grpc.aio.Channel:
        opened.append(secure_aio_channel(small_hub.address, tls))
        return opened[-1]

    yield open_channel
    for channel in opened:
        await channel.close()


class Feed:
    """A node's Connect stream that sends a batch whenever a watcher needs one to prove it
    is open: a WatchTelemetry stream answers nothing until a batch is stored."""

    def __init__(self, call: grpc.aio.StreamStreamCall) -> None:
        self.call = call
        self._seqs: Iterator[int] = itertools.count(1)
        self.sent = 0

    async def watch(self, stub: fleet_pb2_grpc.FleetServiceStub) -> grpc.aio.UnaryStreamCall:
        """Open WatchTelemetry and return it once it delivered a batch (the hub then holds
        it); raise the call's error if the hub refused it."""
        call = stub.WatchTelemetry(fleet_pb2.WatchTelemetryRequest())
        first = asyncio.ensure_future(call.read())
        async with asyncio.timeout(WAIT_S):
            while not first.done():
                self.sent = next(self._seqs)
                assert (await send_batch(self.call, self.sent)).seq == self.sent
                await asyncio.wait([first], timeout=0.1)
        assert isinstance(first.result(), fleet_pb2.WatchTelemetryResponse)
        return call


def retry_delay_s(error: grpc.aio.AioRpcError) -> float:
    """The google.rpc.RetryInfo a refusal carries."""
    status = rpc_status.from_call(error)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return float(info.retry_delay.ToTimedelta().total_seconds())
    raise AssertionError(f"no RetryInfo in {error!r}")


async def refused(
    call: grpc.aio.UnaryStreamCall | grpc.aio.StreamStreamCall,
) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await within(call.read())
    return caught.value


async def test_a_viewer_at_its_stream_cap_is_refused_while_agents_and_other_users_connect(
    small_hub: Hub, pki: Pki, channels: Callable[[TlsFiles], grpc.aio.Channel]
) -> None:
    feed = Feed((await open_stream(channels(pki.node("node-a")), "node-a"))[0])
    viewer = fleet_pb2_grpc.FleetServiceStub(channels(pki.user("viewer")))
    held = [await feed.watch(viewer) for _ in range(SMALL.user_streams_per_identity)]

    error = await refused(viewer.WatchTelemetry(fleet_pb2.WatchTelemetryRequest()))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert reason_of(error) == "STREAM_BUDGET_EXHAUSTED"
    assert retry_delay_s(error) == SMALL.budget_retry_after_s
    assert "retry" in (error.details() or "")

    # An agent still connects and is acknowledged; another user still watches.
    other_agent, _ = await open_stream(channels(pki.node("node-b")), "node-b")
    assert (await send_batch(other_agent, 1)).seq == 1
    operator = fleet_pb2_grpc.FleetServiceStub(channels(pki.user("operator")))
    held.append(await feed.watch(operator))
    # All users together now hold their share (4 calls): the operator, under its own cap,
    # is refused for the share, and a node still fits.
    error = await refused(operator.WatchTelemetry(fleet_pb2.WatchTelemetryRequest()))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert reason_of(error) == "USER_SHARE_EXHAUSTED"
    third_agent, _ = await open_stream(channels(pki.node("node-c")), "node-c")
    assert (await send_batch(third_agent, 1)).seq == 1

    # The held streams still work, and nothing the agents sent was lost.
    final = feed.sent + 1
    assert (await send_batch(feed.call, final)).seq == final
    for call in held:
        while True:
            response = await within(call.read())
            assert isinstance(response, fleet_pb2.WatchTelemetryResponse)
            if response.batch.seq == final:
                break
    assert await stream_count(small_hub, "node-a") == final
    assert counter(small_hub, "node-a", "batches_received") == final
    scraped = await asyncio.to_thread(scrape, small_hub.metrics_url)
    name = "sentinel_hub_rpc_refused_total"
    assert scraped.value(name, reason="STREAM_BUDGET_EXHAUSTED") == 1
    assert scraped.value(name, reason="USER_SHARE_EXHAUSTED") == 1
    assert scraped.value(name, reason="RPC_BUDGET_EXHAUSTED") == 0


async def test_a_closed_stream_gives_its_slot_back(
    small_hub: Hub, pki: Pki, channels: Callable[[TlsFiles], grpc.aio.Channel]
) -> None:
    feed = Feed((await open_stream(channels(pki.node("node-a")), "node-a"))[0])
    viewer = fleet_pb2_grpc.FleetServiceStub(channels(pki.user("viewer")))
    held = [await feed.watch(viewer) for _ in range(SMALL.user_streams_per_identity)]
    error = await refused(viewer.WatchTelemetry(fleet_pb2.WatchTelemetryRequest()))
    assert reason_of(error) == "STREAM_BUDGET_EXHAUSTED"

    held.pop().cancel()
    # The hub hears of the cancel asynchronously: a try may still be refused for a moment,
    # never for long, and always for the budget.
    async with asyncio.timeout(WAIT_S):
        while True:
            try:
                held.append(await feed.watch(viewer))
                break
            except grpc.aio.AioRpcError as exc:
                assert reason_of(exc) == "STREAM_BUDGET_EXHAUSTED"
    assert len(held) == SMALL.user_streams_per_identity


async def test_a_node_holds_at_most_its_connect_streams(
    small_hub: Hub, pki: Pki, channels: Callable[[TlsFiles], grpc.aio.Channel]
) -> None:
    node_a = channels(pki.node("node-a"))
    # Its own stream, and one more: a reconnect or a certificate switch overlapping it.
    for _ in range(SMALL.node_streams_per_identity):
        await open_stream(node_a, "node-a")
    call = agent_pb2_grpc.AgentServiceStub(node_a).Connect()
    await call.write(
        agent_pb2.ConnectRequest(hello=agent_pb2.AgentHello(node_id="node-a", boot_id="b00t"))
    )
    error = await refused(call)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert reason_of(error) == "STREAM_BUDGET_EXHAUSTED"
    other, _ = await open_stream(channels(pki.node("node-b")), "node-b")
    assert (await send_batch(other, 1)).seq == 1


def _batch_of(size_bytes: int) -> agent_pb2.ConnectRequest:
    gpu = telemetry_pb2.GpuMetrics(uuid="x" * size_bytes)
    return agent_pb2.ConnectRequest(
        batch=telemetry_pb2.TelemetryBatch(
            boot_id="b00t", seq=2, samples=[telemetry_pb2.Sample(gpus=[gpu])]
        )
    )


@pytest.mark.parametrize("size_bytes", [5 * MIB, 3 * MIB // 2])
async def test_a_frame_over_one_mib_is_refused_and_other_agents_keep_streaming(
    hub: Hub, pki: Pki, channel_to: Callable[[TlsFiles], grpc.aio.Channel], size_bytes: int
) -> None:
    call, _ = await open_stream(channel_to(pki.node("node-a")), "node-a")
    assert (await send_batch(call, 1)).seq == 1
    other, _ = await open_stream(channel_to(pki.node("node-b")), "node-b")
    await call.write(_batch_of(size_bytes))
    error = await refused(call)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # The other agent keeps streaming, and the refused node reconnects and goes on where
    # it was: its stored batch is still there, nothing of the big one was stored.
    assert (await send_batch(other, 1)).seq == 1
    again, reply = await open_stream(channel_to(pki.node("node-a")), "node-a")
    assert reply.acked_seq == 1
    assert (await send_batch(again, 2)).seq == 2
    assert await stream_count(hub, "node-a") == 2
    assert counter(hub, "node-a", "batches_received") == 2
