"""NATS is locked down: mutual TLS from the project CA, and every identity may touch only
its own subjects. Real hub, real nats-server, real TLS: each refusal is a permissions
violation the client is told of, and nothing reaches a stream or another node."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import ssl
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import nats
import nats.errors
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

import certs
from cli.main import main
from hub.app import Hub
from hub.embedded_nats import EmbeddedNats, NatsTls
from hub.nats_access import HUB_ACCOUNT, callout_issuer, storage_limit_bytes
from hub.storage_budget import StorageBudget
from sentinel import nats_tls, subjects
from sentinel.tls import TlsFiles, secure_aio_channel
from tests.conftest import WAIT_S, Pki, hub_settings, nats_admin, nats_observer, within
from tests.test_observe_path import open_stream

Channels = Callable[[TlsFiles], grpc.aio.Channel]
FAILS = (OSError, TimeoutError, nats.errors.Error)


class Violations:
    """The errors nats-server sent one client (nats-py hands them to its error callback)."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.changed = asyncio.Event()

    async def on_error(self, exc: Exception) -> None:
        self.messages.append(str(exc))
        self.changed.set()

    async def wait_for(self, operation: str, subject: str) -> None:
        """Until the server refused `operation` ("publish" or "subscription") on `subject`."""
        # nats-py lower-cases the server's error line, subject included.
        wanted = f'permissions violation for {operation} to "{subject}"'.lower()
        async with asyncio.timeout(WAIT_S):
            while not any(wanted in message for message in self.messages):
                self.changed.clear()
                await self.changed.wait()


class Inbox:
    """Every message one subscription receives."""

    def __init__(self) -> None:
        self.messages: list[Msg] = []
        self.arrived = asyncio.Event()

    async def on_message(self, message: Msg) -> None:
        self.messages.append(message)
        self.arrived.set()


async def as_node(
    hub: Hub, pki: Pki, node_id: str, violations: Violations, **options: Any
) -> NatsClient:
    """A node's connection as its agent makes it: its certificate, its own inbox prefix."""
    return await nats_tls.connect(
        hub.nats_url,
        pki.node(node_id),
        inbox_prefix=subjects.node_inbox_prefix(node_id),
        error_cb=violations.on_error,
        allow_reconnect=False,
        **options,
    )


async def cannot_connect(url: str, tls: ssl.SSLContext | None) -> None:
    with pytest.raises(FAILS):
        async with asyncio.timeout(WAIT_S):
            await nats.connect(
                url, tls=tls, allow_reconnect=False, connect_timeout=5, max_reconnect_attempts=0
            )


@pytest.fixture
async def admin(hub: Hub) -> AsyncIterator[NatsClient]:
    nc = await nats_admin(hub)
    yield nc
    await nc.close()


@pytest.fixture
async def two_nodes(hub: Hub, pki: Pki, channel_to: Channels) -> AsyncIterator[None]:
    """node-a and node-b said hello: each has its NATS rights and its consumer."""
    calls = [(await open_stream(channel_to(pki.node(n)), n))[0] for n in ("node-a", "node-b")]
    yield
    for call in calls:
        call.cancel()


async def stream_messages(admin: NatsClient, stream: str) -> int:
    return int((await admin.jetstream().stream_info(stream)).state.messages)


async def test_a_client_without_a_certificate_is_refused(hub: Hub, pki: Pki) -> None:
    no_cert = ssl.create_default_context(cadata=pki.node("node-a").ca_pem.decode())
    await cannot_connect(hub.nats_url, no_cert)


async def test_a_certificate_from_another_ca_is_refused_even_with_a_known_name(
    hub: Hub, pki: Pki
) -> None:
    # The rogue CA has the same trust domain: its nats-admin carries the very URI SAN
    # that maps to every right, so only the chain check keeps it out.
    rogue = certs.CertLayout(pki.rogue)
    files = TlsFiles(
        pki.layout.ca_cert.read_bytes(),
        rogue.user_cert(certs.NATS_ADMIN).read_bytes(),
        rogue.user_key(certs.NATS_ADMIN).read_bytes(),
    )
    await cannot_connect(hub.nats_url, nats_tls.client_ssl_context(files))


async def test_a_project_certificate_that_maps_to_no_user_is_refused(hub: Hub, pki: Pki) -> None:
    # The operator's own gRPC identity is not a NATS identity.
    await cannot_connect(hub.nats_url, nats_tls.client_ssl_context(pki.user("admin")))


