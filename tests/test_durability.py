"""Telemetry durability across faults, with real processes: a hub killed with SIGKILL
under ten agents and restarted. Every batch must arrive exactly once (seq continuity on
`sentinel.telemetry.<node>`)."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import nats
import pytest

import certs
from edge_agent.app import Agent
from edge_agent.state import SequenceState
from hub.app import Hub
from sentinel import subjects
from sentinel.v1 import telemetry_pb2
from tests.conftest import (
    Pki,
    counter,
    eventually,
    nats_admin,
    nats_observer,
    nats_user,
    spool_until,
    within,
)
from tests.test_observe_path import agent_settings

BIN = Path(sys.executable).parent
AGENTS = 10


class HubProcess:
    """`sentinel hub` as a child process, restartable on the same port and data."""

    def __init__(self, pki: Pki, data_dir: Path) -> None:
        self.pki, self.data_dir = pki, data_dir
        self.address = "127.0.0.1:0"
        self.nats_url = ""
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            str(BIN / "sentinel"),
            "hub",
            "--certs",
            str(self.pki.directory),
            "--listen",
            self.address,
            "--data-dir",
            str(self.data_dir),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert self.process.stdout is not None
        words = (await within(self.process.stdout.readline())).decode().split()  # type: ignore[union-attr]
        self.address, self.nats_url = words[4], words[6].rstrip(")")

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()


@pytest.fixture
async def hub_process(pki: Pki, tmp_path: Path) -> AsyncIterator[HubProcess]:
    hub = HubProcess(pki, tmp_path / "hub")
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()


async def test_hub_sigkill_under_ten_agents_loses_and_duplicates_nothing(
    pki: Pki, hub_process: HubProcess, tmp_path: Path
) -> None:
    node_ids = [f"dur-{i}" for i in range(AGENTS)]
    for node_id in node_ids:
        certs.issue_node_certificate(pki.directory, node_id)
    agents = []
    try:
        for node_id in node_ids:
            settings = agent_settings(pki, hub_process, tmp_path / node_id, node_id=node_id)
            settings = replace(settings, sampling=replace(settings.sampling, nvml_replay=None))
            agents.append(await Agent.start(settings))
        await within(
            asyncio.gather(
                *(spool_until(a, lambda a=a: a.spool.acked_batches >= 3) for a in agents)
            )
        )
        await hub_process.kill()
        # 30 batches' worth of outage (0.2 s batches): every agent keeps spooling.
        await within(
            asyncio.gather(*(spool_until(a, lambda a=a: len(a.spool) >= 30) for a in agents)), 60
        )
        await hub_process.start()
        await within(
            asyncio.gather(
                *(
                    spool_until(a, lambda a=a: not len(a.spool) and a.link.connected.is_set())
                    for a in agents
                )
            ),
            60,
        )
    finally:
        for agent in agents:
            await agent.stop()
    observer = await nats_user(hub_process.nats_url, hub_process.pki.directory)
    try:
        js = observer.jetstream()
        for agent in agents:
            seqs = await _stream_seqs(js, agent.node_id)
            assert seqs == list(range(1, agent.sequence.last_allocated + 1)), agent.node_id
    finally:
        await observer.close()


async def _stream_seqs(js: nats.js.JetStreamContext, node_id: str) -> list[int]:
    """Every batch seq stored for a node, in stream order."""
    subscription = await js.subscribe(subjects.telemetry_subject(node_id), ordered_consumer=True)
    info = await js.stream_info(
        subjects.TELEMETRY_STREAM, subjects_filter=subjects.telemetry_subject(node_id)
    )
    expected = int((info.state.subjects or {}).get(subjects.telemetry_subject(node_id), 0))
    seqs = []
    for _ in range(expected):
        msg = await subscription.next_msg(timeout=10)
        seqs.append(telemetry_pb2.TelemetryBatch.FromString(msg.data).seq)
    await subscription.unsubscribe()
    return seqs


async def test_agent_killed_twenty_times_loses_no_spooled_batch(
    pki: Pki, hub: Hub, tmp_path: Path
) -> None:
    certs.issue_node_certificate(pki.directory, "kill-1")
    data_dir = tmp_path / "agent"
    rng = random.Random(2026)
    for round_ in range(20):
        if round_ % 2:
            # The hub is unreachable: everything sealed stays in the spool, then SIGKILL.
            agent = await agent_process(pki.directory, f"127.0.0.1:{_closed_port()}", data_dir)
            target = _allocated(data_dir) + rng.randint(2, 6)
            await eventually(lambda t=target: _allocated(data_dir) >= t)
        else:
            # Connected: SIGKILL at a random moment of the sample/seal/send/ack cycle.
            agent = await agent_process(pki.directory, hub.address, data_dir)
            target = counter(hub, "kill-1", "last_acked_seq") + rng.randint(1, 4)
            await within(
                hub.registry.wait_for(
                    lambda t=target: counter(hub, "kill-1", "last_acked_seq") >= t
                )
            )
            await asyncio.sleep(rng.uniform(0, 0.15))  # a random kill point, not a wait
        agent.send_signal(signal.SIGKILL)
        await agent.wait()
    agent = await agent_process(pki.directory, hub.address, data_dir)
    backlog = _allocated(data_dir)
    await within(
        hub.registry.wait_for(lambda: counter(hub, "kill-1", "last_acked_seq") >= backlog + 2)
    )
    agent.send_signal(signal.SIGTERM)  # seals, drains, exits
    assert await within(agent.wait()) == 0
    observer = await nats_admin(hub)
    try:
        seqs = await _stream_seqs(observer.jetstream(), "kill-1")
    finally:
        await observer.close()
    assert seqs == list(range(1, _allocated(data_dir) + 1))  # nothing lost, nothing twice
    node = hub.registry.get("kill-1")
    assert node is not None and node.counters.gaps_announced == 0


def _allocated(data_dir: Path) -> int:
    return SequenceState.open(data_dir).last_allocated if data_dir.exists() else 0


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def agent_process(
    certs_dir: Path, hub_address: str, data_dir: Path, node_id: str = "kill-1"
) -> asyncio.subprocess.Process:
    """A `sentinel agent run` (10 batches a second) that reached its running state (no crash
    loop)."""
    process = await asyncio.create_subprocess_exec(
        str(BIN / "sentinel"),
        "agent",
        "run",
        "--hub",
        hub_address,
        "--certs",
        str(certs_dir),
        "--data-dir",
        str(data_dir),
        "--node-id",
        node_id,
        "--interval",
        "100ms",
        "--sample-interval",
        "50ms",
        "--metrics",
        "",
        "--log-level",
        "warning",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    line = await within(process.stdout.readline())
    assert isinstance(line, bytes) and line.startswith(f"sentinel agent {node_id}".encode()), line
    return process


async def test_bytes_flipped_in_the_spool_are_skipped_announced_and_counted(
    pki: Pki, hub: Hub, tmp_path: Path
) -> None:
    certs.issue_node_certificate(pki.directory, "flip-1")
    data_dir = tmp_path / "agent"
    offline = agent_settings(pki, hub, data_dir, node_id="flip-1")
    offline = replace(
        offline, link=replace(offline.link, hub_address=f"127.0.0.1:{_closed_port()}")
    )
    agent = await Agent.start(offline)
    await within(spool_until(agent, lambda: len(agent.spool) >= 8))
    await agent.stop()
    segments = sorted((data_dir / "spool").glob("*.seg"))
    middle = segments[0].read_bytes()
    position = len(middle) // 2
    segments[0].write_bytes(
        middle[:position] + bytes([middle[position] ^ 0xFF]) + middle[position + 1 :]
    )
    events = await nats_observer(hub)
    gap_events = await events.subscribe("sentinel.events.telemetry.gap.flip-1")
    await events.flush()
    agent = await Agent.start(replace(offline, link=replace(offline.link, hub_address=hub.address)))
    try:
        assert agent.spool.corrupt_records == 1
        gap_event = json.loads((await gap_events.next_msg(timeout=20)).data)
        assert gap_event["data"]["reason"] == "corrupt"
        backlog = agent.sequence.last_allocated
        await within(
            hub.registry.wait_for(lambda: counter(hub, "flip-1", "last_acked_seq") >= backlog)
        )
    finally:
        await agent.stop()
        await events.close()
    node = hub.registry.get("flip-1")
    assert node is not None
    observer = await nats_admin(hub)
    try:
        stored = await _stream_seqs(observer.jetstream(), "flip-1")
    finally:
        await observer.close()
    # Each seq is stored once or inside the corrupt gap: never both, never neither.
    assert len(stored) == len(set(stored))
    assert len(stored) + node.counters.batches_in_gaps == agent.sequence.last_allocated
    assert node.counters.batches_in_gaps >= 1
