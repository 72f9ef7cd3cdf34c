"""NATS decides who a client is through the hub's auth_callout: per certificate, serial and
revocation included, on every connect (THREATS 40), and a node's replies stay in its own
account (THREATS 41). Real hub, real nats-server over mutual TLS, real certificates."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

import nats.errors
import pytest
from cryptography import x509
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

import certs
from hub.app import Hub
from sentinel import nats_tls, subjects
from sentinel.errors import PermissionDenied
from sentinel.tls import TlsFiles
from tests.conftest import Pki, eventually, eventually_async, hub_settings, nats_admin, within
from tests.test_revocation import REVOCATION_SLO_S, open_stream, revoke, serial_of


def certificate_pair(pki: Pki, node_id: str) -> TlsFiles:
    """Issue a certificate for `node_id` and keep it (the next issue overwrites the files)."""
    cert, key = certs.issue_node_certificate(pki.directory, node_id)
    return TlsFiles(pki.layout.ca_cert.read_bytes(), cert.read_bytes(), key.read_bytes())


async def connect_node(hub: Hub, tls: TlsFiles, node_id: str, closed: asyncio.Event) -> NatsClient:
    async def on_closed() -> None:
        closed.set()

    async def on_error(exc: Exception) -> None:
        pass  # the server's last words when it closes the connection

    return await nats_tls.connect(
        hub.nats_url,
        tls,
        inbox_prefix=subjects.node_inbox_prefix(node_id),
        allow_reconnect=False,
        closed_cb=on_closed,
        error_cb=on_error,
    )


async def refused(hub: Hub, tls: TlsFiles) -> None:
    with pytest.raises(Exception, match=r"(?i)authorization violation"):
        await nats_tls.connect(hub.nats_url, tls, allow_reconnect=False, max_reconnect_attempts=0)


async def can_publish_results(nc: NatsClient, node_id: str) -> None:
    ack = await nc.jetstream(timeout=10).publish(subjects.result_subject(node_id), b"")
    assert ack.stream == subjects.RESULTS_STREAM


async def test_a_serial_revoked_stays_refused_across_the_nodes_hellos_and_hub_restarts(
    pki: Pki, tmp_path: Path
) -> None:
    # A thief holds the node's first certificate S1; the node itself renewed to S2.
    node = f"stolen-{secrets.token_hex(3)}"
    s1 = certificate_pair(pki, node)
    s2 = certificate_pair(pki, node)
    hub = await Hub.start(hub_settings(pki, tmp_path / "hub"))
    try:
        session, hello = await open_stream(hub, s2, node)  # the node, connected as itself
        thief_closed, node_closed = asyncio.Event(), asyncio.Event()
        thief = await connect_node(hub, s1, node, thief_closed)
        real = await connect_node(hub, s2, node, node_closed)
        try:
            started = time.monotonic()
            await revoke(hub, pki, serial=serial_of(s1))
            await within(thief_closed.wait(), REVOCATION_SLO_S)
            assert time.monotonic() - started < REVOCATION_SLO_S
            assert not node_closed.is_set()
            await can_publish_results(real, node)  # S2's connection is untouched
        finally:
            await thief.close()
            await real.close()
            hello.cancel()
            await session.close()
        await refused(hub, s1)
        channel, call = await open_stream(hub, s2, node)  # the node's next hello, with S2
        async with channel:
            await refused(hub, s1)
            call.cancel()
    finally:
        await hub.stop()
    restarted = await Hub.start(hub_settings(pki, tmp_path / "hub"))
    try:
        await refused(restarted, s1)
        channel, call = await open_stream(restarted, s2, node)
        async with channel:
            await refused(restarted, s1)
            nc = await connect_node(restarted, s2, node, asyncio.Event())
            await can_publish_results(nc, node)
            await nc.close()
            call.cancel()
    finally:
        await restarted.stop()


class Spy:
    def __init__(self) -> None:
        self.messages: list[Msg] = []

    async def on_message(self, message: Msg) -> None:
        self.messages.append(message)


async def test_a_nodes_reply_subjects_cannot_deliver_its_messages_elsewhere(
    hub: Hub, pki: Pki
) -> None:
    admin = await nats_admin(hub)
    channel, call = await open_stream(hub, pki.node("node-a"), "node-a")  # its consumer
    nc = await connect_node(hub, pki.node("node-a"), "node-a", asyncio.Event())
    spy = Spy()
    try:
        js = admin.jetstream()
        await admin.subscribe(subjects.AUDIT_SUBJECT, cb=spy.on_message)
        await admin.subscribe(subjects.command_subject("node-b"), cb=spy.on_message)
        await admin.flush()
        audit_before = (await js.stream_info(subjects.AUDIT_STREAM)).state.messages
        commands_before = (await js.stream_info(subjects.COMMANDS_STREAM)).state.messages
        results_before = (await js.stream_info(subjects.RESULTS_STREAM)).state.last_seq
        await js.publish(
            subjects.command_subject("node-a"),
            b"signed envelope for node-a",
            headers={"Nats-Msg-Id": f"{uuid.uuid4()}/node-a"},
        )
        consumer = subjects.command_consumer("node-a")
        pull = f"$JS.API.CONSUMER.MSG.NEXT.{subjects.COMMANDS_STREAM}.{consumer}"
        # Its own pull and its own result (allowed subjects) with foreign reply subjects.
        request = b'{"batch": 1, "expires": 10000000000}'
        await nc.publish(pull, request, reply=subjects.AUDIT_SUBJECT)
        await nc.publish(
            subjects.result_subject("node-a"), b"", reply=subjects.command_subject("node-b")
        )
        await nc.flush()

        async def stored() -> bool:
            state = (await js.stream_info(subjects.RESULTS_STREAM)).state
            return int(state.last_seq) > results_before

        await eventually_async(stored)  # the result was stored, so its PubAck went out
        # The command was not delivered elsewhere: the node's own pull still gets it.
        subscription = await nc.jetstream(timeout=10).pull_subscribe_bind(
            consumer, stream=subjects.COMMANDS_STREAM
        )
        [command] = await subscription.fetch(1, timeout=10)
        assert command.data == b"signed envelope for node-a"
        assert command.metadata.num_delivered == 1
        await admin.flush()
        assert spy.messages == []
        assert (await js.stream_info(subjects.AUDIT_STREAM)).state.messages == audit_before
        commands_after = (await js.stream_info(subjects.COMMANDS_STREAM)).state.messages
        assert commands_after == commands_before + 1  # only the command published above
    finally:
        await nc.close()
        await admin.close()
        call.cancel()
        await channel.close()


def client_tls(*pems: bytes) -> dict[str, Any]:
    return {"verified_chains": [[pem.decode() for pem in pems]]} if pems else {}


@pytest.mark.parametrize(
    ("who", "reason"),
    [
        ("nobody", "NO_CERTIFICATE"),
        ("rogue", "UNKNOWN_CA"),
        ("admin", "NOT_A_NATS_IDENTITY"),
        ("hub", "BAD_IDENTITY"),
    ],
)
async def test_the_callout_refuses_what_is_no_nats_identity(
    hub: Hub, pki: Pki, who: str, reason: str
) -> None:
    rogue = certs.CertLayout(pki.rogue)
    pem = {
        "nobody": b"",
        "rogue": rogue.user_cert(certs.NATS_ADMIN).read_bytes(),
        "admin": pki.user("admin").cert_pem,
        "hub": pki.layout.hub_cert.read_bytes(),
    }[who]
    with pytest.raises(PermissionDenied) as caught:
        hub.nats_callout.judge(client_tls(pem) if pem else {})
    assert caught.value.reason == reason


async def test_the_callout_grants_each_identity_its_rights(hub: Hub, pki: Pki) -> None:
    node = hub.nats_callout.judge(client_tls(pki.node("node-a").cert_pem))
    assert node.rights.account == "NODES"
    assert node.user_name == f"spiffe://sentinel.local/node/node-a#{serial_of(pki.node('node-a'))}"
    assert (
        node.expires
        == x509.load_pem_x509_certificate(pki.node("node-a").cert_pem).not_valid_after_utc
    )
    observer = hub.nats_callout.judge(client_tls(pki.user(certs.NATS_OBSERVER).cert_pem))
    assert (observer.rights.account, observer.rights.publish) == ("SENTINEL", ())
    claims = node.rights.claims()
    assert json.dumps(claims["sub"]) == json.dumps({"allow": ["_INBOX_node-a.>"]})
    assert (claims["subs"], claims["payload"]) == (64, -1)


async def test_nats_admits_nobody_while_no_hub_answers_its_callouts(hub: Hub, pki: Pki) -> None:
    await hub.nats_callout.stop()
    # nats-py either raises or (while the server still waits for the callout) returns a
    # client that is not connected; either way the server ends it at its auth timeout.
    try:
        nc = await nats_tls.connect(
            hub.nats_url,
            pki.node("node-a"),
            allow_reconnect=False,
            max_reconnect_attempts=0,
            connect_timeout=15,
        )
    except (nats.errors.Error, OSError, TimeoutError):
        pass
    else:
        assert not nc.is_connected
        await eventually(lambda: nc.is_closed)
        assert not nc.is_connected
    await hub.nats_callout.start()
    nc = await connect_node(hub, pki.node("node-a"), "node-a", asyncio.Event())
    await nc.close()