async def test_plain_nats_to_the_tls_server_is_refused(hub: Hub) -> None:
    host, port = hub.nats_url.removeprefix(nats_tls.TLS_SCHEME).rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        info = json.loads((await within(reader.readline())).removeprefix(b"INFO "))
        assert info["tls_required"] and info["tls_verify"]
        writer.write(b'CONNECT {"verbose":false}\r\nSUB sentinel.cmd.node-a 1\r\nPING\r\n')
        await writer.drain()
        answer = await within(reader.read(4096))
    finally:
        writer.close()
    assert b"PONG" not in answer  # whatever it says, it never takes a plain-text command
    assert answer == b"" or answer.startswith(b"-ERR")


async def test_a_node_cannot_read_another_nodes_commands(
    hub: Hub, pki: Pki, two_nodes: None, admin: NatsClient
) -> None:
    violations = Violations()
    nc = await as_node(hub, pki, "node-a", violations)
    spy = Inbox()
    try:
        for subject in (
            "sentinel.cmd.node-b",
            "sentinel.cmd.>",
            "_INBOX.>",
            "_INBOX_node-b.>",
            ">",
        ):
            await nc.subscribe(subject, cb=spy.on_message)
            await violations.wait_for("subscription", subject)
        # Pull from node-b's consumer, asking for the reply in node-a's own inbox.
        pull = f"$JS.API.CONSUMER.MSG.NEXT.{subjects.COMMANDS_STREAM}.agent-node-b"
        reply = f"{subjects.node_inbox_prefix('node-a')}.steal"
        await nc.subscribe(reply, cb=spy.on_message)
        await nc.publish(pull, b'{"batch": 1}', reply=reply)
        await violations.wait_for("publish", pull)
        await admin.jetstream().publish(
            subjects.command_subject("node-b"),
            b"for node-b only",
            headers={"Nats-Msg-Id": f"{uuid.uuid4()}/node-b"},
        )
        await nc.flush()  # anything routed to node-a would have arrived before this PONG
        assert spy.messages == []
        consumer = await admin.jetstream().consumer_info(subjects.COMMANDS_STREAM, "agent-node-b")
        assert consumer.delivered.stream_seq == 0 and consumer.num_pending == 1
    finally:
        await nc.close()


async def test_a_node_cannot_publish_for_another_node_nor_commands(
    hub: Hub, pki: Pki, two_nodes: None, admin: NatsClient
) -> None:
    violations = Violations()
    nc = await as_node(hub, pki, "node-a", violations)
    streams = (subjects.RESULTS_STREAM, subjects.EVENTS_STREAM, subjects.COMMANDS_STREAM)
    before = [await stream_messages(admin, s) for s in streams]
    try:
        for subject in (
            subjects.result_subject("node-b"),
            subjects.event_subject("command", "executed", "node-b"),
            subjects.node_audit_subject("node-b"),
            subjects.command_subject("node-a"),
            subjects.command_subject("node-b"),
            subjects.telemetry_subject("node-a"),
            f"$JS.ACK.{subjects.COMMANDS_STREAM}.agent-node-b.1.1.1.0.0",
        ):
            await nc.publish(subject, b"forged")
            await violations.wait_for("publish", subject)
        assert [await stream_messages(admin, s) for s in streams] == before
    finally:
        await nc.close()


