"""Revocation against real hubs: the revoked set in JetStream KV, shared by every hub;
new calls from a revoked certificate are refused and its open streams ended."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509

from edge_agent.app import Agent
from hub.app import Hub
from sentinel import nats_tls
from sentinel.audit import parse_record
from sentinel.errors import Unavailable
from sentinel.rpc_errors import reason_of
from sentinel.tls import TlsFiles, secure_aio_channel
from sentinel.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    enrollment_pb2,
    enrollment_pb2_grpc,
    fleet_pb2,
    fleet_pb2_grpc,
)
from tests.conftest import Pki, eventually, hub_settings, within
from tests.test_observe_path import agent_settings

REVOCATION_SLO_S = 60.0


def serial_of(tls: TlsFiles) -> str:
    return format(x509.load_pem_x509_certificate(tls.cert_pem).serial_number, "x")


async def revoke(hub: Hub, pki: Pki, **subject: str) -> enrollment_pb2.RevokeCertificateResponse:
    async with secure_aio_channel(hub.address, pki.user("admin")) as channel:
        response: enrollment_pb2.RevokeCertificateResponse = (
            await enrollment_pb2_grpc.EnrollmentServiceStub(channel).RevokeCertificate(
                enrollment_pb2.RevokeCertificateRequest(reason="stolen", **subject)
            )
        )
        return response


async def open_stream(
    hub: Hub, tls: TlsFiles, node_id: str
) -> tuple[grpc.aio.Channel, grpc.aio.StreamStreamCall]:
    """A node's Connect stream, past the hello."""
    channel = secure_aio_channel(hub.address, tls)
    call = agent_pb2_grpc.AgentServiceStub(channel).Connect()
    await call.write(
        agent_pb2.ConnectRequest(hello=agent_pb2.AgentHello(node_id=node_id, boot_id="b00t"))
    )
    first = await within(call.read())
    assert isinstance(first, agent_pb2.ConnectResponse)
    assert first.WhichOneof("message") == "hello_reply"
    return channel, call


async def ended_by_revocation(call: grpc.aio.StreamStreamCall) -> float:
    """Seconds until the stream ends; it must end PERMISSION_DENIED / CERT_REVOKED."""
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        while True:
            await within(call.read(), REVOCATION_SLO_S)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert reason_of(caught.value) == "CERT_REVOKED"
    return time.monotonic() - started


async def refused_as_revoked(hub: Hub, tls: TlsFiles) -> None:
    """A new call with the certificate is refused before anything else is looked at."""
    async with secure_aio_channel(hub.address, tls) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await agent_pb2_grpc.AgentServiceStub(channel).RenewCertificate(
                agent_pb2.RenewCertificateRequest()
            )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert reason_of(caught.value) == "CERT_REVOKED"


async def test_revoking_a_node_ends_its_stream_and_refuses_it_from_then_on(
    hub: Hub, pki: Pki
) -> None:
    channel, call = await open_stream(hub, pki.node("node-a"), "node-a")
    other_channel, other = await open_stream(hub, pki.node("node-b"), "node-b")
    async with channel, other_channel:
        response = await revoke(hub, pki, node_id="node-a")
        assert list(response.revoked_serials) == []  # issued offline: no hub recorded it
        assert await ended_by_revocation(call) < REVOCATION_SLO_S
        await refused_as_revoked(hub, pki.node("node-a"))
        # Another node's stream is untouched.
        assert not other.done()
        await other.write(agent_pb2.ConnectRequest(heartbeat=agent_pb2.Heartbeat()))
    assert "node-a" in hub.revocations.nodes
    head = await hub.audit.head()
    records = [parse_record(line) async for _, line in hub.audit.read(1, head.seq)]
    [revoked] = [r for r in records if r.action == "certificate.revoked"]
    assert (revoked.actor, revoked.target, revoked.reason) == (
        "spiffe://sentinel.local/user/admin",
        "node-a",
        "stolen",
    )


