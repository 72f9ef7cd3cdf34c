"""Shared fixtures: a real PKI in tmp_path, a real hub (embedded nats-server, mTLS on
127.0.0.1:0), clients with each identity, and raw agent streams."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

import certs
from edge_agent.app import Agent
from hub.app import Hub
from hub.settings import FleetSettings, HubSettings
from sentinel import nats_tls
from sentinel.tls import TlsFiles, secure_aio_channel

WAIT_S = 20.0


@dataclass(frozen=True)
class Pki:
    directory: Path
    rogue: Path

    @property
    def layout(self) -> certs.CertLayout:
        return certs.CertLayout(self.directory)

    def user(self, name: str) -> TlsFiles:
        layout = self.layout
        return TlsFiles.load(layout.ca_cert, layout.user_cert(name), layout.user_key(name))

    def node(self, node_id: str) -> TlsFiles:
        layout = self.layout
        return TlsFiles.load(layout.ca_cert, layout.node_cert(node_id), layout.node_key(node_id))

    def rogue_admin(self) -> TlsFiles:
        rogue = certs.CertLayout(self.rogue)
        # Trusts the real CA, presents a certificate from another CA.
        return TlsFiles.load(self.layout.ca_cert, rogue.user_cert("admin"), rogue.user_key("admin"))


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    base = tmp_path_factory.mktemp("pki")
    directory, rogue = base / "certs", base / "rogue"
    certs.init_ca(directory)
    for node_id in ("node-a", "node-b", "node-c"):
        certs.issue_node_certificate(directory, node_id)
    for name, role in (("viewer", "viewer"), ("operator", "operator")):
        certs.issue_user_certificate(directory, name, role)
    certs.init_ca(rogue)
    return Pki(directory, rogue)


async def nats_user(
    url: str, certs_dir: Path, name: str = certs.NATS_ADMIN, **options: Any
) -> NatsClient:
    """A client of a hub's NATS as one of the fixed NATS identities: `nats-admin` (every
    right) unless `name` says `nats-observer`."""
    layout = certs.CertLayout(certs_dir)
    tls = TlsFiles.load(layout.ca_cert, layout.user_cert(name), layout.user_key(name))
    return await nats_tls.connect(url, tls, **options)


async def nats_admin(hub: Hub, **options: Any) -> NatsClient:
    return await nats_user(hub.nats_url, hub.settings.certs_dir, **options)


async def nats_observer(hub: Hub, **options: Any) -> NatsClient:
    return await nats_user(hub.nats_url, hub.settings.certs_dir, certs.NATS_OBSERVER, **options)


def hub_settings(pki: Pki, data_dir: Path, **fleet: Any) -> HubSettings:
    return HubSettings(
        certs_dir=pki.directory,
        listen="127.0.0.1:0",
        data_dir=data_dir,
        hub_id="test-hub",
        fleet=FleetSettings(**fleet),
    )


@pytest.fixture
async def hub(pki: Pki, tmp_path: Path) -> AsyncIterator[Hub]:
    started = await Hub.start(hub_settings(pki, tmp_path / "hub"))
    try:
        yield started
    finally:
        await started.stop()


@pytest.fixture
async def channel_to(hub: Hub) -> AsyncIterator[Callable[[TlsFiles], grpc.aio.Channel]]:
    opened: list[grpc.aio.Channel] = []

    def open_channel(tls: TlsFiles) -> grpc.aio.Channel:
        channel = secure_aio_channel(hub.address, tls)
        opened.append(channel)
        return channel

    yield open_channel
    for channel in opened:
        await channel.close()


def counter(hub: Hub, node_id: str, name: str) -> int:
    """One of a node's telemetry counters as the hub holds it (0 for an unknown node)."""
    node = hub.registry.get(node_id)
    return int(getattr(node.counters, name)) if node else 0


async def spool_until(agent: Agent, predicate: Callable[[], bool]) -> None:
    """Return once `predicate()` holds; re-checked after every change to the agent's spool."""
    while not predicate():
        agent.spool.changed.clear()
        await agent.spool.changed.wait()


async def eventually(
    predicate: Callable[[], bool], timeout_s: float = WAIT_S, poll_s: float = 0.02
) -> None:
    """Wait, with a deadline, until `predicate()` holds, for state that cannot notify this
    process (another process's files): polled every `poll_s`, never a fixed sleep."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(poll_s)


async def eventually_async(
    predicate: Callable[[], Awaitable[bool]], timeout_s: float = WAIT_S, poll_s: float = 0.02
) -> None:
    """`eventually` for a condition only a request can read (a server's state)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(poll_s)


async def within(awaitable: object, timeout_s: float = WAIT_S) -> object:
    return await asyncio.wait_for(awaitable, timeout_s)  # type: ignore[arg-type]


async def consumer_settled(js: JetStreamContext, stream: str, consumer: str) -> None:
    """Return once a durable consumer has taken (and acknowledged) everything published so
    far; polled with a deadline, since JetStream does not notify a bystander."""
    async with asyncio.timeout(WAIT_S):
        while True:
            info = await js.consumer_info(stream, consumer)
            if info.num_pending == 0 and info.num_ack_pending == 0:
                return
            await asyncio.sleep(0.05)