async def test_a_node_cannot_use_the_jetstream_api_beyond_its_consumer(
    hub: Hub, pki: Pki, two_nodes: None, admin: NatsClient
) -> None:
    violations = Violations()
    nc = await as_node(hub, pki, "node-a", violations)
    replies = Inbox()
    reply = f"{subjects.node_inbox_prefix('node-a')}.api"
    await nc.subscribe(reply, cb=replies.on_message)
    commands, consumer = subjects.COMMANDS_STREAM, subjects.command_consumer("node-a")
    try:
        for subject in (
            "$JS.API.INFO",
            f"$JS.API.STREAM.INFO.{commands}",
            f"$JS.API.STREAM.DELETE.{commands}",
            f"$JS.API.STREAM.PURGE.{commands}",
            f"$JS.API.STREAM.MSG.GET.{commands}",
            f"$JS.API.CONSUMER.CREATE.{commands}",
            f"$JS.API.CONSUMER.CREATE.{commands}.spy.sentinel.cmd.node-b",
            f"$JS.API.CONSUMER.DURABLE.CREATE.{commands}.spy",
            f"$JS.API.CONSUMER.INFO.{commands}.agent-node-b",
            f"$JS.API.CONSUMER.DELETE.{commands}.agent-node-b",
            f"$JS.API.CONSUMER.DELETE.{commands}.{consumer}",  # not even its own
            f"$JS.API.DIRECT.GET.KV_{subjects.NODES_BUCKET}",
            f"$JS.API.STREAM.MSG.GET.KV_{subjects.KEYS_BUCKET}",
            f"$KV.{subjects.NODES_BUCKET}.node-b",
        ):
            await nc.publish(subject, b"{}", reply=reply)
            await violations.wait_for("publish", subject)
        await nc.flush()
        assert replies.messages == []
        assert await stream_messages(admin, commands) >= 0  # the stream is still there
        js = admin.jetstream()
        assert (await js.consumer_info(commands, "agent-node-b")).name == "agent-node-b"
        assert (await js.consumer_info(commands, consumer)).name == consumer
    finally:
        await nc.close()


async def test_a_node_receives_acks_and_answers_its_own_commands(
    hub: Hub, pki: Pki, two_nodes: None, admin: NatsClient
) -> None:
    violations = Violations()
    nc = await as_node(hub, pki, "node-a", violations)
    try:
        await admin.jetstream().publish(
            subjects.command_subject("node-a"),
            b"for node-a",
            headers={"Nats-Msg-Id": f"{uuid.uuid4()}/node-a"},
        )
        js = nc.jetstream(timeout=WAIT_S)
        subscription = await js.pull_subscribe_bind(
            subjects.command_consumer("node-a"), stream=subjects.COMMANDS_STREAM
        )
        [message] = await subscription.fetch(1, timeout=WAIT_S)
        assert message.data == b"for node-a"
        await message.in_progress()
        await message.ack()
        event = subjects.event_subject("policy", "safe_mode", "node-a")
        assert (await js.publish(event, b"{}")).stream == subjects.EVENTS_STREAM
        # A result with no command behind it: the hub's reader skips it.
        ack = await js.publish(
            subjects.result_subject("node-a"), b"", stream=subjects.RESULTS_STREAM
        )
        assert ack.stream == subjects.RESULTS_STREAM
        await nc.publish(subjects.node_audit_subject("node-a"), b"audit line")
        await nc.flush()
        info = await admin.jetstream().consumer_info(
            subjects.COMMANDS_STREAM, subjects.command_consumer("node-a")
        )
        assert info.ack_floor.stream_seq == message.metadata.sequence.stream
        assert violations.messages == []
    finally:
        await nc.close()


async def test_the_observer_reads_events_and_telemetry_only(hub: Hub, admin: NatsClient) -> None:
    violations = Violations()
    observer = await nats_observer(hub, error_cb=violations.on_error, allow_reconnect=False)
    events, telemetry, spy = Inbox(), Inbox(), Inbox()
    try:
        await observer.subscribe("sentinel.events.>", cb=events.on_message)
        await observer.subscribe("sentinel.telemetry.>", cb=telemetry.on_message)
        for subject in ("sentinel.cmd.>", "sentinel.results.>", "$KV.>", "_INBOX.>"):
            await observer.subscribe(subject, cb=spy.on_message)
            await violations.wait_for("subscription", subject)
        await observer.flush()
        await admin.publish(subjects.event_subject("node", "test", "node-a"), b"{}")
        await admin.publish(subjects.telemetry_subject("node-a"), b"batch")
        await within(events.arrived.wait())
        await within(telemetry.arrived.wait())
        for subject in (subjects.event_subject("node", "test", "node-a"), "$JS.API.INFO"):
            await observer.publish(subject, b"{}")
            await violations.wait_for("publish", subject)
        await observer.flush()
        assert len(events.messages) == 1 and spy.messages == []
    finally:
        await observer.close()


