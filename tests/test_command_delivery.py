"""Delivery and at-most-once across failures: fan-out to many agents, agents that are
away at issue time, `kill -9` of an agent (replays must still be caught, and a command
cut off mid-execution is INTERRUPTED, never run twice), key rotation, a hub restart."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

import certs
from edge_agent.app import Agent
from hub.app import Hub
from sentinel.durations import from_timestamp, to_proto_duration
from sentinel.errors import ConfigError
from sentinel.rpc_errors import reason_of
from sentinel.tls import secure_aio_channel
from sentinel.v1 import command_pb2, command_pb2_grpc, keys_pb2, keys_pb2_grpc
from tests.command_helpers import (
    UNIT,
    EventLog,
    calls,
    command_signer,
    event_log,
    open_policy,
    payload,
    publish,
    quiet_agent_settings,
    recording_systemctl,
    sign,
    started,
)
from tests.conftest import Pki, eventually, hub_settings, within
from tests.test_commands import finished, issue, restart

S = command_pb2
BIN = Path(sys.executable).parent
FANOUT = 20


class AgentProcess:
    """`sentinel agent run` as a child process, so it can be killed with SIGKILL."""

    def __init__(self, pki: Pki, hub: Hub, data_dir: Path, node_id: str, systemctl: Path) -> None:
        self.argv = [
            str(BIN / "sentinel"), "agent", "run",
            "--hub", hub.address, "--certs", str(pki.directory), "--data-dir", str(data_dir),
            "--node-id", node_id, "--metrics", "", "--interval", "5s", "--sample-interval", "5s",
            "--allow-action", "node.systemd.restart", "--systemctl", str(systemctl),
            "--systemd-unit", UNIT,
        ]  # fmt: skip
        self.process: asyncio.subprocess.Process | None = None
        self.hub = hub
        self.policy_file = data_dir / "policy.bin"

    async def start(self) -> None:
        await open_policy(self.hub)
        self.process = await asyncio.create_subprocess_exec(
            *self.argv, stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL
        )
        assert self.process.stderr is not None
        try:
            async with asyncio.timeout(30):
                while b"receiving commands" not in (line := await self.process.stderr.readline()):
                    if not line:
                        raise AssertionError("the agent exited before it received commands")
            await eventually(self.policy_file.exists)  # it holds the hub's policy
        except BaseException:
            await self.kill()  # never leave an agent behind a failed test
            raise
        asyncio.get_running_loop().create_task(self.process.stderr.read())  # keep draining

    async def kill(self) -> None:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> None:
        """SIGTERM, and the agent must be gone within 15 s (its drain is bounded)."""
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                async with asyncio.timeout(15):
                    await self.process.wait()
            except TimeoutError:
                await self.kill()
                raise AssertionError("the agent did not stop within 15 s of SIGTERM") from None


@pytest.fixture
async def operator(hub: Hub, pki: Pki) -> AsyncIterator[command_pb2_grpc.CommandServiceStub]:
    async with secure_aio_channel(hub.address, pki.user("operator")) as channel:
        yield command_pb2_grpc.CommandServiceStub(channel)


@pytest.fixture
async def events(hub: Hub) -> AsyncIterator[EventLog]:
    nc, log = await event_log(hub)
    yield log
    await nc.close()


def ping(**target: str) -> dict[str, object]:
    return {"target": S.CommandTarget(**target), "action": "agent.ping"}


async def test_one_command_by_selector_runs_exactly_once_on_each_of_20_agents(
    pki: Pki,
    hub: Hub,
    tmp_path: Path,
    operator: command_pb2_grpc.CommandServiceStub,
    events: EventLog,
) -> None:
    script, _ = recording_systemctl(tmp_path)
    agents: list[Agent] = []
    try:
        for index in range(FANOUT):
            node_id = f"fan-{index:02d}"
            if not pki.layout.node_cert(node_id).exists():
                certs.issue_node_certificate(pki.directory, node_id)
            settings = quiet_agent_settings(
                pki, hub, tmp_path / node_id, node_id, script, pool="fan"
            )
            agents.append(await started(settings, hub))
        command = await issue(operator, **ping(label_selector="pool=fan"))
        assert len(command.nodes) == FANOUT
        done = await finished(operator, command.command_id)
        assert {n.node_id: n.state for n in done.nodes} == {
            a.node_id: S.COMMAND_STATE_EXECUTED for a in agents
        }
        for agent in agents:
            executed = agent.metrics.registry.get_sample_value(
                "sentinel_agent_commands_completed_total",
                {"action": "agent.ping", "state": "executed"},
            )
            assert executed == 1, agent.node_id
        await events.wait_for(lambda: len(events.matching("succeeded")) == FANOUT)
        announced = [e["data"]["node_id"] for e in events.matching("succeeded")]
        assert sorted(announced) == sorted(a.node_id for a in agents)
    finally:
        await asyncio.gather(*(a.stop() for a in agents))


async def test_an_agent_away_at_issue_time_runs_the_unexpired_and_refuses_the_expired(
    pki: Pki,
    hub: Hub,
    tmp_path: Path,
    operator: command_pb2_grpc.CommandServiceStub,
    events: EventLog,
) -> None:
    script, record = recording_systemctl(tmp_path)
    settings = quiet_agent_settings(pki, hub, tmp_path / "agent", "node-b", script)
    agent = await started(settings, hub)
    await agent.stop()  # known to the fleet, now away
    short = await issue(operator, **restart("node-b", ttl=to_proto_duration(timedelta(seconds=1))))
    kept = await issue(operator, **restart("node-b"))
    not_after = from_timestamp(short.not_after)
    await eventually(lambda: datetime.now(UTC) > not_after, timeout_s=5)
    agent = await started(settings, hub)
    try:
        expired = await finished(operator, short.command_id)
        assert (expired.nodes[0].state, expired.nodes[0].reason) == (
            S.COMMAND_STATE_EXPIRED,
            "EXPIRED",
        )
        await events.one("refused", command_id=short.command_id, reason="EXPIRED")
        ran = await finished(operator, kept.command_id)
        assert ran.nodes[0].state == S.COMMAND_STATE_EXECUTED
        assert calls(record) == [f"restart -- {UNIT}"]
    finally:
        await agent.stop()


async def test_replay_after_kill_9_is_still_refused(
    pki: Pki, hub: Hub, tmp_path: Path, events: EventLog
) -> None:
    script, record = recording_systemctl(tmp_path)
    process = AgentProcess(pki, hub, tmp_path / "agent", "node-c", script)
    await process.start()
    message = payload("node-c")
    envelope = sign(message, command_signer(pki))
    nc, _ = await event_log(hub)
    try:
        await publish(nc, "node-c", envelope)
        await events.one("succeeded", command_id=message.command_id, node_id="node-c")
        await process.kill()
        await process.start()
        await publish(nc, "node-c", envelope)
        await events.one("refused", command_id=message.command_id, reason="REPLAYED")
        assert calls(record) == [f"restart -- {UNIT}"]
    finally:
        await nc.close()
        await process.stop()


async def test_a_crash_between_journal_and_execution_is_interrupted_not_rerun(
    pki: Pki,
    hub: Hub,
    tmp_path: Path,
    operator: command_pb2_grpc.CommandServiceStub,
    events: EventLog,
) -> None:
    # The unit "restart" kills the agent that runs it, as a node crash would.
    script, record = recording_systemctl(tmp_path, then="kill -9 $PPID")
    process = AgentProcess(pki, hub, tmp_path / "agent", "node-c", script)
    await process.start()
    try:
        command = await issue(operator, **restart("node-c"))
        assert process.process is not None
        await within(process.process.wait())
        assert calls(record) == [f"restart -- {UNIT}"]
        # Back up: the journal says begun, never finished. A second run would kill it again.
        await process.start()
        done = await finished(operator, command.command_id)
        assert (done.nodes[0].state, done.nodes[0].reason) == (
            S.COMMAND_STATE_INTERRUPTED,
            "INTERRUPTED",
        )
        await events.one("failed", command_id=command.command_id, reason="INTERRUPTED")
        assert calls(record) == [f"restart -- {UNIT}"]
    finally:
        await process.stop()


async def test_rotated_key_signs_after_agents_trust_it_and_a_retired_key_stops_verifying(
    pki: Pki,
    hub: Hub,
    tmp_path: Path,
    operator: command_pb2_grpc.CommandServiceStub,
    events: EventLog,
) -> None:
    script, record = recording_systemctl(tmp_path)
    agent = await started(quiet_agent_settings(pki, hub, tmp_path / "agent", "node-a", script), hub)
    old_signer = command_signer(pki)
    try:
        assert agent.trust.version == 1
        async with secure_aio_channel(hub.address, pki.user("admin")) as channel:
            keys = keys_pb2_grpc.KeyServiceStub(channel)
            rotated = (await keys.RotateCommandKey(keys_pb2.RotateCommandKeyRequest())).keyset
            assert rotated.version == 2
            assert rotated.command_signing_key_id != old_signer.key_id
            await eventually(lambda: agent.trust.version == 2)
            command = await issue(operator, **ping(node_id="node-a"))
            assert (await finished(operator, command.command_id)).state == S.COMMAND_STATE_EXECUTED
            retired = (
                await keys.RetireKey(keys_pb2.RetireKeyRequest(key_id=old_signer.key_id))
            ).keyset
            assert old_signer.key_id not in [k.key_id for k in retired.keys]
            await eventually(lambda: agent.trust.version == 3)
        old = payload("node-a")
        nc, _ = await event_log(hub)
        await publish(nc, "node-a", sign(old, old_signer))
        await events.one("refused", node_id="node-a", reason="UNKNOWN_KEY")
        await nc.close()
        assert calls(record) == []
    finally:
        await agent.stop()
    # The keyset is persisted and verified on load: an edited file stops the agent.
    keyset_file = tmp_path / "agent" / "keyset.bin"
    data = bytearray(keyset_file.read_bytes())
    data[-3] ^= 0xFF
    keyset_file.write_bytes(bytes(data))
    with pytest.raises(ConfigError) as caught:
        await Agent.start(quiet_agent_settings(pki, hub, tmp_path / "agent", "node-a", script))
    assert caught.value.reason == "KEYSET_CORRUPT"


async def test_commands_and_their_results_survive_a_hub_restart(pki: Pki, tmp_path: Path) -> None:
    settings = hub_settings(pki, tmp_path / "hub")
    script, _ = recording_systemctl(tmp_path)
    hub = await Hub.start(settings)
    agent = await started(quiet_agent_settings(pki, hub, tmp_path / "agent", "node-a", script), hub)
    try:
        async with secure_aio_channel(hub.address, pki.user("operator")) as channel:
            stub = command_pb2_grpc.CommandServiceStub(channel)
            command = await issue(stub, **ping(node_id="node-a"))
            await finished(stub, command.command_id)
        await hub.stop()
        hub = await Hub.start(settings)  # a new port: this test needs no agent to reconnect
        async with secure_aio_channel(hub.address, pki.user("viewer")) as channel:
            stub = command_pb2_grpc.CommandServiceStub(channel)
            got = await stub.GetCommand(S.GetCommandRequest(command_id=command.command_id))
            assert got.command.nodes[0].state == S.COMMAND_STATE_EXECUTED
    finally:
        await agent.stop()
        await hub.stop()


async def test_redelivered_commands_are_reported_again_never_run_again(
    pki: Pki,
    hub: Hub,
    tmp_path: Path,
    operator: command_pb2_grpc.CommandServiceStub,
    events: EventLog,
) -> None:
    """JetStream delivers again what it never saw acknowledged (an ack lost, an agent killed
    after executing, a consumer reset): the same message gets its recorded result."""
    script, record = recording_systemctl(tmp_path)
    settings = quiet_agent_settings(pki, hub, tmp_path / "agent", "node-a", script)
    agent = await started(settings, hub)
    command = await issue(operator, **restart("node-a"))
    await finished(operator, command.command_id)
    await agent.stop()
    # Reset the consumer: every message on node-a's subject is delivered again.
    nc, _ = await event_log(hub)
    await nc.jetstream().delete_consumer("SENTINEL_COMMANDS", "agent-node-a")
    await nc.close()
    agent = await started(settings, hub)  # its hello makes the hub create the consumer again
    try:
        await eventually(lambda: agent.commands.handled >= 1)
        assert calls(record) == [f"restart -- {UNIT}"]
        assert agent.metrics.registry.get_sample_value(
            "sentinel_agent_commands_completed_total",
            {"action": "node.systemd.restart", "state": "executed"},
        ) in (None, 0.0)  # nothing executed in this process's life
        done = await finished(operator, command.command_id)
        assert done.nodes[0].state == S.COMMAND_STATE_EXECUTED
        assert len(events.matching("succeeded", command_id=command.command_id)) == 1
        assert events.matching("refused", command_id=command.command_id) == []
    finally:
        await agent.stop()


async def test_issue_while_nats_is_down_is_unavailable_with_a_reason(
    pki: Pki, tmp_path: Path
) -> None:
    hub = await Hub.start(hub_settings(pki, tmp_path / "hub", store_timeout_s=1.0))
    try:
        script, _ = recording_systemctl(tmp_path)
        agent = await started(
            quiet_agent_settings(pki, hub, tmp_path / "agent", "node-a", script), hub
        )
        await agent.stop()
        assert hub._embedded is not None
        hub._embedded.process.kill()
        await hub._embedded.process.wait()
        async with secure_aio_channel(hub.address, pki.user("operator")) as channel:
            stub = command_pb2_grpc.CommandServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await issue(stub, **ping(node_id="node-a"))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        # The audit log is written (and found away) first: actuation fails closed.
        assert reason_of(caught.value) in {"AUDIT_UNAVAILABLE", "STORE_UNAVAILABLE"}
    finally:
        await hub.stop()