async def test_a_revoked_agent_is_told_why_at_every_reconnect(
    hub: Hub, pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    agent = await Agent.start(agent_settings(pki, hub, tmp_path / "agent"))
    try:
        await within(agent.link.connected.wait())
        caplog.set_level(logging.WARNING, logger="edge_agent.link")
        await revoke(hub, pki, node_id="node-a")
        tried = agent.link.attempts
        await eventually(lambda: agent.link.attempts >= tried + 5)  # refused reconnects
        assert not agent.link.connected.is_set()
    finally:
        await agent.stop()
    # The open stream ends, then each reconnect reads the refusal's reason (the hub reads the
    # hello before refusing, so the write never races it): never a bare INTERNAL, and since
    # the agent logs an error once until it changes, exactly two lines.
    downs = [r.getMessage() for r in caplog.records if "hub link down" in r.getMessage()]
    assert [line.split(": ", 2)[1] for line in downs] == ["PERMISSION_DENIED (CERT_REVOKED)"] * 2
    assert downs[0].endswith("was revoked") and downs[1].endswith("is revoked")


async def test_a_revocation_reaches_another_hub_at_its_next_poll(pki: Pki, tmp_path: Path) -> None:
    first = await Hub.start(hub_settings(pki, tmp_path / "first"))
    try:
        second = await Hub.start(
            replace(
                hub_settings(pki, tmp_path / "second"),
                nats_url=first.nats_url,
                hub_id="second-hub",
                revocation_poll_interval=timedelta(seconds=1),
            )
        )
        try:
            channel, call = await open_stream(second, pki.node("node-a"), "node-a")
            async with channel:
                await revoke(first, pki, node_id="node-a")
                elapsed = await ended_by_revocation(call)
            await refused_as_revoked(second, pki.node("node-a"))
        finally:
            await second.stop()
    finally:
        await first.stop()
    # Within one poll interval (plus the time to act), far inside the 60 s objective.
    assert elapsed < 5.0


async def test_revoking_one_serial_ends_a_user_stream(hub: Hub, pki: Pki) -> None:
    viewer = pki.user("viewer")
    async with secure_aio_channel(hub.address, viewer) as channel:
        watch = fleet_pb2_grpc.FleetServiceStub(channel).WatchTelemetry(
            fleet_pb2.WatchTelemetryRequest()
        )
        await eventually(lambda: len(hub.trust.gate.calls) == 1)  # the watch is open
        response = await revoke(hub, pki, serial=serial_of(viewer).upper())
        assert list(response.revoked_serials) == [serial_of(viewer)]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in watch:
                pass
        assert reason_of(caught.value) == "CERT_REVOKED"
        with pytest.raises(grpc.aio.AioRpcError) as again:
            await fleet_pb2_grpc.FleetServiceStub(channel).ListNodes(fleet_pb2.ListNodesRequest())
        assert reason_of(again.value) == "CERT_REVOKED"
    # The operator, another certificate, is not affected.
    async with secure_aio_channel(hub.address, pki.user("operator")) as channel:
        await fleet_pb2_grpc.FleetServiceStub(channel).ListNodes(fleet_pb2.ListNodesRequest())


async def test_revoking_needs_an_admin_and_a_subject(hub: Hub, pki: Pki) -> None:
    async with secure_aio_channel(hub.address, pki.user("operator")) as channel:
        stub = enrollment_pb2_grpc.EnrollmentServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as low:
            await stub.RevokeCertificate(enrollment_pb2.RevokeCertificateRequest(node_id="node-a"))
        assert reason_of(low.value) == "ROLE_TOO_LOW"
    async with secure_aio_channel(hub.address, pki.user("admin")) as channel:
        stub = enrollment_pb2_grpc.EnrollmentServiceStub(channel)
        for request, reason in (
            (enrollment_pb2.RevokeCertificateRequest(serial="not-hex"), "INVALID_SERIAL"),
            (enrollment_pb2.RevokeCertificateRequest(node_id="Bad_Id"), "INVALID_NODE_ID"),
            (enrollment_pb2.RevokeCertificateRequest(), "NO_SUBJECT"),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.RevokeCertificate(request)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert reason_of(caught.value) == reason
    assert hub.revocations.nodes == {} and hub.revocations.serials == {}


async def node_on_nats(hub: Hub, tls: TlsFiles, node_id: str) -> tuple[Any, asyncio.Event]:
    """A node's NATS connection as its agent opens it, and an event set when it closes."""
    closed = asyncio.Event()

    async def on_closed() -> None:
        closed.set()

    async def on_error(exc: Exception) -> None:
        pass  # the server's last words when it closes the connection

    nc = await nats_tls.connect(
        hub.nats_url,
        tls,
        inbox_prefix=f"_INBOX_{node_id}",
        allow_reconnect=False,
        closed_cb=on_closed,
        error_cb=on_error,
    )
    return nc, closed


async def refused_by_nats(hub: Hub, tls: TlsFiles) -> None:
    with pytest.raises(Exception, match=r"(?i)authorization violation"):
        await nats_tls.connect(hub.nats_url, tls, allow_reconnect=False, max_reconnect_attempts=0)


async def test_revoking_a_node_closes_its_nats_connection_and_refuses_new_ones(
    hub: Hub, pki: Pki
) -> None:
    channel, _ = await open_stream(hub, pki.node("node-a"), "node-a")
    async with channel:
        nc, closed = await node_on_nats(hub, pki.node("node-a"), "node-a")
        try:
            started = time.monotonic()
            await revoke(hub, pki, node_id="node-a")
            await within(closed.wait(), REVOCATION_SLO_S)
            assert time.monotonic() - started < REVOCATION_SLO_S
        finally:
            await nc.close()
    await refused_by_nats(hub, pki.node("node-a"))


async def test_a_revocation_nats_could_not_apply_is_applied_at_the_next_poll(
    hub: Hub, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    channel, _ = await open_stream(hub, pki.node("node-a"), "node-a")
    async with channel:
        nc, closed = await node_on_nats(hub, pki.node("node-a"), "node-a")
        real = hub.nats_callout.close_revoked
        failures = [Unavailable("NATS is away", reason="NATS_UNAVAILABLE")]

        async def close_revoked() -> int:
            if failures:
                raise failures.pop()
            return await real()

        monkeypatch.setattr(hub.nats_callout, "close_revoked", close_revoked)
        try:
            await revoke(hub, pki, node_id="node-a")  # recorded; the RPC does not fail for it
            assert "node-a" in hub.revocations.nodes
            await refused_as_revoked(hub, pki.node("node-a"))  # the gate refuses at once
            await refused_by_nats(hub, pki.node("node-a"))  # and so does the callout
            assert not closed.is_set() and failures == []
            await hub.revocations.refresh()  # what the poll does
            await within(closed.wait())
        finally:
            await nc.close()
