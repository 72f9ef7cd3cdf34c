"""Policy enforced for real: on the hub before it signs, and again on every agent with its
cached bundle and its own rate-limit history — also with the hub stopped and the agent
restarted, for commands signed directly with the command key (bypassing the hub)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import nats
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.aio.msg import Msg

from edge_agent.app import Agent
from hub.app import Hub
from hub.embedded_nats import EmbeddedNats
from sentinel.envelope import seal
from sentinel.errors import SentinelError
from sentinel.rpc_errors import reason_of, violations_of
from sentinel.tls import secure_aio_channel
from sentinel.v1 import command_pb2, command_pb2_grpc, policy_pb2, policy_pb2_grpc
from tests.command_helpers import (
    UNIT,
    EventLog,
    calls,
    command_signer,
    payload,
    publish,
    quiet_agent_settings,
    recording_systemctl,
    sign,
)
from tests.conftest import Pki, eventually, hub_settings, nats_admin, within
from tests.test_commands import finished, issue

S = command_pb2


def bundle(version: int, rules: str, *, expires: str = "2100-01-01T00:00:00Z") -> bytes:
    return (
        f"version: {version}\nexpires_at: {expires}\n"
        "allow:\n  actions: ['*']\n  shadow: true\nsafe_actions: [agent.ping]\n"
        + (f"rules:\n{rules}" if rules else "rules: []\n")
    ).encode()


def frozen_now(action: str) -> str:
    start = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    end = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    return (
        f"  - id: change-freeze\n    kind: freeze\n    actions: [{action}]\n"
        f"    windows:\n      - once: {{start: '{start}', end: '{end}'}}\n"
    )


RESTARTS_5_PER_HOUR = (
    "  - id: restarts\n    kind: rate_limit\n    actions: [node.systemd.restart]\n"
    "    limit: 5\n    window: 1h\n    per: node_action\n"
)


class Results:
    """Every command result the agent publishes, read like the hub reads them."""

    def __init__(self) -> None:
        self.items: list[command_pb2.CommandResult] = []

    async def on_message(self, message: Msg) -> None:
        self.items.append(command_pb2.CommandResult.FromString(message.data))

    def of(self, command_id: str) -> command_pb2.CommandResult | None:
        return next((r for r in self.items if r.command_id == command_id), None)


async def outcome(results: Results, command_id: str) -> command_pb2.CommandResult:
    await eventually(lambda: results.of(command_id) is not None)
    found = results.of(command_id)
    assert found is not None
    return found


async def apply(hub: Hub, source: bytes, *agents: Agent) -> None:
    stored = await hub.policies.put(source, "test")
    for agent in agents:
        await eventually(
            lambda a=agent: a.commands_parts.policies.version == stored.bundle.version  # type: ignore[misc]
        )


def settings_for(pki: Pki, hub: Hub, data_dir: Path, script: Path, **extra: object):  # type: ignore[no-untyped-def]
    """An agent on which the policy alone decides (no local allow-list)."""
    settings = quiet_agent_settings(pki, hub, data_dir, "node-a", script, role="gpu")
    actions = replace(settings.commands.actions, allowed_actions=None)
    commands = replace(settings.commands, actions=actions, **extra)  # type: ignore[arg-type]
    return replace(settings, commands=commands)


async def test_with_the_hub_stopped_and_the_agent_restarted_limits_and_freezes_still_hold(
    pki: Pki, tmp_path: Path
) -> None:
    nats_server = await EmbeddedNats.start(tmp_path / "nats")
    hub = await Hub.start(replace(hub_settings(pki, tmp_path / "hub"), nats_url=nats_server.url))
    script, record = recording_systemctl(tmp_path)
    settings = settings_for(pki, hub, tmp_path / "agent", script, nats_url=nats_server.url)
    nc = await nats.connect(nats_server.url)
    results = Results()
    await nc.subscribe("sentinel.results.node-a", cb=results.on_message)
    signer = command_signer(pki)
    agent: Agent | None = None
    try:
        agent = await Agent.start(settings)
        await within(agent.commands.consuming.wait())
        await apply(hub, bundle(2, RESTARTS_5_PER_HOUR + frozen_now("node.labels.set")), agent)
        for _ in range(3):
            ran = payload()
            await publish(nc, "node-a", sign(ran, signer))
            assert (await outcome(results, ran.command_id)).state == S.COMMAND_STATE_EXECUTED
        await agent.stop()
        await hub.stop()  # no hub from here on: only NATS and the agent's own state
        agent = await Agent.start(settings)
        await within(agent.commands.consuming.wait())
        assert agent.commands_parts.policies.version == 2  # from disk, verified again
        states = []
        for _ in range(3):
            message = payload()
            await publish(nc, "node-a", sign(message, signer))
            states.append(await outcome(results, message.command_id))
        assert [r.state for r in states] == [S.COMMAND_STATE_EXECUTED] * 2 + [
            S.COMMAND_STATE_REFUSED
        ]
        sixth = states[-1]
        assert sixth.reason == "POLICY_DENIED"
        assert "rate limit 'restarts': 5 node.systemd.restart on node-a in the last 1h" in (
            sixth.message
        )
        frozen = payload(action="node.labels.set", parameters={})
        frozen.parameters["labels"].string_value = "pool=canary"
        await publish(nc, "node-a", sign(frozen, signer))
        refused = await outcome(results, frozen.command_id)
        assert (refused.state, refused.reason) == (S.COMMAND_STATE_REFUSED, "POLICY_DENIED")
        assert "freeze window 'change-freeze'" in refused.message
        assert calls(record) == [f"restart -- {UNIT}"] * 5
        assert "pool" not in agent.labels.current()
    finally:
        if agent is not None:
            await agent.stop()
        await nc.close()
        await hub.stop()
        await nats_server.stop()


@pytest.fixture
async def agent(pki: Pki, hub: Hub, tmp_path: Path) -> AsyncIterator[Agent]:
    script, _ = recording_systemctl(tmp_path)
    settings = settings_for(pki, hub, tmp_path / "agent", script)
    settings = replace(settings, sampling=replace(settings.sampling, nvml_replay="builtin:h200"))
    started = await Agent.start(settings)
    await within(started.commands.consuming.wait())
    yield started
    await started.stop()


async def test_the_agent_refuses_rollback_same_version_other_content_and_untrusted_bundles(
    hub: Hub, agent: Agent, tmp_path: Path
) -> None:
    await apply(hub, bundle(3, RESTARTS_5_PER_HOUR), agent)
    cache = agent.commands_parts.policies
    on_disk = (tmp_path / "agent" / "policy.bin").read_bytes()
    now = datetime.now(UTC)
    older = hub.policies.get(1).envelope
    other = hub.policies._keys.sign_policy(bundle(3, ""))  # same version, other content
    stranger = seal(bundle(4, ""), [_stranger()], "policy")
    for envelope, reason in ((older, "POLICY_ROLLBACK"), (other, "POLICY_ROLLBACK"),
                             (stranger, "POLICY_UNTRUSTED")):  # fmt: skip
        with pytest.raises(SentinelError) as caught:
            cache.offer(envelope, now)
        assert caught.value.reason == reason
    assert cache.version == 3
    assert (tmp_path / "agent" / "policy.bin").read_bytes() == on_disk


def _stranger():  # type: ignore[no-untyped-def]
    from sentinel.envelope import SigningKey
    from sentinel.keyset import POLICY, key_id_for

    key = Ed25519PrivateKey.generate()
    return SigningKey(key_id_for(key.public_key(), POLICY), key)


async def test_an_expired_bundle_puts_the_agent_in_safe_mode(
    pki: Pki, hub: Hub, agent: Agent
) -> None:
    nc = await nats_admin(hub)
    events = EventLog()
    await nc.subscribe("sentinel.events.policy.>", cb=events.on_message)
    results = Results()
    await nc.subscribe("sentinel.results.node-a", cb=results.on_message)
    try:
        expires = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
        await apply(hub, bundle(2, "", expires=expires), agent)
        await events.wait_for(
            lambda: any(e["type"] == "io.sentinel.policy.safe_mode" for e in events.events),
            timeout_s=15,
        )
        (event,) = [e for e in events.events if e["type"] == "io.sentinel.policy.safe_mode"]
        assert event["data"]["node_id"] == "node-a"
        assert event["data"]["policy_version"] == 2
        assert agent.metrics.registry.get_sample_value("sentinel_agent_policy_safe_mode") == 1
        signer = command_signer(pki)
        unsafe, safe = payload(), payload(action="agent.ping", parameters={})
        await publish(nc, "node-a", sign(unsafe, signer))
        await publish(nc, "node-a", sign(safe, signer))
        refused = await outcome(results, unsafe.command_id)
        assert (refused.reason, "safe mode" in refused.message) == ("POLICY_DENIED", True)
        assert (await outcome(results, safe.command_id)).state == S.COMMAND_STATE_EXECUTED
    finally:
        await nc.close()


POWER_BAND = (
    "  - id: power-band\n    kind: local_bounds\n    actions: [node.gpu.set_power_limit]\n"
    "    param: watts\n    min: 200\n    max: 600\n"
)
TWO_RESTARTS = (
    "  - id: restarts\n    kind: rate_limit\n    actions: [node.systemd.restart]\n"
    "    limit: 2\n    window: 1h\n    per: node_action\n"
)


async def test_evaluate_policy_agrees_with_what_the_agent_does_for_node_rules(
    pki: Pki, hub: Hub, agent: Agent
) -> None:
    await apply(hub, bundle(2, POWER_BAND + TWO_RESTARTS + frozen_now("node.labels.set")), agent)
    nc = await nats_admin(hub)
    results = Results()
    await nc.subscribe("sentinel.results.node-a", cb=results.on_message)
    async with secure_aio_channel(hub.address, pki.user("operator")) as channel:
        commands = command_pb2_grpc.CommandServiceStub(channel)
        policies = policy_pb2_grpc.PolicyServiceStub(channel)
        for _ in range(2):  # through the hub: both sides count them
            ran = await issue(commands, **_restart())
            assert (await finished(commands, ran.command_id)).state == S.COMMAND_STATE_EXECUTED
        cases = [
            ("node.gpu.set_power_limit", {"gpu": S.ParameterValue(int_value=0),
                                          "watts": S.ParameterValue(double_value=700)}),
            ("node.gpu.set_power_limit", {"gpu": S.ParameterValue(int_value=0),
                                          "watts": S.ParameterValue(double_value=300)}),
            ("node.labels.set", {"labels": S.ParameterValue(string_value="pool=b")}),
            ("node.systemd.restart", {"unit": S.ParameterValue(string_value=UNIT)}),
            ("agent.ping", {}),
        ]  # fmt: skip
        verdicts = []
        for action, params in cases:
            answer = await policies.EvaluatePolicy(
                policy_pb2.EvaluatePolicyRequest(node_id="node-a", action=action, parameters=params)
            )
            message = payload(action=action, parameters=params)
            await publish(nc, "node-a", sign(message, command_signer(pki)))
            done = await outcome(results, message.command_id)
            verdicts.append((answer.decision.verdict, done.state))
    await nc.close()
    allow, deny = policy_pb2.VERDICT_ALLOW, policy_pb2.VERDICT_DENY
    assert verdicts == [
        (deny, S.COMMAND_STATE_REFUSED),
        (allow, S.COMMAND_STATE_EXECUTED),
        (deny, S.COMMAND_STATE_REFUSED),
        (deny, S.COMMAND_STATE_REFUSED),
        (allow, S.COMMAND_STATE_EXECUTED),
    ]


def _restart(**fields: object) -> dict[str, object]:
    return {
        "target": S.CommandTarget(node_id="node-a"),
        "action": "node.systemd.restart",
        "parameters": {"unit": S.ParameterValue(string_value=UNIT)},
        **fields,
    }


def _violations(exc: grpc.aio.AioRpcError) -> list[tuple[str, str]]:
    return [(v.kind, v.subject) for v in violations_of(exc)]


async def test_hub_denies_before_signing_and_break_glass_runs_once_and_is_audited(
    pki: Pki, hub: Hub, agent: Agent
) -> None:
    await apply(hub, bundle(2, frozen_now("node.labels.set")), agent)
    labels = {"labels": S.ParameterValue(string_value="pool=hotfix")}
    target = {"target": S.CommandTarget(node_id="node-a"), "action": "node.labels.set"}
    nc = await nats_admin(hub)
    events = EventLog()
    await nc.subscribe("sentinel.events.>", cb=events.on_message)
    glass = S.BreakGlassRequest(reason="INC-4711: roll the label back")
    try:
        async with secure_aio_channel(hub.address, pki.user("operator")) as channel:
            operator = command_pb2_grpc.CommandServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                await issue(operator, **target, parameters=labels)
            assert denied.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert reason_of(denied.value) == "POLICY_DENIED"
            assert _violations(denied.value) == [("freeze", "change-freeze on node-a")]
            with pytest.raises(grpc.aio.AioRpcError) as not_admin:
                await issue(operator, **target, parameters=labels, break_glass=glass)
            assert reason_of(not_admin.value) == "BREAK_GLASS_ADMIN_ONLY"
        info = await nc.jetstream().stream_info("SENTINEL_COMMANDS")
        assert info.state.messages == 0  # nothing was signed or sent
        async with secure_aio_channel(hub.address, pki.user("admin")) as channel:
            admin = command_pb2_grpc.CommandServiceStub(channel)
            command = await issue(admin, **target, parameters=labels, break_glass=glass)
            done = await finished(admin, command.command_id)
        assert done.state == S.COMMAND_STATE_EXECUTED
        assert done.break_glass.reason == glass.reason
        assert done.break_glass.admin.endswith("/user/admin")
        assert agent.labels.current()["pool"] == "hotfix"
        await events.wait_for(lambda: any("break_glass" in e["type"] for e in events.events))
        (audit,) = [e for e in events.events if e["type"] == "io.sentinel.policy.break_glass"]
        assert audit["data"]["command_id"] == command.command_id
        assert audit["data"]["reason"] == glass.reason
        # The override is in the signed envelope; a copy of it is a replay, not a second run.
        last = await nc.jetstream().get_last_msg("SENTINEL_COMMANDS", "sentinel.cmd.node-a")
        await publish(nc, "node-a", last.data or b"")
        await events.one("refused", command_id=command.command_id, reason="REPLAYED")
    finally:
        await nc.close()


async def test_a_command_that_needs_approval_waits_for_an_admin(
    pki: Pki, hub: Hub, agent: Agent
) -> None:
    rule = "  - id: four-eyes\n    kind: require_approval\n    actions: [node.labels.set]\n"
    await apply(hub, bundle(2, rule), agent)
    labels = {"labels": S.ParameterValue(string_value="pool=reviewed")}
    nc = await nats_admin(hub)
    try:
        async with secure_aio_channel(hub.address, pki.user("operator")) as channel:
            operator = command_pb2_grpc.CommandServiceStub(channel)
            command = await issue(
                operator,
                target=S.CommandTarget(node_id="node-a"),
                action="node.labels.set",
                parameters=labels,
            )
            assert command.state == S.COMMAND_STATE_AWAITING_APPROVAL
            assert (await nc.jetstream().stream_info("SENTINEL_COMMANDS")).state.messages == 0
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await operator.ApproveCommand(
                    S.ApproveCommandRequest(command_id=command.command_id)
                )
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        async with secure_aio_channel(hub.address, pki.user("admin")) as channel:
            admin = command_pb2_grpc.CommandServiceStub(channel)
            approved = await admin.ApproveCommand(
                S.ApproveCommandRequest(command_id=command.command_id, comment="looks right")
            )
            assert [a.comment for a in approved.command.approvals] == ["looks right"]
            done = await finished(admin, command.command_id)
        assert done.state == S.COMMAND_STATE_EXECUTED
        assert agent.labels.current()["pool"] == "reviewed"
    finally:
        await nc.close()


async def test_a_replica_quota_is_checked_against_the_scale_the_command_asks_for(
    pki: Pki, hub: Hub, agent: Agent
) -> None:
    rule = '  - {id: trainer-max, kind: quota, key: "replicas:ml/trainer", max: 4}\n'
    await apply(hub, bundle(2, rule), agent)

    def scale(replicas: int) -> dict[str, object]:
        return {
            "target": S.CommandTarget(node_id="node-a"),
            "action": "k8s.deployment.scale",
            "parameters": {
                "namespace": S.ParameterValue(string_value="ml"),
                "name": S.ParameterValue(string_value="trainer"),
                "replicas": S.ParameterValue(int_value=replicas),
            },
        }

    async with secure_aio_channel(hub.address, pki.user("operator")) as channel:
        operator = command_pb2_grpc.CommandServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await issue(operator, **scale(8))
        assert reason_of(caught.value) == "POLICY_DENIED"
        assert _violations(caught.value) == [("quota", "trainer-max on node-a")]
        within_quota = await issue(operator, **scale(3))
        assert within_quota.state == S.COMMAND_STATE_PENDING  # signed and sent


async def test_a_hub_restart_resets_no_rate_limit(pki: Pki, tmp_path: Path) -> None:
    """Fleet-scope limits are the hub's own count: it is kept in JetStream, not in memory."""
    settings = hub_settings(pki, tmp_path / "hub")
    hub = await Hub.start(settings)
    script, _ = recording_systemctl(tmp_path)
    agent = await Agent.start(settings_for(pki, hub, tmp_path / "agent", script))
    rule = (
        "  - {id: fleet-pings, kind: rate_limit, actions: [agent.ping], limit: 2, window: 1h,"
        " per: fleet}\n"
    )
    ping = {"target": S.CommandTarget(node_id="node-a"), "action": "agent.ping"}
    try:
        await within(agent.commands.consuming.wait())
        await apply(hub, bundle(2, rule), agent)
        async with secure_aio_channel(hub.address, pki.user("operator")) as channel:
            operator = command_pb2_grpc.CommandServiceStub(channel)
            for _ in range(2):
                await issue(operator, **ping)
        await hub.stop()
        hub = await Hub.start(settings)
        async with secure_aio_channel(hub.address, pki.user("operator")) as channel:
            operator = command_pb2_grpc.CommandServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await issue(operator, **ping)
        assert reason_of(caught.value) == "POLICY_DENIED"
        assert _violations(caught.value) == [("rate_limit", "fleet-pings on node-a")]
    finally:
        await agent.stop()
        await hub.stop()


async def test_an_edited_policy_file_is_not_trusted_and_the_default_applies(
    pki: Pki, hub: Hub, tmp_path: Path
) -> None:
    script, _ = recording_systemctl(tmp_path)
    settings = settings_for(pki, hub, tmp_path / "agent", script)
    agent = await Agent.start(settings)
    await within(agent.commands.consuming.wait())
    await apply(hub, bundle(2, ""), agent)
    await agent.stop()
    path = tmp_path / "agent" / "policy.bin"
    edited = path.read_bytes().replace(b"safe_actions: [agent.ping]", b"safe_actions: [node.xxxx]")
    path.write_bytes(edited)
    await hub.stop()  # so the agent cannot simply be sent the bundle again
    agent = await Agent.start(settings)
    try:
        assert agent.commands_parts.policies.version == 1  # the built-in default
        assert (tmp_path / "agent" / "policy.bin.rejected").read_bytes() == edited
        assert not path.exists()
    finally:
        await agent.stop()
