"""Signed commands end to end: real hub, real nats-server with JetStream, real agents.

Every forged, replayed, expired, mis-addressed, unknown or oversized command must be
refused with its reason code, counted on the agent and announced once as a
`command.refused` CloudEvent — and must run nothing: the commands here would restart
a unit through a recording `systemctl`, whose log shows every real execution.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.aio.client import Client as NatsClient

from edge_agent.app import Agent
from hub.app import Hub
from sentinel.durations import to_proto_duration
from sentinel.envelope import SigningKey
from sentinel.keyset import COMMAND, key_id_for
from sentinel.rpc_errors import reason_of
from sentinel.tls import secure_aio_channel
from sentinel.v1 import command_pb2, command_pb2_grpc
from tests.command_helpers import (
    UNIT,
    EventLog,
    calls,
    command_signer,
    event_log,
    payload,
    publish,
    quiet_agent_settings,
    recording_systemctl,
    refused,
    sign,
    started,
)
from tests.conftest import Pki

S = command_pb2


@dataclass
class Bench:
    hub: Hub
    agent: Agent
    nc: NatsClient
    events: EventLog
    record: Path
    stub: command_pb2_grpc.CommandServiceStub


@pytest.fixture
async def bench(pki: Pki, hub: Hub, tmp_path: Path) -> AsyncIterator[Bench]:
    script, record = recording_systemctl(tmp_path)
    agent = await started(
        quiet_agent_settings(pki, hub, tmp_path / "agent", "node-a", script, role="gpu"), hub
    )
    nc, events = await event_log(hub)
    async with secure_aio_channel(hub.address, pki.user("operator")) as channel:
        try:
            yield Bench(
                hub, agent, nc, events, record, command_pb2_grpc.CommandServiceStub(channel)
            )
        finally:
            await nc.close()
            await agent.stop()


async def issue(stub: command_pb2_grpc.CommandServiceStub, **fields: object) -> S.Command:
    request = S.IssueCommandRequest(**fields)  # type: ignore[arg-type]
    return (await stub.IssueCommand(request, timeout=10)).command


async def finished(stub: command_pb2_grpc.CommandServiceStub, command_id: str) -> S.Command:
    """Follow WatchCommand until every node is final, then read the command."""
    watch = stub.WatchCommand(S.WatchCommandRequest(command_id=command_id), timeout=20)
    async for _ in watch:
        pass
    return (await stub.GetCommand(S.GetCommandRequest(command_id=command_id))).command


def node_a(**fields: object) -> dict[str, object]:
    return {"target": S.CommandTarget(node_id="node-a"), **fields}


def restart(node_id: str = "node-a", **fields: object) -> dict[str, object]:
    """Restart the test unit on `node_id`: an execution shows in the recording systemctl."""
    params = {"unit": S.ParameterValue(string_value=UNIT)}
    target = S.CommandTarget(node_id=node_id)
    return {"target": target, "action": "node.systemd.restart", "parameters": params, **fields}


async def test_ping_runs_once_and_is_announced_once(bench: Bench) -> None:
    command = await issue(bench.stub, **node_a(action="agent.ping"))
    done = await finished(bench.stub, command.command_id)
    assert done.state == S.COMMAND_STATE_EXECUTED
    assert [(n.node_id, n.state, n.message) for n in done.nodes] == [
        ("node-a", S.COMMAND_STATE_EXECUTED, "pong")
    ]
    assert done.issuer.endswith("/user/operator")
    await bench.events.one("succeeded", command_id=command.command_id, node_id="node-a")
    await bench.events.one("issued", command_id=command.command_id, node_id="node-a")
    listed = await bench.stub.ListCommands(S.ListCommandsRequest(node_id="node-a"))
    assert [c.command_id for c in listed.commands] == [command.command_id]


async def test_restart_runs_the_unit_once_and_shadow_runs_nothing(bench: Bench) -> None:
    shadow = await issue(bench.stub, **restart(mode=S.COMMAND_MODE_SHADOW))
    planned = await finished(bench.stub, shadow.command_id)
    assert planned.nodes[0].state == S.COMMAND_STATE_PLANNED
    assert [c.description for c in planned.nodes[0].plan] != []
    assert calls(bench.record) == []
    await bench.events.one("planned", command_id=shadow.command_id)

    real = await issue(bench.stub, **restart())
    done = await finished(bench.stub, real.command_id)
    assert done.nodes[0].state == S.COMMAND_STATE_EXECUTED
    assert calls(bench.record) == [f"restart -- {UNIT}"]


async def refusal_seen(bench: Bench, reason: str, before: float) -> dict[str, object]:
    event = await bench.events.one("refused", node_id="node-a", reason=reason)
    assert refused(bench.agent, reason) == before + 1
    assert calls(bench.record) == []
    return event


async def test_bit_flipped_envelope_is_refused(bench: Bench, pki: Pki) -> None:
    envelope = bytearray(sign(payload(), command_signer(pki)))
    envelope[12] ^= 0x01  # inside the payload bytes
    before = refused(bench.agent, "BAD_SIGNATURE")
    await publish(bench.nc, "node-a", bytes(envelope), msg_id="c0ffee/node-a")
    event = await refusal_seen(bench, "BAD_SIGNATURE", before)
    data = event["data"]
    assert isinstance(data, dict)
    # Nothing unverified is trusted: the command id is only the one the header claimed.
    assert (data["command_id"], data["claimed_command_id"]) == ("", "c0ffee")


async def test_unknown_key_is_refused(bench: Bench) -> None:
    stranger = Ed25519PrivateKey.generate()
    signer = SigningKey(key_id_for(stranger.public_key(), COMMAND), stranger)
    before = refused(bench.agent, "UNKNOWN_KEY")
    await publish(bench.nc, "node-a", sign(payload(), signer))
    await refusal_seen(bench, "UNKNOWN_KEY", before)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: payload(issued_at=datetime.now(UTC) - timedelta(hours=1)), "EXPIRED"),
        (lambda: payload(issued_at=datetime.now(UTC) + timedelta(hours=1)), "NOT_YET_VALID"),
        (lambda: payload(node_id="node-b"), "WRONG_AUDIENCE"),
        (lambda: payload(action="shell.exec"), "UNKNOWN_ACTION"),
        (lambda: payload(action="node.gpu.set_power_limit"), "MALFORMED"),
        (
            lambda: payload(
                action="k8s.deployment.restart",
                selector="role=gpu",
                parameters={
                    "namespace": S.ParameterValue(string_value="ml"),
                    "name": S.ParameterValue(string_value="trainer"),
                },
            ),
            "BAD_TARGET",
        ),
        (
            lambda: payload(
                action="k8s.node.cordon", parameters={}
            ),  # allowed by the catalogue, not by this agent
            "POLICY_DENIED",
        ),
    ],
    ids=[
        "expired",
        "not-yet-valid",
        "wrong-audience",
        "unknown-action",
        "bad-params",
        "selector-on-cluster-action",
        "not-allowed",
    ],
)
async def test_validly_signed_but_unacceptable_commands_are_refused(
    bench: Bench, pki: Pki, make: object, reason: str
) -> None:
    message = make()  # type: ignore[operator]
    before = refused(bench.agent, reason)
    await publish(bench.nc, "node-a", sign(message, command_signer(pki)))
    event = await refusal_seen(bench, reason, before)
    data = event["data"]
    assert isinstance(data, dict)
    assert data["command_id"] == message.command_id


async def test_oversized_and_garbage_messages_are_refused(bench: Bench, pki: Pki) -> None:
    big = payload()
    big.parameters["padding"].string_value = "x" * 100_000
    before = refused(bench.agent, "MALFORMED")
    await publish(bench.nc, "node-a", sign(big, command_signer(pki)))
    await bench.events.wait_for(lambda: refused(bench.agent, "MALFORMED") == before + 1)
    await publish(bench.nc, "node-a", b"\xff\x00 not an envelope")
    await bench.events.wait_for(
        lambda: len(bench.events.matching("refused", reason="MALFORMED")) == 2
    )
    assert refused(bench.agent, "MALFORMED") == before + 2
    messages = [e["data"]["message"] for e in bench.events.matching("refused")]
    assert any("exceeds the 65536-byte cap" in m for m in messages)
    assert calls(bench.record) == []


async def test_replayed_envelope_is_refused_and_runs_once(bench: Bench, pki: Pki) -> None:
    message = payload()
    envelope = sign(message, command_signer(pki))
    await publish(bench.nc, "node-a", envelope)
    await bench.events.one("succeeded", command_id=message.command_id)
    before = refused(bench.agent, "REPLAYED")
    # A new Nats-Msg-Id, so JetStream's dedup does not drop it: the agent must.
    await publish(bench.nc, "node-a", envelope)
    await bench.events.one("refused", command_id=message.command_id, reason="REPLAYED")
    assert refused(bench.agent, "REPLAYED") == before + 1
    assert calls(bench.record) == [f"restart -- {UNIT}"]


async def test_envelope_republished_on_another_nodes_subject_is_refused(
    bench: Bench, pki: Pki, hub: Hub, tmp_path: Path
) -> None:
    (tmp_path / "b").mkdir()
    script_b, record_b = recording_systemctl(tmp_path / "b")
    other = await started(
        quiet_agent_settings(pki, hub, tmp_path / "agent-b", "node-b", script_b), hub
    )
    try:
        command = await issue(bench.stub, **restart())
        await finished(bench.stub, command.command_id)
        stream = await bench.nc.jetstream().get_last_msg("SENTINEL_COMMANDS", "sentinel.cmd.node-a")
        await publish(bench.nc, "node-b", stream.data or b"")
        await bench.events.one(
            "refused", command_id=command.command_id, node_id="node-b", reason="WRONG_AUDIENCE"
        )
        assert calls(record_b) == []
        assert calls(bench.record) == [f"restart -- {UNIT}"]
        # The command's own state on node-a is untouched by node-b's refusal.
        done = await finished(bench.stub, command.command_id)
        assert [(n.node_id, n.state) for n in done.nodes] == [("node-a", S.COMMAND_STATE_EXECUTED)]
    finally:
        await other.stop()


async def test_issue_validation(bench: Bench, pki: Pki, hub: Hub) -> None:
    cases = [
        (node_a(action="shell.exec"), grpc.StatusCode.INVALID_ARGUMENT, "UNKNOWN_ACTION"),
        (
            node_a(
                action="node.gpu.set_power_limit",
                parameters={"gpu": S.ParameterValue(string_value="0")},
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "BAD_PARAMETER",
        ),
        (
            {
                "target": S.CommandTarget(label_selector="role=gpu"),
                "action": "k8s.pod.evict",
                "parameters": {
                    "namespace": S.ParameterValue(string_value="ml"),
                    "name": S.ParameterValue(string_value="p"),
                },
            },
            grpc.StatusCode.INVALID_ARGUMENT,
            "BAD_TARGET",
        ),
        (
            {"target": S.CommandTarget(node_id="node-z"), "action": "agent.ping"},
            grpc.StatusCode.NOT_FOUND,
            "UNKNOWN_NODE",
        ),
        (
            {"target": S.CommandTarget(label_selector="role=nothing"), "action": "agent.ping"},
            grpc.StatusCode.FAILED_PRECONDITION,
            "NO_MATCHING_NODES",
        ),
        (
            node_a(action="agent.ping", ttl=to_proto_duration(timedelta(days=30))),
            grpc.StatusCode.INVALID_ARGUMENT,
            "BAD_TTL",
        ),
    ]
    for fields, code, reason in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await issue(bench.stub, **fields)
        assert (caught.value.code(), reason_of(caught.value)) == (code, reason), fields
    assert (await bench.stub.ListCommands(S.ListCommandsRequest())).commands == []
    async with secure_aio_channel(hub.address, pki.user("viewer")) as channel:
        viewer = command_pb2_grpc.CommandServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await issue(viewer, **node_a(action="agent.ping"))
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert (await viewer.ListCommands(S.ListCommandsRequest())).commands == []


async def test_idempotency_key_issues_once(bench: Bench) -> None:
    first = await issue(bench.stub, **node_a(action="agent.ping", idempotency_key="k-1"))
    again = await issue(bench.stub, **node_a(action="agent.ping", idempotency_key="k-1"))
    assert again.command_id == first.command_id
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await issue(
            bench.stub,
            **node_a(action="agent.ping", idempotency_key="k-1", mode=S.COMMAND_MODE_SHADOW),
        )
    assert reason_of(caught.value) == "IDEMPOTENCY_KEY_REUSED"
    await finished(bench.stub, first.command_id)
    info = await bench.nc.jetstream().stream_info("SENTINEL_COMMANDS")
    assert info.state.messages == 1
    await bench.events.one("succeeded", command_id=first.command_id)


async def test_an_executor_check_that_breaks_fails_the_command_and_the_agent_carries_on(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edge_agent import commands
    from edge_agent.actions import executor_for

    class Broken:
        def check(self, params: object, ctx: object) -> None:
            raise RuntimeError("bug in a check")

    broken_once = [Broken()]
    monkeypatch.setattr(
        commands,
        "executor_for",
        lambda name: broken_once.pop() if broken_once else executor_for(name),
    )
    first = await issue(bench.stub, **node_a(action="agent.ping"))
    failed = (await finished(bench.stub, first.command_id)).nodes[0]
    assert (failed.state, failed.reason) == (S.COMMAND_STATE_FAILED, "EXECUTION_FAILED")
    assert "check failed before anything ran: RuntimeError('bug in a check')" in failed.message
    second = await issue(bench.stub, **node_a(action="agent.ping"))
    assert (await finished(bench.stub, second.command_id)).state == S.COMMAND_STATE_EXECUTED
