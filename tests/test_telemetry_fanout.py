"""WatchTelemetry's fan-out: however many viewers, the hub holds one subscription on the
telemetry subjects and decodes each batch once; each viewer gets exactly the batches of
its node filter and selector, through its own bounded queue, a slow one losing its oldest
(counted) without holding up the rest; junk is skipped and counted once.

Real hub, real NATS, real gRPC for the end-to-end test; the others drive a `TelemetryFanout`
on a real NATS connection of the hub's server, with node labels from a plain dict."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from nats.aio.client import Client as NatsClient
from prometheus_client import CollectorRegistry

from hub.app import Hub
from hub.metrics import HubMetrics
from hub.telemetry_fanout import TelemetryFanout, TelemetryWatch
from sentinel import subjects
from sentinel.errors import Unavailable
from sentinel.selectors import parse_selector
from sentinel.tls import TlsFiles
from sentinel.v1 import fleet_pb2, fleet_pb2_grpc, telemetry_pb2
from tests.conftest import Pki, eventually, nats_admin, within
from tests.test_observe_path import open_stream, send_batch

Channels = Callable[[TlsFiles], grpc.aio.Channel]
JUNK = b"\xff\xff\xff\xff not a TelemetryBatch"
DROPPED = "sentinel_hub_telemetry_watch_dropped_total"
UNDECODABLE = "sentinel_hub_telemetry_undecodable_total"
EVERY = parse_selector("")


def telemetry_subscriptions(nc: NatsClient) -> int:
    """Subscriptions `nc` holds on telemetry subjects (nats-py keeps them by sid)."""
    prefix = subjects.telemetry_subject("")
    return sum(1 for sub in nc._subs.values() if sub.subject.startswith(prefix))


def node(node_id: str, **labels: str) -> fleet_pb2.Node:
    return fleet_pb2.Node(node_id=node_id, labels=labels)


async def publish(nc: NatsClient, node_id: str, seq: int) -> None:
    batch = telemetry_pb2.TelemetryBatch(node_id=node_id, boot_id="b00t", seq=seq)
    await nc.publish(subjects.telemetry_subject(node_id), batch.SerializeToString())


async def read(watch: grpc.aio.UnaryStreamCall, count: int) -> list[tuple[str, int]]:
    received = []
    for _ in range(count):
        response = await within(watch.read())
        assert isinstance(response, fleet_pb2.WatchTelemetryResponse)
        received.append((response.batch.node_id, response.batch.seq))
    return received


async def test_viewers_with_different_selectors_share_one_subscription(
    hub: Hub, pki: Pki, channel_to: Channels
) -> None:
    agents = {
        "node-a": (await open_stream(channel_to(pki.node("node-a")), "node-a", zone="eu"))[0],
        "node-b": (await open_stream(channel_to(pki.node("node-b")), "node-b", zone="us"))[0],
        "node-c": (await open_stream(channel_to(pki.node("node-c")), "node-c", zone="eu"))[0],
    }
    viewer = fleet_pb2_grpc.FleetServiceStub(channel_to(pki.user("viewer")))
    operator = fleet_pb2_grpc.FleetServiceStub(channel_to(pki.user("operator")))
    requests = {
        "node-b": (viewer, fleet_pb2.WatchTelemetryRequest(node_id="node-b")),
        "eu": (viewer, fleet_pb2.WatchTelemetryRequest(label_selector="zone=eu")),
        "eu again": (operator, fleet_pb2.WatchTelemetryRequest(label_selector="zone in (eu)")),
        "all": (operator, fleet_pb2.WatchTelemetryRequest()),
        "node-a in us": (
            viewer,
            fleet_pb2.WatchTelemetryRequest(node_id="node-a", label_selector="zone=us"),
        ),
    }
    watches = {name: stub.WatchTelemetry(request) for name, (stub, request) in requests.items()}
    await eventually(lambda: hub.telemetry.watching == len(watches) and hub.telemetry.subscribed)
    assert telemetry_subscriptions(hub.state.nc) == 1
    assert hub.telemetry.subscriptions_made == 1

    sent = [(node_id, seq) for seq in (1, 2) for node_id in ("node-a", "node-b", "node-c")]
    for node_id, seq in sent:
        await send_batch(agents[node_id], seq)
    eu = [(n, s) for n, s in sent if n != "node-b"]
    assert await read(watches["node-b"], 2) == [("node-b", 1), ("node-b", 2)]
    assert await read(watches["eu"], 4) == eu
    assert await read(watches["eu again"], 4) == eu
    assert await read(watches["all"], 6) == sent
    # node-a moves to zone us: the first batch that viewer gets is the one sent after.
    agents["node-a"].cancel()
    agents["node-a"], _ = await open_stream(
        channel_to(pki.node("node-a")), "node-a", boot_id="b00t-2", zone="us"
    )
    await send_batch(agents["node-a"], 1, boot_id="b00t-2")
    response = await within(watches["node-a in us"].read())
    assert isinstance(response, fleet_pb2.WatchTelemetryResponse)
    assert (response.batch.node_id, response.batch.boot_id) == ("node-a", "b00t-2")
    assert telemetry_subscriptions(hub.state.nc) == 1

    for watch in watches.values():
        watch.cancel()
    await eventually(lambda: hub.telemetry.watching == 0 and not hub.telemetry.subscribed)
    await eventually(lambda: telemetry_subscriptions(hub.state.nc) == 0)
    for call in agents.values():
        call.cancel()


@pytest.fixture
async def nc(hub: Hub) -> AsyncIterator[NatsClient]:
    """A NATS connection of the hub's server (the NATS admin): publishes and subscribes."""
    client = await nats_admin(hub)
    try:
        yield client
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def fanout_on(
    nc: NatsClient, nodes: dict[str, fleet_pb2.Node], metrics: HubMetrics, queue_batches: int = 256
) -> AsyncIterator[TelemetryFanout]:
    fanout = TelemetryFanout(nc, nodes, metrics, clock=lambda: 0.0, queue_batches=queue_batches)
    try:
        yield fanout
    finally:
        await fanout.close()