async def test_a_node_certified_later_connects_without_a_nats_restart(
    hub: Hub, pki: Pki, channel_to: Channels
) -> None:
    # NATS asks the hub's callout about every connect: a certificate the CA issued after
    # the server started is judged like any other, with no configuration to rewrite.
    assert hub.nats_callout is not None
    late = f"late-{secrets.token_hex(3)}"
    certs.issue_node_certificate(pki.directory, late)  # after the hub started
    config = (hub.settings.data_dir / "nats-server.conf").read_text()
    violations = Violations()
    nc = await as_node(hub, pki, late, violations)
    try:
        call, reply = await open_stream(channel_to(pki.node(late)), late)  # creates its consumer
        assert reply.nats_url == hub.nats_url
        subscription = await nc.jetstream().pull_subscribe_bind(
            subjects.command_consumer(late), stream=subjects.COMMANDS_STREAM
        )
        with pytest.raises(nats.errors.TimeoutError):
            await subscription.fetch(1, timeout=0.2)  # its consumer exists, and is empty
        assert violations.messages == []
        call.cancel()
    finally:
        await nc.close()
    assert late not in config
    assert (hub.settings.data_dir / "nats-server.conf").read_text() == config


async def test_a_hub_on_an_unauthenticated_nats_works_and_warns(
    pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="hub.nats_access")
    server = await EmbeddedNats.start(tmp_path / "nats")  # a user's own, open NATS
    assert server.url.startswith("nats://")
    try:
        hub = await Hub.start(replace(hub_settings(pki, tmp_path / "hub"), nats_url=server.url))
        channel = secure_aio_channel(hub.address, pki.node("node-a"))
        try:
            warnings = [r.getMessage() for r in caplog.records if r.name == "hub.nats_access"]
            assert warnings == [
                f"NATS at {server.url} is not authenticated: every client on the network can "
                "read commands and publish results; use the embedded NATS or a tls:// URL"
            ]
            call, reply = await open_stream(channel, "node-a")
            assert reply.nats_url == server.url
            anyone = await nats.connect(server.url)
            consumer = subjects.command_consumer("node-a")
            info = await anyone.jetstream().consumer_info(subjects.COMMANDS_STREAM, consumer)
            assert info.name == consumer
            await anyone.close()
            call.cancel()
        finally:
            await channel.close()
            await hub.stop()
    finally:
        await server.stop()


async def test_a_hub_on_another_tls_nats_configured_for_sentinel_serves_its_callout(
    pki: Pki,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # What an operator configures on their own NATS (`sentinel certs nats-config`): the
    # accounts and the callout naming the hub's key; the hub judges its clients.
    caplog.set_level(logging.WARNING, logger="hub.nats_access")
    layout = pki.layout
    assert main(["certs", "nats-config", "--dir", str(pki.directory)]) == 0
    printed = capsys.readouterr().out
    assert callout_issuer(layout) in printed and "auth_callout" in printed
    server = await EmbeddedNats.start(
        tmp_path / "nats",
        tls=NatsTls(layout.nats_server_cert, layout.nats_server_key, layout.ca_cert),
        access=printed,
        account=HUB_ACCOUNT,
        max_file_store_bytes=storage_limit_bytes(StorageBudget()),
    )
    try:
        hub = await Hub.start(replace(hub_settings(pki, tmp_path / "hub"), nats_url=server.url))
        try:
            assert hub.state.nc.is_connected and hub.nats_url == server.url
            assert [r for r in caplog.records if r.name == "hub.nats_access"] == []
            violations = Violations()
            nc = await as_node(hub, pki, "node-a", violations)
            await nc.publish(subjects.result_subject("node-b"), b"forged")
            await violations.wait_for("publish", subjects.result_subject("node-b"))
            await nc.close()
            await cannot_connect(hub.nats_url, nats_tls.client_ssl_context(pki.user("admin")))
        finally:
            await hub.stop()
    finally:
        await server.stop()


async def test_a_hub_on_a_tls_nats_without_sentinels_access_control_warns(
    pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="hub.nats_access")
    layout = pki.layout
    server = await EmbeddedNats.start(  # mutual TLS, and whatever else its operator chose
        tmp_path / "nats",
        tls=NatsTls(layout.nats_server_cert, layout.nats_server_key, layout.ca_cert),
    )
    try:
        hub = await Hub.start(replace(hub_settings(pki, tmp_path / "hub"), nats_url=server.url))
        try:
            assert hub.state.nc.is_connected
            [warning] = [r.getMessage() for r in caplog.records if r.name == "hub.nats_access"]
            assert warning.startswith(
                f"NATS at {server.url} does not run Sentinel's access control (the hub is "
                "in account $G, not SENTINEL): revoked certificates are not refused there"
            )
        finally:
            await hub.stop()
    finally:
        await server.stop()
