"""`sentinel cmd` and `sentinel keys` end to end, against a real hub and a real agent.

The CLI is synchronous gRPC, so each invocation runs `cli.main.main` in a worker thread
while the hub and the agent keep serving on this test's event loop; capsys takes its
output. One test runs the installed `sentinel` binary, to see what a shell sees.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from cli import commands
from cli.commands import list_commands
from cli.main import main
from edge_agent.actions import ActionSettings
from edge_agent.app import Agent
from hub.app import Hub
from sentinel.tls import TlsFiles
from sentinel.v1 import command_pb2
from tests.command_helpers import open_policy
from tests.conftest import WAIT_S, Pki, eventually, within
from tests.test_clients import BIN, run
from tests.test_observe_path import agent_settings, open_stream

ERROR_LINE = re.compile(r"sentinel: error: \S+ \([A-Z_]+\): .+\n")


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass(frozen=True)
class Cli:
    capsys: pytest.CaptureFixture[str]
    configs: dict[str, Path]

    async def __call__(self, *argv: str, user: str = "operator") -> Result:
        """`sentinel ARGV... --config <user's config>`, in a worker thread."""
        self.capsys.readouterr()
        command = [*argv, "--config", str(self.configs[user])]
        code = await asyncio.wait_for(asyncio.to_thread(main, command), WAIT_S)
        out, err = self.capsys.readouterr()
        assert "Traceback" not in err
        return Result(code, out, err)


def write_config(pki: Pki, hub: Hub, path: Path, user: str) -> Path:
    layout = pki.layout
    config = {
        "hub_address": hub.address,
        "ca_cert": str(layout.ca_cert),
        "client_cert": str(layout.user_cert(user)),
        "client_key": str(layout.user_key(user)),
    }
    path.write_text(json.dumps(config))
    return path


@pytest.fixture
def cli(hub: Hub, pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    users = ("admin", "operator", "viewer")
    return Cli(capsys, {u: write_config(pki, hub, tmp_path / f"{u}.json", u) for u in users})


@pytest.fixture
async def agent(pki: Pki, hub: Hub, tmp_path: Path) -> AsyncIterator[Agent]:
    settings = agent_settings(pki, hub, tmp_path / "agent", role="gpu")
    allowed = ActionSettings(allowed_actions=frozenset({"agent.ping", "node.labels.set"}))
    settings = replace(settings, commands=replace(settings.commands, actions=allowed))
    started = await Agent.start(settings)
    try:
        await within(hub.registry.wait_for(lambda: hub.registry.get("node-a") is not None))
        await within(started.commands.consuming.wait())
        yield started
    finally:
        await started.stop()


def command_id(result: Result) -> str:
    """The id `cmd issue` printed on its first line (a UUID)."""
    assert result.lines, result.err
    first = result.lines[0]
    assert str(uuid.UUID(first)) == first
    return first


def node_row(result: Result, node: str) -> list[str]:
    (row,) = [line.split() for line in result.lines if line.split()[:1] == [node]]
    return row


async def test_ping_issue_wait_get_ls_watch(cli: Cli, agent: Agent) -> None:
    issued = await cli("cmd", "issue", "--node", "node-a", "--action", "agent.ping", "--wait")
    assert issued.code == 0, issued.err
    ping = command_id(issued)
    assert issued.lines[1].split() == ["NODE", "STATE", "REASON", "MESSAGE"]
    assert node_row(issued, "node-a") == ["node-a", "executed", "-", "pong"]

    got = await cli("cmd", "get", ping, user="viewer")
    assert got.code == 0, got.err
    fields = {line.split()[0]: line.split()[1:] for line in got.lines[1:10]}
    assert fields["id"] == [ping]
    assert fields["action"] == ["agent.ping"]
    assert fields["target"] == ["node", "node-a"]
    assert fields["mode"] == ["execute"]
    assert fields["issuer"] == ["spiffe://sentinel.local/user/operator"]
    assert fields["state"] == ["executed"]
    assert node_row(got, "node-a") == ["node-a", "executed", "-", "pong"]

    as_json = (await cli("cmd", "get", ping, "-o", "json")).json()
    assert as_json["command_id"] == ping
    assert as_json["nodes"] == [
        {
            "node_id": "node-a",
            "state": "COMMAND_STATE_EXECUTED",
            "message": "pong",
            "updated_at": as_json["nodes"][0]["updated_at"],
        }
    ]

    watched = await cli("cmd", "watch", ping)
    assert watched.code == 0, watched.err
    (line,) = watched.lines
    when, *rest = line.split()
    assert datetime.fromisoformat(when).tzinfo is not None
    assert rest == ["node-a", "executed", "-", "pong"]

    # Without --wait: the id alone, so that ID=$(sentinel cmd issue ...) works; then watch.
    issued = await cli("cmd", "issue", "--node", "node-a", "--action", "agent.ping")
    assert issued.code == 0, issued.err
    second = command_id(issued)
    assert issued.out == f"{second}\n"
    watched = await cli("cmd", "watch", second)
    assert watched.code == 0, watched.err
    assert watched.lines[-1].split()[1:] == ["node-a", "executed", "-", "pong"]

    listed = await cli("cmd", "ls", user="viewer")
    assert listed.code == 0, listed.err
    assert listed.lines[0].split() == ["ID", "ACTION", "TARGET", "STATE", "NODES", "AGE"]
    rows = [line.split() for line in listed.lines[1:]]
    assert [row[0] for row in rows] == [second, ping]  # newest first
    assert rows[1][1:6] == ["agent.ping", "node-a", "executed", "1/1", "done"]
    limited = (await cli("cmd", "ls", "--limit", "1", "-o", "json")).json()
    assert [c["command_id"] for c in limited["commands"]] == [second]
    filtered = (await cli("cmd", "ls", "--state", "refused", "-o", "json")).json()
    assert filtered == {"commands": []}


async def test_shadow_plans_and_selector_fans_out(cli: Cli, agent: Agent) -> None:
    issued = await cli(
        "cmd", "issue", "-l", "role=gpu", "--action", "agent.ping", "--shadow", "--wait"
    )
    assert issued.code == 0, issued.err
    shadow = command_id(issued)
    assert node_row(issued, "node-a") == ["node-a", "planned", "-", "pong"]
    got = await cli("cmd", "get", shadow)
    fields = {line.split()[0]: line.split()[1:] for line in got.lines[1:10]}
    assert fields["mode"] == ["shadow"]
    assert fields["target"] == ["selector", "role=gpu"]
    assert fields["state"] == ["planned"]
    listed = await cli("cmd", "ls", "--node", "node-a", "--action", "agent.ping")
    assert listed.lines[1].split()[:5] == [shadow, "agent.ping", "(shadow)", "-l", "role=gpu"]

    # A plan with changes: shown under the node table, and nothing changed.
    argv = ("--action", "node.labels.set", "--param", "labels=team=ml,role=", "--shadow")
    issued = await cli("cmd", "issue", "--node", "node-a", *argv, "--wait")
    assert issued.code == 0, issued.err
    plan = [
        "plan for node-a:",
        "  node/node-a labels.role: gpu -> - (remove label role)",
        "  node/node-a labels.team: - -> ml (set label team=ml)",
    ]
    assert issued.lines[-3:] == plan
    got = await cli("cmd", "get", command_id(issued))
    assert got.lines[-3:] == plan
    assert node_row(got, "node-a") == ["node-a", "planned", "-", "2", "label(s)", "changed"]
    watched = await cli("cmd", "watch", command_id(issued))
    assert watched.lines[1:] == plan[1:]
    assert agent.labels.current() == {"role": "gpu"}


async def test_ttl_and_idempotency_key(cli: Cli, agent: Agent) -> None:
    argv = ("cmd", "issue", "--node", "node-a", "--action", "agent.ping", "--ttl", "90s")
    first = await cli(*argv, "--idempotency-key", "k-1")
    again = await cli(*argv, "--idempotency-key", "k-1")
    assert first.code == again.code == 0, first.err + again.err
    assert command_id(first) == command_id(again)
    command = (await cli("cmd", "get", command_id(first), "-o", "json")).json()
    issued_at = datetime.fromisoformat(command["issued_at"])
    not_after = datetime.fromisoformat(command["not_after"])
    assert (not_after - issued_at).total_seconds() == 90
    listed = (await cli("cmd", "ls", "-o", "json")).json()
    assert len(listed["commands"]) == 1


async def test_refusal_exits_1_with_a_summary(cli: Cli, agent: Agent, hub: Hub) -> None:
    # The fleet's policy allows it; this node's own allow-list does not.
    await open_policy(hub)
    await eventually(lambda: agent.commands_parts.policies.version == 2)
    issued = await cli(
        "cmd",
        "issue",
        "--node",
        "node-a",
        "--action",
        "node.systemd.restart",
        "--param",
        "unit=sshd.service",
        "--wait",
    )
    refused = command_id(issued)
    assert issued.code == 1
    row = node_row(issued, "node-a")
    assert row[1] == "refused"
    assert issued.err == (
        f"sentinel: command {refused} did not succeed on 1 of 1 node(s): refused on 1\n"
    )
    watched = await cli("cmd", "watch", refused)
    assert watched.code == 1
    assert watched.lines[0].split()[1:4] == ["node-a", "refused", row[2]]


async def test_errors_are_one_clear_line_and_issue_nothing(cli: Cli, hub: Hub) -> None:
    # The real binary, as a shell runs it: one line on stderr, nothing on stdout.
    code, out, err = await run(
        str(BIN / "sentinel"),
        "cmd",
        "issue",
        "--selector",
        "role=gpu",
        "--action",
        "k8s.deployment.scale",
        "--param",
        "namespace=x",
        "--param",
        "name=y",
        "--param",
        "replicas=2",
        "--config",
        str(cli.configs["operator"]),
    )
    assert (code, out) == (1, "")
    assert ERROR_LINE.fullmatch(err), err
    assert err.startswith("sentinel: error: INVALID_ARGUMENT (BAD_TARGET): ")

    bad_param = await cli(
        "cmd",
        "issue",
        "--node",
        "node-a",
        "--action",
        "k8s.deployment.scale",
        "--param",
        "namespace=x",
        "--param",
        "name=y",
        "--param",
        "replicas=abc",
    )
    assert (bad_param.code, bad_param.out) == (1, "")
    assert bad_param.err == (
        "sentinel: error: action k8s.deployment.scale parameter 'replicas' must be an int, "
        "got 'abc'\n"
    )
    for argv, expected in (
        (("--node", "node-a", "--action", "agent.nope"), "unknown action 'agent.nope'"),
        (("--node", "node-a", "--action", "agent.ping", "--ttl", "5x"), 'invalid duration "5x"'),
        (
            ("--node", "node-a", "--action", "node.systemd.restart"),
            "action node.systemd.restart needs parameter 'unit'",
        ),
        (("--node", "ghost", "--action", "agent.ping"), "NOT_FOUND (UNKNOWN_NODE): "),
        (("-l", "role=none", "--action", "agent.ping"), "(NO_MATCHING_NODES): "),
    ):
        failed = await cli("cmd", "issue", *argv)
        assert (failed.code, failed.out) == (1, ""), argv
        assert failed.err.startswith("sentinel: error: ") and expected in failed.err, failed.err
        assert len(failed.err.splitlines()) == 1

    denied = await cli("cmd", "issue", "--node", "node-a", "--action", "agent.ping", user="viewer")
    assert (denied.code, denied.out) == (1, "")
    assert ERROR_LINE.fullmatch(denied.err)
    assert denied.err.startswith("sentinel: error: PERMISSION_DENIED (ROLE_TOO_LOW): ")

    missing = await cli("cmd", "get", str(uuid.uuid4()))
    assert missing.code == 1
    assert missing.err.startswith("sentinel: error: NOT_FOUND (COMMAND_NOT_FOUND): ")
    assert (await cli("cmd", "ls", "-o", "json")).json() == {"commands": []}
    assert hub.commands.command_ids() == []


async def test_keys_show_rotate_retire(cli: Cli, agent: Agent) -> None:
    shown = await cli("keys", "show", "-o", "json", user="viewer")
    assert shown.code == 0, shown.err
    before = shown.json()
    (old,) = [k for k in before["keys"] if k["purpose"] == "KEY_PURPOSE_COMMAND"]
    (policy,) = [k for k in before["keys"] if k["purpose"] == "KEY_PURPOSE_POLICY"]
    (audit,) = [k for k in before["keys"] if k["purpose"] == "KEY_PURPOSE_AUDIT"]
    assert before["command_signing_key_id"] == old["key_id"]
    version = int(before["version"])

    table = await cli("keys", "show")
    assert node_row(table, old["key_id"]) == [old["key_id"], "command", "yes"]
    assert ["version", str(version)] in [line.split() for line in table.lines]

    denied = await cli("keys", "rotate", user="operator")
    assert denied.code == 1
    assert denied.err.startswith("sentinel: error: PERMISSION_DENIED (ROLE_TOO_LOW): ")

    rotated = await cli("keys", "rotate", user="admin")
    assert rotated.code == 0, rotated.err
    after = (await cli("keys", "show", "-o", "json")).json()
    new = after["command_signing_key_id"]
    assert new != old["key_id"]
    assert int(after["version"]) == version + 1
    assert rotated.out == f"signing with new command key {new} (keyset version {version + 1})\n"
    assert {k["key_id"] for k in after["keys"]} == {
        old["key_id"],
        new,
        policy["key_id"],
        audit["key_id"],
    }
    await eventually(lambda: agent.trust.version == version + 1)

    # The agent verifies a command signed with the new key.
    ping = await cli("cmd", "issue", "--node", "node-a", "--action", "agent.ping", "--wait")
    assert ping.code == 0, ping.err + ping.out

    in_use = await cli("keys", "retire", new, user="admin")
    assert in_use.code == 1
    assert in_use.err.startswith("sentinel: error: FAILED_PRECONDITION (KEY_IN_USE): ")
    retired = await cli("keys", "retire", old["key_id"], user="admin")
    assert retired.code == 0, retired.err
    assert retired.out == f"retired key {old['key_id']} (keyset version {version + 2})\n"
    await eventually(lambda: agent.trust.version == version + 2)
    assert agent.trust.keyset is not None
    assert set(agent.trust.keyset.keys) == {new, policy["key_id"], audit["key_id"]}
    table = await cli("keys", "show")
    assert node_row(table, new) == [new, "command", "yes"]
    assert old["key_id"] not in table.out


class PagedStub:
    """ListCommands over `ids`, `page_size` at most per page, as the hub pages."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids
        self.requests: list[command_pb2.ListCommandsRequest] = []

    def ListCommands(
        self, request: command_pb2.ListCommandsRequest, timeout: float
    ) -> command_pb2.ListCommandsResponse:
        copy = command_pb2.ListCommandsRequest()
        copy.CopyFrom(request)
        self.requests.append(copy)
        start = int(request.page_token or 0)
        end = start + request.page_size
        page = [command_pb2.Command(command_id=i) for i in self.ids[start:end]]
        token = str(end) if end < len(self.ids) else ""
        return command_pb2.ListCommandsResponse(commands=page, next_page_token=token)


