"""WatchTelemetry outlives junk on the telemetry subjects: an undecodable message is
skipped, counted and logged (once per node a minute), and the viewer's stream goes on
with the next real batch. Real hub, real NATS (junk from the NATS admin), real gRPC."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from prometheus_client import CollectorRegistry

from hub.app import Hub
from hub.fleet_service import FleetService
from hub.metrics import HubMetrics
from sentinel import subjects
from sentinel.tls import TlsFiles
from sentinel.v1 import fleet_pb2, fleet_pb2_grpc
from tests.conftest import Pki, nats_admin, within
from tests.test_observe_path import open_stream, send_batch

Channels = Callable[[TlsFiles], grpc.aio.Channel]
JUNK = b"\xff\xff\xff\xff not a TelemetryBatch"
UNDECODABLE = "sentinel_hub_telemetry_undecodable_total"


async def first_batch(watch: grpc.aio.UnaryStreamCall, call: grpc.aio.StreamStreamCall) -> int:
    """Send batches until one reaches the watcher (it subscribes asynchronously); its seq."""
    seq = 0
    while True:
        seq += 1
        await send_batch(call, seq)
        try:
            received = await asyncio.wait_for(watch.read(), 0.5)
        except TimeoutError:
            assert seq < 40, "no batch reached the watcher"
            continue
        assert isinstance(received, fleet_pb2.WatchTelemetryResponse)
        return received.batch.seq


async def junk_then_a_batch(
    hub: Hub, watch: grpc.aio.UnaryStreamCall, call: grpc.aio.StreamStreamCall, seq: int
) -> fleet_pb2.WatchTelemetryResponse:
    admin = await nats_admin(hub)
    try:
        await admin.publish(subjects.telemetry_subject("node-b"), JUNK)
        await admin.flush()  # routed to the watcher before the batch the hub publishes next
    finally:
        await admin.close()
    await send_batch(call, seq)
    received = await within(watch.read())
    assert isinstance(received, fleet_pb2.WatchTelemetryResponse)
    return received


async def test_junk_on_a_telemetry_subject_does_not_end_a_viewers_watch(
    hub: Hub, pki: Pki, channel_to: Channels
) -> None:
    watch = fleet_pb2_grpc.FleetServiceStub(channel_to(pki.user("viewer"))).WatchTelemetry(
        fleet_pb2.WatchTelemetryRequest(node_id="node-b")
    )
    call, _ = await open_stream(channel_to(pki.node("node-b")), "node-b")
    seq = await first_batch(watch, call)
    received = await junk_then_a_batch(hub, watch, call, seq + 1)
    assert (received.batch.node_id, received.batch.seq) == ("node-b", seq + 1)
    watch.cancel()
    call.cancel()


@pytest.fixture
async def counted_fleet(hub: Hub) -> AsyncIterator[tuple[str, CollectorRegistry]]:
    """The hub's fleet view with a metrics registry of its own, on a plain local server."""
    registry = CollectorRegistry()
    nc = await nats_admin(hub)
    server = grpc.aio.server()
    fleet_pb2_grpc.add_FleetServiceServicer_to_server(
        FleetService(hub.registry, nc, metrics=HubMetrics(registry)), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", registry
    finally:
        await server.stop(0)
        await nc.close()


async def test_an_undecodable_batch_is_counted_and_logged_once_per_node_a_minute(
    hub: Hub,
    pki: Pki,
    channel_to: Channels,
    counted_fleet: tuple[str, CollectorRegistry],
    caplog: pytest.LogCaptureFixture,
) -> None:
    address, registry = counted_fleet
    async with grpc.aio.insecure_channel(address) as channel:
        watch = fleet_pb2_grpc.FleetServiceStub(channel).WatchTelemetry(
            fleet_pb2.WatchTelemetryRequest(node_id="node-b")
        )
        call, _ = await open_stream(channel_to(pki.node("node-b")), "node-b")
        seq = await first_batch(watch, call)
        with caplog.at_level(logging.WARNING, logger="hub.fleet_service"):
            received = await junk_then_a_batch(hub, watch, call, seq + 1)
            assert received.batch.seq == seq + 1
            assert registry.get_sample_value(UNDECODABLE) == 1
            received = await junk_then_a_batch(hub, watch, call, seq + 2)
            assert received.batch.seq == seq + 2
        assert registry.get_sample_value(UNDECODABLE) == 2
        logged = [r for r in caplog.records if "undecodable" in r.getMessage()]
        assert len(logged) == 1 and "node-b" in logged[0].getMessage()
        watch.cancel()
        call.cancel()