async def test_a_viewer_that_does_not_read_loses_its_oldest_and_no_one_else_waits(
    hub: Hub, nc: NatsClient, caplog: pytest.LogCaptureFixture
) -> None:
    registry = CollectorRegistry()
    nodes = {"node-a": node("node-a", zone="eu")}
    async with (
        fanout_on(nc, nodes, HubMetrics(registry), queue_batches=4) as fanout,
        fanout.watch("", EVERY) as reader,
        fanout.watch("node-a", parse_selector("zone=eu")) as idle,
    ):
        with caplog.at_level(logging.WARNING, logger="hub.telemetry_fanout"):
            for seq in range(1, 11):
                await publish(nc, "node-a", seq)
                assert (await within(reader.next())).batch.seq == seq
        assert (idle.queued, idle.dropped, reader.dropped) == (4, 6, 0)
        assert [(await idle.next()).batch.seq for _ in range(4)] == [7, 8, 9, 10]
        assert fanout.dropped == 6
        assert registry.get_sample_value(DROPPED) == 6
        logged = [r for r in caplog.records if "slow WatchTelemetry" in r.getMessage()]
        assert len(logged) == 1  # the clock stands still: once a minute
        assert telemetry_subscriptions(nc) == 1


async def test_junk_is_decoded_and_counted_once_for_all_viewers(
    hub: Hub, nc: NatsClient, caplog: pytest.LogCaptureFixture
) -> None:
    registry = CollectorRegistry()
    nodes = {"node-b": node("node-b", zone="eu")}
    async with (
        fanout_on(nc, nodes, HubMetrics(registry)) as fanout,
        fanout.watch("node-b", EVERY) as by_node,
        fanout.watch("", parse_selector("zone=eu")) as by_selector,
        fanout.watch("", EVERY) as everything,
    ):
        with caplog.at_level(logging.WARNING, logger="hub.telemetry_fanout"):
            await nc.publish(subjects.telemetry_subject("node-b"), JUNK)
            await publish(nc, "node-b", 1)
            received = [await within(watch.next()) for watch in (by_node, by_selector, everything)]
        assert [response.batch.seq for response in received] == [1, 1, 1]
        # Decoded once, wrapped once: every viewer is sent the same response.
        assert received[0] is received[1] is received[2]
        assert fanout.undecodable == 1
        assert registry.get_sample_value(UNDECODABLE) == 1
        logged = [r for r in caplog.records if "undecodable" in r.getMessage()]
        assert len(logged) == 1 and "node-b" in logged[0].getMessage()


async def test_subscribed_while_anyone_watches_and_only_then(hub: Hub, nc: NatsClient) -> None:
    nodes = {"node-a": node("node-a")}
    async with fanout_on(nc, nodes, HubMetrics(CollectorRegistry())) as fanout:
        assert telemetry_subscriptions(nc) == 0  # nobody watches: nothing is sent here

        async def hold(node_id: str, held: asyncio.Event) -> None:
            async with fanout.watch(node_id, EVERY):
                held.set()
                await asyncio.Event().wait()  # until cancelled

        # Viewers arriving together subscribe once.
        events = [asyncio.Event() for _ in range(3)]
        holders = [
            asyncio.create_task(hold(node_id, held), name=f"test-hold-{index}")
            for index, (node_id, held) in enumerate(
                zip(("", "node-a", "node-b"), events, strict=True)
            )
        ]
        await within(asyncio.gather(*(held.wait() for held in events)))
        assert fanout.subscribed and telemetry_subscriptions(nc) == 1
        assert fanout.subscriptions_made == 1
        for holder in holders:
            holder.cancel()
        await asyncio.gather(*holders, return_exceptions=True)
        await eventually(lambda: not fanout.subscribed and telemetry_subscriptions(nc) == 0)

        # A viewer that leaves while the subscription is being made leaves none behind.
        leaver = asyncio.create_task(hold("", asyncio.Event()), name="test-leaver")
        await eventually(lambda: fanout.watching == 1, poll_s=0.0)
        assert not fanout.subscribed  # registered, waiting for the subscription
        leaver.cancel()
        await asyncio.gather(leaver, return_exceptions=True)
        await eventually(lambda: not fanout.subscribed and telemetry_subscriptions(nc) == 0)
        assert fanout.watching == 0

        # And the next viewer is served again.
        async with fanout.watch("node-a", EVERY) as watch:
            await publish(nc, "node-a", 1)
            assert (await within(watch.next())).batch.seq == 1
            assert telemetry_subscriptions(nc) == 1

    # Closed (the hub stops): no subscription, and no new viewer.
    assert telemetry_subscriptions(nc) == 0
    with pytest.raises(Unavailable):
        async with fanout.watch("", EVERY):
            pass


def test_a_full_queue_drops_its_oldest() -> None:
    watch = TelemetryWatch("", EVERY, queue_batches=2)
    offered = [
        fleet_pb2.WatchTelemetryResponse(batch=telemetry_pb2.TelemetryBatch(seq=seq))
        for seq in (1, 2, 3)
    ]
    assert [watch.offer(response) for response in offered] == [0, 0, 1]
    assert (watch.queued, watch.dropped) == (2, 1)