def test_ls_pages_until_the_limit() -> None:
    ids = [f"c{i}" for i in range(1200)]
    stub = PagedStub(ids)
    request = command_pb2.ListCommandsRequest(action="agent.ping")
    listed = list_commands(stub, request, 1100)  # type: ignore[arg-type]
    assert [c.command_id for c in listed] == ids[:1100]
    assert [(r.page_size, r.page_token) for r in stub.requests] == [
        (500, ""),
        (500, "500"),
        (100, "1000"),
    ]
    assert {r.action for r in stub.requests} == {"agent.ping"}
    few = list_commands(PagedStub(ids[:3]), request, 50)  # type: ignore[arg-type]
    assert [c.command_id for c in few] == ids[:3]
    assert request == command_pb2.ListCommandsRequest(action="agent.ping")  # not changed


async def test_wait_gives_up_on_a_silent_node_after_expiry(
    cli: Cli,
    pki: Pki,
    channel_to: Callable[[TlsFiles], grpc.aio.Channel],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # node-b is connected (so the hub knows it) but consumes no commands.
    call, _ = await open_stream(channel_to(pki.node("node-b")), "node-b")
    monkeypatch.setattr(commands, "WATCH_GRACE", timedelta(0))
    argv = ("--node", "node-b", "--action", "agent.ping", "--ttl", "1s", "--wait")
    issued = await cli("cmd", "issue", *argv)
    pending = command_id(issued)
    assert (issued.code, issued.out) == (1, f"{pending}\n")
    assert issued.err.startswith(f"sentinel: error: command {pending}: no result from node-b by ")
    assert issued.err.endswith("are they offline?\n")
    watched = await cli("cmd", "watch", pending)
    assert watched.code == 1
    assert watched.lines[0].split()[1:] == ["node-b", "pending", "-"]
    call.cancel()
