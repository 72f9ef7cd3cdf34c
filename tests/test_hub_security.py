"""The hub's front door, over real mTLS on 127.0.0.1 with a real nats-server behind it:
who may connect, who may call what, and what happens to bad input."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from hub.app import Hub
from hub.auth import METHOD_RULES, Access, check_access
from hub.server import V1_SERVICES
from sentinel.errors import PermissionDenied
from sentinel.identity import Identity, Kind, Role
from sentinel.rpc_errors import reason_of
from sentinel.tls import MIB, TlsFiles
from sentinel.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    command_pb2,
    command_pb2_grpc,
    fleet_pb2,
    fleet_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
)
from tests.conftest import Pki

Channels = Callable[[TlsFiles], grpc.aio.Channel]


def test_every_v1_method_has_an_access_rule() -> None:
    methods = {f"/{s.full_name}/{m.name}" for s in V1_SERVICES for m in s.methods}
    assert methods <= METHOD_RULES.keys()


async def test_admin_lists_nodes(hub: Hub, pki: Pki, channel_to: Channels) -> None:
    stub = fleet_pb2_grpc.FleetServiceStub(channel_to(pki.user("admin")))
    response = await stub.ListNodes(fleet_pb2.ListNodesRequest(), timeout=10)
    assert list(response.nodes) == []
    assert response.total_size == 0


async def test_no_client_certificate_fails_the_handshake(hub: Hub, pki: Pki) -> None:
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.layout.ca_cert.read_bytes())
    async with grpc.aio.secure_channel(hub.address, credentials) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await fleet_pb2_grpc.FleetServiceStub(channel).ListNodes(
                fleet_pb2.ListNodesRequest(), timeout=10
            )
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert len(hub.registry) == 0


async def test_certificate_from_another_ca_fails_the_handshake(
    hub: Hub, pki: Pki, channel_to: Channels
) -> None:
    stub = fleet_pb2_grpc.FleetServiceStub(channel_to(pki.rogue_admin()))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListNodes(fleet_pb2.ListNodesRequest(), timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_agent_claiming_another_node_id_is_denied(
    hub: Hub, pki: Pki, channel_to: Channels
) -> None:
    stub = agent_pb2_grpc.AgentServiceStub(channel_to(pki.node("node-a")))
    call = stub.Connect()
    await call.write(
        agent_pb2.ConnectRequest(hello=agent_pb2.AgentHello(node_id="node-b", boot_id="b00t"))
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert reason_of(caught.value) == "NODE_ID_MISMATCH"
    assert hub.registry.get("node-a") is None
    assert hub.registry.get("node-b") is None


async def test_batch_for_another_node_on_own_stream_is_denied(
    hub: Hub, pki: Pki, channel_to: Channels
) -> None:
    call = agent_pb2_grpc.AgentServiceStub(channel_to(pki.node("node-a"))).Connect()
    await call.write(
        agent_pb2.ConnectRequest(hello=agent_pb2.AgentHello(node_id="node-a", boot_id="b00t"))
    )
    assert (await call.read()).WhichOneof("message") == "hello_reply"
    assert (await call.read()).WhichOneof("message") == "keyset"
    assert (await call.read()).WhichOneof("message") == "policy"
    await call.write(
        agent_pb2.ConnectRequest(batch={"node_id": "node-b", "boot_id": "b00t", "seq": 1})
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    node = hub.registry.get("node-a")
    assert node is not None and node.counters.batches_received == 0


async def test_viewer_calling_an_operator_rpc_is_denied_before_dispatch(
    hub: Hub, pki: Pki, channel_to: Channels
) -> None:
    viewer = command_pb2_grpc.CommandServiceStub(channel_to(pki.user("viewer")))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await viewer.IssueCommand(command_pb2.IssueCommandRequest(action="agent.ping"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert reason_of(caught.value) == "ROLE_TOO_LOW"
    # The same RPC from an operator passes the check and reaches the handler.
    operator = command_pb2_grpc.CommandServiceStub(channel_to(pki.user("operator")))
    with pytest.raises(grpc.aio.AioRpcError) as handled:
        await operator.IssueCommand(
            command_pb2.IssueCommandRequest(action="agent.ping"), timeout=10
        )
    assert handled.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(handled.value) == "BAD_TARGET"


async def test_operator_cannot_put_policy(hub: Hub, pki: Pki, channel_to: Channels) -> None:
    stub = policy_pb2_grpc.PolicyServiceStub(channel_to(pki.user("operator")))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.PutPolicy(policy_pb2.PutPolicyRequest(), timeout=10)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_node_certificate_cannot_call_fleet_service(
    hub: Hub, pki: Pki, channel_to: Channels
) -> None:
    stub = fleet_pb2_grpc.FleetServiceStub(channel_to(pki.node("node-a")))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListNodes(fleet_pb2.ListNodesRequest(), timeout=10)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert reason_of(caught.value) == "NODE_NOT_ALLOWED"


async def test_user_certificate_cannot_connect_as_agent(
    hub: Hub, pki: Pki, channel_to: Channels
) -> None:
    # An agent writes its hello first. The gate reads that first message before it refuses,
    # so the write never races the refusal (the loser would see a local INTERNAL, not why).
    channel = channel_to(pki.user("admin"))
    for attempt in range(200):
        call = agent_pb2_grpc.AgentServiceStub(channel).Connect()
        await call.write(
            agent_pb2.ConnectRequest(hello=agent_pb2.AgentHello(node_id="admin", boot_id="b00t"))
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call.read()
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED, attempt
        assert reason_of(caught.value) == "NODE_ONLY"
    # A refused stream that sends nothing is refused too, once the gate stops waiting.
    silent = agent_pb2_grpc.AgentServiceStub(channel).Connect()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await silent.read()
    assert reason_of(caught.value) == "NODE_ONLY"


async def test_oversized_message_is_refused_and_the_hub_keeps_serving(
    hub: Hub, pki: Pki, channel_to: Channels
) -> None:
    admin = fleet_pb2_grpc.FleetServiceStub(channel_to(pki.user("admin")))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await admin.ListNodes(
            fleet_pb2.ListNodesRequest(label_selector="x" * (5 * MIB)), timeout=10
        )
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    viewer = fleet_pb2_grpc.FleetServiceStub(channel_to(pki.user("viewer")))
    assert (await viewer.ListNodes(fleet_pb2.ListNodesRequest(), timeout=10)).total_size == 0
    assert (await admin.ListNodes(fleet_pb2.ListNodesRequest(), timeout=10)).total_size == 0


async def test_bad_selector_and_page_token_are_invalid_arguments(
    hub: Hub, pki: Pki, channel_to: Channels
) -> None:
    stub = fleet_pb2_grpc.FleetServiceStub(channel_to(pki.user("viewer")))
    with pytest.raises(grpc.aio.AioRpcError) as selector:
        await stub.ListNodes(fleet_pb2.ListNodesRequest(label_selector="zone in (a"), timeout=10)
    assert selector.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(selector.value) == "INVALID_SELECTOR"
    with pytest.raises(grpc.aio.AioRpcError) as token:
        await stub.ListNodes(fleet_pb2.ListNodesRequest(page_token="%%%"), timeout=10)
    assert reason_of(token.value) == "BAD_PAGE_TOKEN"
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.GetNode(fleet_pb2.GetNodeRequest(node_id="nope"), timeout=10)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert reason_of(missing.value) == "NODE_NOT_FOUND"


@pytest.mark.parametrize(
    ("messages", "reason"),
    [
        ([{"heartbeat": {}}], "HELLO_MISSING"),
        ([{"hello": {"node_id": "node-a", "boot_id": "bad boot/id"}}], "BAD_BOOT_ID"),
        (
            [{"hello": {"node_id": "node-a", "boot_id": "b00t", "labels": {"a b": "c"}}}],
            "INVALID_LABEL",
        ),
        (
            [
                {"hello": {"node_id": "node-a", "boot_id": "b00t"}},
                {"batch": {"boot_id": "b00t", "seq": 0}},
            ],
            "BAD_BATCH",
        ),
        (
            [
                {"hello": {"node_id": "node-a", "boot_id": "b00t"}},
                {"gap": {"boot_id": "b00t", "from_seq": 5, "to_seq": 2}},
            ],
            "BAD_GAP",
        ),
        (
            [
                {"hello": {"node_id": "node-a", "boot_id": "b00t"}},
                {"hello": {"node_id": "node-a", "boot_id": "b00t"}},
            ],
            "UNEXPECTED_MESSAGE",
        ),
    ],
)
async def test_malformed_agent_streams_are_invalid_arguments(
    hub: Hub, pki: Pki, channel_to: Channels, messages: list[dict[str, object]], reason: str
) -> None:
    call = agent_pb2_grpc.AgentServiceStub(channel_to(pki.node("node-a"))).Connect()
    for message in messages:
        await call.write(agent_pb2.ConnectRequest(**message))  # type: ignore[arg-type]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        while True:
            await call.read()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(caught.value) == reason
    node = hub.registry.get("node-a")
    assert node is None or (node.counters.batches_received, node.counters.gaps_announced) == (0, 0)


def test_the_readme_rbac_table_is_the_rule_table() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    services = "Agent|Fleet|Command|Key|Policy|Rollout|Enrollment|Audit"
    row = rf"^\| `((?:{services})Service/\w+)` \| (.+) \|$"
    rows = dict(re.findall(row, readme, re.M))
    documented = {f"/sentinel.v1.{rpc}": who for rpc, who in rows.items()}
    v1 = {m: a for m, a in METHOD_RULES.items() if m.startswith("/sentinel.v1.")}
    assert documented.keys() == v1.keys()
    for method, access in v1.items():
        allowed = [r for r in ("node", "viewer", "operator", "admin") if r in documented[method]]
        assert allowed == _allowed_roles(method, access), method


def _allowed_roles(method: str, access: Access) -> list[str]:
    """Every role tried against the rule, as the interceptor decides it."""
    allowed = []
    for name, role in (
        ("node", Role.NODE), ("viewer", Role.VIEWER), ("operator", Role.OPERATOR),
        ("admin", Role.ADMIN),
    ):  # fmt: skip
        kind = Kind.NODE if role is Role.NODE else Kind.USER
        identity = Identity("sentinel.local", kind, name, role)
        try:
            check_access(identity, access, method)
        except PermissionDenied:
            continue
        allowed.append(name)
    return allowed
