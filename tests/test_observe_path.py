"""The observe path end to end: real agents (NVML replay) and raw agent streams against
a real hub with a real nats-server, over mTLS on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import nats.errors
import psutil
import pytest
from nats.aio.msg import Msg

import certs
from edge_agent.app import Agent
from edge_agent.identity import load_node_credentials
from edge_agent.settings import AgentSettings, LinkSettings, SamplingSettings
from hub.app import Hub
from hub.registry import OFFLINE, ONLINE
from sentinel import subjects
from sentinel.errors import ConfigError
from sentinel.rpc_errors import reason_of
from sentinel.tls import TlsFiles, channel_credentials
from sentinel.v1 import agent_pb2, agent_pb2_grpc, fleet_pb2, fleet_pb2_grpc, telemetry_pb2
from tests.conftest import (
    Pki,
    counter,
    eventually,
    hub_settings,
    nats_observer,
    spool_until,
    within,
)
from tests.test_metrics import scrape
from tests.test_pod_attribution import KubeletServer, pod

Channels = Callable[[TlsFiles], grpc.aio.Channel]
CAPTURE = json.loads(
    (Path(__file__).parents[1] / "edge_agent/data/h200-driver580.json").read_text()
)


def agent_settings(
    pki: Pki, hub: Hub, data_dir: Path, node_id: str = "node-a", **labels: str
) -> AgentSettings:
    return AgentSettings(
        certs_dir=pki.directory,
        data_dir=data_dir,
        node_id=node_id,
        labels=labels,
        link=LinkSettings(
            hub_address=hub.address,
            heartbeat_interval=timedelta(seconds=1),
            backoff_initial_s=0.05,
            backoff_max_s=0.5,
        ),
        sampling=SamplingSettings(
            batch_interval=timedelta(seconds=0.2),
            sample_interval=timedelta(seconds=0.05),
            nvml_replay="builtin:h200",
        ),
    )


@pytest.fixture
async def agent(pki: Pki, hub: Hub, tmp_path: Path) -> AsyncIterator[Agent]:
    started = await Agent.start(agent_settings(pki, hub, tmp_path / "agent", role="gpu"))
    try:
        yield started
    finally:
        await started.stop()


async def open_stream(
    channel: grpc.aio.Channel, node_id: str, boot_id: str = "b00t", **labels: str
) -> tuple[grpc.aio.StreamStreamCall, agent_pb2.HelloReply]:
    call = agent_pb2_grpc.AgentServiceStub(channel).Connect()
    await call.write(
        agent_pb2.ConnectRequest(
            hello=agent_pb2.AgentHello(node_id=node_id, boot_id=boot_id, labels=labels)
        )
    )
    reply = await within(call.read())
    assert isinstance(reply, agent_pb2.ConnectResponse)
    # An agent that holds no keyset and no policy is sent the hub's at once.
    for kind in ("keyset", "policy"):
        update = await within(call.read())
        assert isinstance(update, agent_pb2.ConnectResponse)
        assert update.WhichOneof("message") == kind
    return call, reply.hello_reply


async def send_batch(
    call: grpc.aio.StreamStreamCall, seq: int, boot_id: str = "b00t"
) -> agent_pb2.TelemetryAck:
    await call.write(
        agent_pb2.ConnectRequest(
            batch={"boot_id": boot_id, "seq": seq, "samples": [{"host": {"load1": 1.0}}]}
        )
    )
    response = await within(call.read())
    assert isinstance(response, agent_pb2.ConnectResponse)
    return response.ack


async def stream_count(hub: Hub, node_id: str) -> int:
    info = await hub.state.js.stream_info(
        subjects.TELEMETRY_STREAM, subjects_filter=subjects.telemetry_subject(node_id)
    )
    return int((info.state.subjects or {}).get(subjects.telemetry_subject(node_id), 0))


async def test_replay_gpu_samples_reach_get_node_with_the_capture_values(
    hub: Hub, agent: Agent, pki: Pki, channel_to: Channels
) -> None:
    await within(hub.registry.wait_for(lambda: counter(hub, "node-a", "batches_received") >= 3))
    stub = fleet_pb2_grpc.FleetServiceStub(channel_to(pki.user("admin")))
    node = (await stub.GetNode(fleet_pb2.GetNodeRequest(node_id="node-a"), timeout=10)).node
    assert node.state == ONLINE
    assert dict(node.labels) == {"role": "gpu"}
    query = CAPTURE["queries"]
    (gpu,) = node.gpus
    assert (gpu.name, gpu.uuid, gpu.memory_total_bytes) == (
        query["name"],
        query["uuid"],
        query["memory"]["total"],
    )
    assert node.host.gpu_backend.startswith("replay")
    assert node.host.gpu_driver_version == CAPTURE["system"]["driver"]
    trace = {
        (p["util"]["gpu"], p["power_mw"] / 1000, p["temp_gpu"], p["clock_sm"], p["memory"]["used"])
        for p in CAPTURE["trace_5hz"]
    }
    (metrics,) = node.latest_sample.gpus
    assert (
        metrics.utilization_gpu_percent,
        metrics.power_w,
        metrics.temperature_gpu_c,
        metrics.clock_sm_mhz,
        metrics.memory_used_bytes,
    ) in trace
    assert node.latest_sample.host.memory_total_bytes > 0
    assert node.counters.batches_received >= 3
    assert node.counters.duplicates_dropped == 0


async def test_hub_restart_keeps_the_registry_and_drops_a_resent_batch(
    pki: Pki, tmp_path: Path
) -> None:
    settings = hub_settings(pki, tmp_path / "hub")
    first = await Hub.start(settings)
    tls = pki.node("node-b")
    try:
        async with grpc.aio.secure_channel(first.address, channel_credentials(tls)) as channel:
            call, reply = await open_stream(channel, "node-b", role="trainer")
            assert reply.acked_seq == 0
            ack = await send_batch(call, 1)
            assert (ack.seq, ack.duplicate) == (1, False)
            call.cancel()
    finally:
        await first.stop()
    second = await Hub.start(settings)
    try:
        node = second.registry.get("node-b")
        assert node is not None and node.state == OFFLINE
        assert dict(node.labels) == {"role": "trainer"}
        async with grpc.aio.secure_channel(second.address, channel_credentials(tls)) as channel:
            call, reply = await open_stream(channel, "node-b")
            assert reply.acked_seq == 1
            ack = await send_batch(call, 1)
            assert (ack.seq, ack.duplicate) == (1, True)
            ack = await send_batch(call, 2)
            assert (ack.seq, ack.duplicate) == (2, False)
            call.cancel()
        node = second.registry.get("node-b")
        assert node is not None
        assert (node.counters.batches_received, node.counters.duplicates_dropped) == (2, 1)
        assert await stream_count(second, "node-b") == 2
    finally:
        await second.stop()


async def test_agent_keeps_its_batches_through_a_hub_outage(pki: Pki, tmp_path: Path) -> None:
    settings = hub_settings(pki, tmp_path / "hub")
    first = await Hub.start(settings)
    agent = await Agent.start(agent_settings(pki, first, tmp_path / "agent"))
    try:
        await within(
            first.registry.wait_for(lambda: counter(first, "node-a", "batches_received") >= 2)
        )
        await first.stop()
        # While the hub is away the agent keeps sampling into its spool.
        await within(spool_until(agent, lambda: len(agent.spool) >= 4))
        second = await Hub.start(replace(settings, listen=f"127.0.0.1:{first.port}"))
        try:
            backlog_end = agent.sequence.last_allocated
            await within(
                second.registry.wait_for(
                    lambda: counter(second, "node-a", "last_acked_seq") >= backlog_end
                )
            )
            await agent.stop()  # seals the partial batch and drains it
            assert len(agent.spool) == 0
            # Every batch the agent ever sealed is in the stream exactly once.
            assert await stream_count(second, "node-a") == agent.sequence.last_allocated
            node = second.registry.get("node-a")
            assert node is not None and node.counters.gaps_announced == 0
        finally:
            await second.stop()
    finally:
        await agent.stop()


async def test_node_online_and_offline_events_on_nats(hub: Hub, pki: Pki, tmp_path: Path) -> None:
    received: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    observer = await nats_observer(hub)

    async def collect(msg: Msg) -> None:
        received.put_nowait(json.loads(msg.data))

    await observer.subscribe("sentinel.events.node.>", cb=collect)
    try:
        agent = await Agent.start(agent_settings(pki, hub, tmp_path / "agent"))
        online = await within(received.get())
        await agent.stop()
        offline = await within(received.get())
    finally:
        await observer.close()
    assert isinstance(online, dict) and isinstance(offline, dict)
    assert online["type"] == "io.sentinel.node.online"
    assert online["specversion"] == "1.0"
    assert online["data"] == {
        "node_id": "node-a",
        "boot_id": agent.sequence.boot_id,
        "agent_version": "0.1.0",
    }
    assert offline["type"] == "io.sentinel.node.offline"
    assert offline["data"]["reason"] in {"stream_closed", "stream_cancelled"}  # type: ignore[index]


async def test_silent_node_goes_offline_after_the_threshold(
    hub: Hub, pki: Pki, channel_to: Channels
) -> None:
    silent, _ = await open_stream(channel_to(pki.node("node-c")), "node-c")
    chatty, _ = await open_stream(channel_to(pki.node("node-a")), "node-a")
    threshold = hub.settings.fleet.offline_after
    assert threshold == timedelta(seconds=15)
    later = datetime.now(UTC) + threshold + timedelta(seconds=1)
    await hub.registry.seen("node-a", later)  # node-a spoke just now, node-c 16 s ago
    assert await hub.registry.sweep(later, threshold) == ["node-c"]
    assert (_state(hub, "node-c"), _state(hub, "node-a")) == (OFFLINE, ONLINE)
    assert await hub.registry.sweep(later, threshold) == []  # already offline: once only
    # node-c was silent, not gone: its next message brings it back online.
    await silent.write(agent_pb2.ConnectRequest(heartbeat=agent_pb2.Heartbeat()))
    await within(hub.registry.wait_for(lambda: _state(hub, "node-c") == ONLINE))
    silent.cancel()
    chatty.cancel()


async def test_list_nodes_pages_and_selects_by_label(
    hub: Hub, pki: Pki, channel_to: Channels
) -> None:
    calls = []
    for node_id, zone in (("node-a", "a"), ("node-b", "b"), ("node-c", "a")):
        call, _ = await open_stream(channel_to(pki.node(node_id)), node_id, zone=zone, role="gpu")
        calls.append(call)
    stub = fleet_pb2_grpc.FleetServiceStub(channel_to(pki.user("viewer")))
    first = await stub.ListNodes(fleet_pb2.ListNodesRequest(page_size=2), timeout=10)
    second = await stub.ListNodes(
        fleet_pb2.ListNodesRequest(page_size=2, page_token=first.next_page_token), timeout=10
    )
    assert [n.node_id for n in first.nodes] == ["node-a", "node-b"]
    assert [n.node_id for n in second.nodes] == ["node-c"]
    assert second.next_page_token == ""
    assert first.total_size == 3
    selected = await stub.ListNodes(
        fleet_pb2.ListNodesRequest(label_selector="role=gpu,zone in (a)"), timeout=10
    )
    assert [n.node_id for n in selected.nodes] == ["node-a", "node-c"]
    for call in calls:
        call.cancel()


async def test_watch_telemetry_streams_accepted_batches(
    hub: Hub, pki: Pki, channel_to: Channels
) -> None:
    watch = fleet_pb2_grpc.FleetServiceStub(channel_to(pki.user("viewer"))).WatchTelemetry(
        fleet_pb2.WatchTelemetryRequest(node_id="node-b")
    )
    call, _ = await open_stream(channel_to(pki.node("node-b")), "node-b")
    # The watcher subscribes asynchronously: send until one arrives, acks keep us in step.
    seq = 0
    received = None
    while received is None:
        seq += 1
        await send_batch(call, seq)
        try:
            received = await asyncio.wait_for(watch.read(), 0.5)
        except TimeoutError:
            assert seq < 40, "no batch reached the watcher"
    assert received.batch.node_id == "node-b"
    assert received.batch.boot_id == "b00t"
    watch.cancel()
    call.cancel()


def test_node_id_flag_must_match_the_certificate(pki: Pki, tmp_path: Path) -> None:
    copied = tmp_path / "certs"
    shutil.copytree(pki.directory, copied)
    layout = certs.CertLayout(copied)
    # A certificate for node-a stored under node-x's name.
    shutil.copy(layout.node_cert("node-a"), layout.node_cert("node-x"))
    shutil.copy(layout.node_key("node-a"), layout.node_key("node-x"))
    with pytest.raises(ConfigError) as caught:
        load_node_credentials(copied, "node-x")
    assert caught.value.reason == "NODE_ID_MISMATCH"
    assert "does not match the certificate's node id 'node-a'" in str(caught.value)
    assert load_node_credentials(copied, "node-a").node_id == "node-a"


def _state(hub: Hub, node_id: str) -> int:
    node = hub.registry.get(node_id)
    return node.state if node else 0


async def test_a_batch_the_store_cannot_take_is_refused_not_acknowledged(
    pki: Pki, tmp_path: Path
) -> None:
    hub = await Hub.start(hub_settings(pki, tmp_path / "hub", store_timeout_s=1.0))
    try:
        async with grpc.aio.secure_channel(
            hub.address, channel_credentials(pki.node("node-a"))
        ) as channel:
            call, _ = await open_stream(channel, "node-a")
            assert (await send_batch(call, 1)).seq == 1
            assert hub._embedded is not None
            await hub._embedded.stop()  # JetStream goes away under the hub
            await call.write(agent_pb2.ConnectRequest(batch={"boot_id": "b00t", "seq": 2}))
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await within(call.read())
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert reason_of(caught.value) == "STORE_UNAVAILABLE"
        node = hub.registry.get("node-a")
        assert node is not None and node.counters.last_acked_seq == 1
    finally:
        await hub.stop()


async def test_spool_overflow_during_an_outage_is_announced_as_a_gap(
    pki: Pki, tmp_path: Path
) -> None:
    settings = hub_settings(pki, tmp_path / "hub")
    first = await Hub.start(settings)
    agent = await Agent.start(
        replace(agent_settings(pki, first, tmp_path / "agent"), spool_max_bytes=2048)
    )
    try:
        await within(
            first.registry.wait_for(lambda: counter(first, "node-a", "batches_received") >= 1)
        )
        await first.stop()
        await within(spool_until(agent, lambda: agent.spool.dropped_batches >= 3))
        assert agent.spool.bytes_on_disk() <= 2048  # the cap holds through the outage
        second = await Hub.start(replace(settings, listen=f"127.0.0.1:{first.port}"))
        gaps: asyncio.Queue[dict[str, object]] = asyncio.Queue()
        observer = await nats_observer(second)

        async def collect(msg: Msg) -> None:
            gaps.put_nowait(json.loads(msg.data))

        await observer.subscribe("sentinel.events.telemetry.gap.node-a", cb=collect)
        try:
            await within(
                second.registry.wait_for(lambda: counter(second, "node-a", "gaps_announced") >= 1)
            )
            event = await within(gaps.get())
            await agent.stop()
            node = second.registry.get("node-a")
            assert node is not None
            # Every batch is either in the stream or inside an announced gap: none vanished.
            in_stream = await stream_count(second, "node-a")
            assert in_stream + node.counters.batches_in_gaps == agent.sequence.last_allocated
            # The agent may have dropped batches the hub had stored (their acks were lost).
            assert 1 <= node.counters.batches_in_gaps <= agent.spool.dropped_batches
            assert isinstance(event, dict)
            assert event["type"] == "io.sentinel.telemetry.gap"
            assert event["data"]["reason"] == "overflow"  # type: ignore[index]
        finally:
            await observer.close()
            await second.stop()
    finally:
        await agent.stop()


async def test_a_hub_that_cannot_listen_says_so_and_leaves_nothing_running(
    pki: Pki, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        before = _nats_servers_under(tmp_path)
        with pytest.raises(ConfigError) as caught:
            await Hub.start(
                replace(hub_settings(pki, tmp_path / "hub"), listen=f"127.0.0.1:{port}")
            )
    assert caught.value.reason == "LISTEN_FAILED"
    assert str(caught.value).startswith(f"cannot listen on 127.0.0.1:{port}: ")
    after = _nats_servers_under(tmp_path)
    assert after <= before  # the embedded nats-server it started was stopped again


async def test_gpu_health_changes_become_events_with_their_cause(
    hub: Hub, pki: Pki, channel_to: Channels
) -> None:
    received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    observer = await nats_observer(hub)

    async def collect(msg: Msg) -> None:
        received.put_nowait(json.loads(msg.data))

    await observer.subscribe("sentinel.events.gpu.health_changed.node-b", cb=collect)
    await observer.flush()
    call, _ = await open_stream(channel_to(pki.node("node-b")), "node-b")
    healthy = {"uuid": "GPU-1", "health": {"state": "GPU_HEALTH_STATE_HEALTHY"}}
    failed = {
        "uuid": "GPU-1",
        "last_xid": 79,
        "health": {
            "state": "GPU_HEALTH_STATE_FAILED",
            "reasons": [
                {
                    "source": "xid",
                    "xid": 79,
                    "detail": "GPU has fallen off the bus",
                    "implies": "GPU_HEALTH_STATE_FAILED",
                }
            ],
        },
    }
    try:
        for seq, gpu in enumerate((healthy, healthy, failed, failed), start=1):
            await call.write(
                agent_pb2.ConnectRequest(
                    batch={"boot_id": "b00t", "seq": seq, "samples": [{"gpus": [gpu]}]}
                )
            )
            await within(call.read())
        event = await within(received.get())
    finally:
        call.cancel()
        await observer.close()
    assert event["type"] == "io.sentinel.gpu.health_changed"
    assert event["subject"] == "node-b"
    data = event["data"]
    assert (data["from_state"], data["to_state"], data["xid"], data["uuid"]) == (
        "healthy",
        "failed",
        79,
        "GPU-1",
    )
    assert data["reasons"] == [
        {"source": "xid", "xid": 79, "implies": "failed", "detail": "GPU has fallen off the bus"}
    ]
    assert received.empty()  # healthy->healthy and failed->failed published nothing


async def test_gpus_carry_the_pod_that_holds_them_to_the_hub_and_metrics(
    hub: Hub, pki: Pki, tmp_path: Path
) -> None:
    kubelet = KubeletServer(tmp_path / "kubelet.sock")
    kubelet.servicer.pods = [
        pod("trainer-0", "ml", "pytorch", ("nvidia.com/gpu", [CAPTURE["queries"]["uuid"]]))
    ]
    kubelet.start()
    settings = agent_settings(pki, hub, tmp_path / "agent")
    settings = replace(
        settings,
        metrics_listen="127.0.0.1:0",
        sampling=replace(settings.sampling, pod_resources_socket=kubelet.socket_path),
    )
    agent = await Agent.start(settings)
    try:
        await within(hub.registry.wait_for(lambda: _attributed(hub, "node-a")))
        assert agent.metrics_server is not None
        scraped = await asyncio.to_thread(scrape, agent.metrics_server.url)
    finally:
        await agent.stop()
        kubelet.stop()
    node = hub.registry.get("node-a")
    assert node is not None
    assert node.latest_sample.gpus[0].attribution == telemetry_pb2.GpuAttribution(
        namespace="ml", pod="trainer-0", container="pytorch"
    )
    ((labels, _),) = scraped.series("DCGM_FI_DEV_GPU_TEMP")
    assert (labels["pod"], labels["namespace"], labels["container"]) == (
        "trainer-0",
        "ml",
        "pytorch",
    )


def _attributed(hub: Hub, node_id: str) -> bool:
    node = hub.registry.get(node_id)
    return node is not None and any(g.attribution.pod for g in node.latest_sample.gpus)


async def test_a_batch_stored_but_never_acknowledged_is_not_stored_twice(
    hub: Hub, pki: Pki, channel_to: Channels
) -> None:
    # A hub killed between JetStream's PubAck and its KV write leaves a stored batch behind
    # that it never acknowledged; the agent's re-send may come after the dedup window,
    # which publishing without a Nats-Msg-Id stands in for here.
    stored = telemetry_pb2.TelemetryBatch(node_id="node-a", boot_id="b00t", seq=1)
    await hub.state.js.publish(subjects.telemetry_subject("node-a"), stored.SerializeToString())
    call, reply = await open_stream(channel_to(pki.node("node-a")), "node-a")
    assert reply.acked_seq == 1  # the agent may forget seq 1 at once
    ack = await send_batch(call, 1)
    assert (ack.seq, ack.duplicate) == (1, True)
    assert (await send_batch(call, 2)).duplicate is False
    call.cancel()
    assert await stream_count(hub, "node-a") == 2


def _nats_servers_under(directory: Path) -> set[int]:
    """nats-server processes whose configuration lies under `directory` (not others')."""
    return {
        p.pid
        for p in psutil.process_iter(["name", "cmdline"])
        if p.info["name"] == "nats-server" and str(directory) in " ".join(p.info["cmdline"] or ())
    }


@pytest.mark.parametrize(
    "failure", [asyncio.InvalidStateError("RPC already finished."), RuntimeError("a bug")]
)
async def test_a_session_that_fails_oddly_costs_one_session_not_the_link(
    agent: Agent, hub: Hub, failure: Exception
) -> None:
    await within(agent.link.connected.wait())
    sessions = agent.link.sessions
    real = agent.link._exchange
    failures = [failure]

    async def exchange(call: grpc.aio.StreamStreamCall, boot_id: str) -> None:
        if failures:
            raise failures.pop()
        await real(call, boot_id)

    agent.link._exchange = exchange  # type: ignore[method-assign]
    agent.link.rehello()  # ends the session; the next one fails, the one after works
    await eventually(lambda: agent.link.sessions >= sessions + 2 and agent.link.connected.is_set())
    assert not failures


@pytest.mark.parametrize(
    ("loop", "error"),
    [
        # nats-py's fetch answers a cancel on a closed connection with its own error.
        ("commands", nats.errors.ConnectionClosedError()),
        ("link", OSError("connection reset")),
    ],
)
async def test_a_cancel_turned_into_a_library_error_still_ends_the_retry_loop(
    agent: Agent, loop: str, error: Exception
) -> None:
    await within(agent.link.connected.wait())  # the hello reply names NATS
    await agent.stop()  # the agent's own tasks are done: run one of its loops again, alone
    owner = agent.commands if loop == "commands" else agent.link
    entered = asyncio.Event()
    eat_cancel = True

    async def session(*_: object) -> None:
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            if eat_cancel:
                raise error from None
            raise

    owner._session = session  # type: ignore[method-assign]
    task = asyncio.create_task(owner.run())
    await within(entered.wait())
    task.cancel()
    ended, _ = await asyncio.wait({task}, timeout=5)
    if not ended:  # the loop retried past its cancel: end it for good, then fail
        eat_cancel = False
        task.cancel()
        await asyncio.wait({task}, timeout=5)
    assert ended, f"the {loop} loop went on after it was cancelled"
    assert task.cancelled()
