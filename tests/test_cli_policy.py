"""`sentinel policy ...`, `sentinel cmd approve` and `--break-glass`, end to end.

Against a real hub (and, where a command must run, a real agent), the CLI run in a
worker thread as in `tests.test_cli_commands`; `policy test` is offline, so it runs
directly, without a hub or a config.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import policy
from cli import commands
from cli import policy as policy_cli
from cli.main import main
from edge_agent.app import Agent
from hub.app import Hub
from tests.command_helpers import UNIT, calls, quiet_agent_settings, recording_systemctl, started
from tests.conftest import Pki, eventually, within
from tests.test_cli_commands import ERROR_LINE, Cli, Result, command_id, node_row, write_config

ADMIN = "spiffe://sentinel.local/user/admin"
OPERATOR = "spiffe://sentinel.local/user/operator"

BUNDLE = """\
# Year-end change freeze for node actions; pings rate-limited; scaling needs a human.
version: 2
expires_at: 2100-01-01T00:00:00Z
allow:
  actions: ["*"]
  shadow: true
safe_actions: [agent.ping]
rules:
  - id: year-end
    kind: freeze
    actions: ["node.*"]
    selector: "role=gpu"
    windows:
      - once: {start: "2026-12-20T00:00:00Z", end: "2027-01-04T00:00:00Z"}
  - id: pings
    kind: rate_limit
    actions: [agent.ping]
    limit: 2
    window: 1h
    per: node
  - id: manual-scale
    kind: require_approval
    actions: [k8s.deployment.scale]
  - id: radius
    kind: blast_radius
    actions: [k8s.deployment.scale]
    max_percent: 25
"""
INSIDE, OUTSIDE = "2026-12-24T10:30:00Z", "2027-01-04T00:00:00Z"
INSIDE_SENTENCE = (
    "denied by freeze window 'year-end': Thursday 2026-12-24 10:30 UTC is inside the one-off "
    "window 2026-12-20T00:00:00Z to 2027-01-04T00:00:00Z"
)

# Frozen now and for decades (agent.ping, twice over); restarts wait for an admin.
LIVE_BUNDLE = """\
version: 2
expires_at: 2100-01-01T00:00:00Z
allow:
  actions: ["*"]
  shadow: true
safe_actions: [agent.ping]
rules:
  - id: freeze-all
    kind: freeze
    actions: [agent.ping]
    windows:
      - once: {start: "2000-01-01T00:00:00Z", end: "2100-01-01T00:00:00Z"}
  - id: no-pings
    kind: freeze
    actions: [agent.ping]
    windows:
      - once: {start: "2001-01-01T00:00:00Z", end: "2099-01-01T00:00:00Z"}
  - id: restarts-need-a-human
    kind: require_approval
    actions: [node.systemd.restart]
"""


@pytest.fixture
def cli(hub: Hub, pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    users = ("admin", "operator", "viewer")
    return Cli(capsys, {u: write_config(pki, hub, tmp_path / f"{u}.json", u) for u in users})


@pytest.fixture
async def agent(pki: Pki, hub: Hub, cli: Cli, tmp_path: Path) -> AsyncIterator[Agent]:
    """node-a (role=gpu) under LIVE_BUNDLE, applied with the CLI; restarts are recorded."""
    applied = await cli("policy", "apply", str(write(tmp_path, LIVE_BUNDLE)), user="admin")
    assert applied.code == 0, applied.err
    script, _ = recording_systemctl(tmp_path)
    settings = quiet_agent_settings(pki, hub, tmp_path / "agent", "node-a", script, role="gpu")
    agent = await started(settings, hub)
    try:
        await within(hub.registry.wait_for(lambda: hub.registry.get("node-a") is not None))
        assert agent.commands_parts.policies.version == 2
        yield agent
    finally:
        await agent.stop()


def write(directory: Path, text: str, name: str = "policy.yaml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def offline(capsys: pytest.CaptureFixture[str], *argv: str) -> Result:
    """`sentinel ARGV...` with no config at all (and none in the environment)."""
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return Result(code, out, err)


# -- apply, show, versions ---------------------------------------------------------------


async def test_apply_show_versions(
    cli: Cli, hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, BUNDLE)
    digest = hashlib.sha256(BUNDLE.encode()).hexdigest()
    applied = await cli("policy", "apply", str(path), user="admin")
    assert (applied.code, applied.err) == (0, "")
    assert applied.out == f"policy version 2 applied (sha256 {digest[:12]})\n"
    assert hub.policies.current.bundle.source == BUNDLE.encode()

    shown = await cli("policy", "show", user="viewer")
    assert (shown.code, shown.out) == (0, BUNDLE)  # the YAML exactly as authored
    first = await cli("policy", "show", "--version", "1")
    assert first.out == policy.DEFAULT_POLICY.decode()

    table = await cli("policy", "show", "-o", "table")
    assert table.code == 0, table.err
    fields = {line.split()[0]: line.split()[1:] for line in table.lines[1:6]}
    assert fields["version"] == ["2"]
    assert fields["author"] == [ADMIN]
    assert fields["sha256"] == [digest]
    assert datetime.fromisoformat(fields["created"][0]) <= datetime.now(UTC)
    assert fields["expires"] == ["2100-01-01T00:00:00Z"]
    rules = table.lines[table.lines.index("ID            KIND              ACTIONS") + 1 :]
    assert [line.split() for line in rules] == [
        ["year-end", "freeze", "node.*"],
        ["pings", "rate_limit", "agent.ping"],
        ["manual-scale", "require_approval", "k8s.deployment.scale"],
        ["radius", "blast_radius", "k8s.deployment.scale"],
    ]
    as_json = (await cli("policy", "show", "-o", "json")).json()
    assert (as_json["version"], as_json["source_yaml"]) == ("2", BUNDLE)
    assert as_json["author"] == ADMIN

    versions = await cli("policy", "versions", user="viewer")
    assert versions.code == 0, versions.err
    assert versions.lines[0].split() == ["VERSION", "AUTHOR", "CREATED", "EXPIRES", "SHA256"]
    newest, oldest = (line.split() for line in versions.lines[1:])
    assert newest[:2] == ["2", ADMIN]
    assert newest[3:] == ["2100-01-01T00:00:00Z", digest[:12]]
    assert oldest[:4] == ["1", "sentinel", "(built-in", "default)"]
    assert [
        b["version"] for b in (await cli("policy", "versions", "-o", "json")).json()["bundles"]
    ] == ["2", "1"]
    assert len((await cli("policy", "versions", "--limit", "1")).lines) == 2

    # Not newer than the current version: one line, nothing stored.
    for version in ("2", "1"):
        again = write(tmp_path, BUNDLE.replace("version: 2", f"version: {version}"), "old.yaml")
        refused = await cli("policy", "apply", str(again), user="admin")
        assert (refused.code, refused.out) == (1, "")
        assert ERROR_LINE.fullmatch(refused.err), refused.err
        assert refused.err.startswith(
            "sentinel: error: FAILED_PRECONDITION (POLICY_VERSION_NOT_NEWER): "
            f"policy version {version} is not newer than the current version 2"
        )

    # A typo: one line naming the path, found before the hub is asked.
    typo = write(
        tmp_path, BUNDLE.replace("version: 2", "version: 3").replace("limit: 2", "limit: two")
    )
    bad = await cli("policy", "apply", str(typo), user="admin")
    assert (bad.code, bad.out) == (1, "")
    assert bad.err == (
        f"sentinel: error: {typo}: rules[1].limit: must be an integer, not string 'two'\n"
    )
    broken = write(tmp_path, "version: 3\nrules: [\n", "broken.yaml")
    bad = await cli("policy", "apply", str(broken), user="admin")
    assert bad.code == 1
    assert re.fullmatch(
        rf"sentinel: error: {broken}: bundle: invalid YAML at line \d+.*\n", bad.err
    )
    # The hub checks it too (a client of another version may let it through).
    monkeypatch.setattr(policy_cli, "load_local", lambda path, source: None)
    bad = await cli("policy", "apply", str(typo), user="admin")
    assert bad.code == 1
    assert bad.err == (
        "sentinel: error: INVALID_ARGUMENT (POLICY_INVALID): "
        "rules[1].limit: must be an integer, not string 'two'\n"
    )
    assert hub.policies.current.bundle.version == 2

    for user in ("viewer", "operator"):
        denied = await cli("policy", "apply", str(path), user=user)
        assert denied.code == 1
        assert ERROR_LINE.fullmatch(denied.err), denied.err
        assert denied.err.startswith("sentinel: error: PERMISSION_DENIED (ROLE_TOO_LOW): ")
    missing = await cli("policy", "show", "--version", "9")
    assert missing.code == 1
    assert missing.err == "sentinel: error: NOT_FOUND (POLICY_NOT_FOUND): no policy version 9\n"
    unreadable = await cli("policy", "apply", str(tmp_path / "nope.yaml"), user="admin")
    assert unreadable.code == 1
    assert unreadable.err.startswith(f"sentinel: error: cannot read policy {tmp_path}/nope.yaml")
    assert [v.bundle.version for v in hub.policies.versions()] == [2, 1]


# -- test (offline) ----------------------------------------------------------------------


def test_policy_test_offline(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SENTINEL_CONFIG", raising=False)
    path = str(write(tmp_path, BUNDLE))
    restart = ("--action", "node.systemd.restart", "--param", f"unit={UNIT}", "--node", "n1")

    inside = offline(
        capsys, "policy", "test", path, *restart, "--label", "role=gpu", "--at", INSIDE
    )
    assert (inside.code, inside.err) == (1, "")
    assert inside.lines == ["DENY", INSIDE_SENTENCE]

    outside = offline(
        capsys, "policy", "test", path, *restart, "--label", "role=gpu", "--at", OUTSIDE
    )
    assert (outside.code, outside.err) == (0, "")
    assert outside.lines == [
        "ALLOW",
        "allowed by the allow list: node.systemd.restart (execute) matches '*' in allow.actions",
        "allowed by freeze window 'year-end': no freeze window is active",
    ]
    # The rule's selector: a node without role=gpu is not frozen.
    other = offline(capsys, "policy", "test", path, *restart, "--label", "role=cpu", "--at", INSIDE)
    assert other.lines == [
        "ALLOW",
        "allowed by the allow list: node.systemd.restart (execute) matches '*' in allow.actions",
    ]
    glass = offline(
        capsys, "policy", "test", path, *restart, "--label", "role=gpu", "--at", INSIDE,
        "--break-glass",
    )  # fmt: skip
    assert glass.code == 0
    assert glass.lines[-1] == (
        "allowed by freeze window 'year-end': break-glass override: Thursday 2026-12-24 10:30 "
        "UTC is inside the one-off window 2026-12-20T00:00:00Z to 2027-01-04T00:00:00Z"
    )
    shadow = offline(
        capsys, "policy", "test", path, *restart, "--label", "role=gpu", "--at", INSIDE, "--shadow"
    )
    assert (shadow.code, shadow.lines[0]) == (0, "ALLOW")

    # A rate limit, from a history in the agent's format: two pings in the last hour.
    at = datetime(2026, 12, 24, 10, 30, tzinfo=UTC)
    log = policy.SlidingWindowLog()
    for minutes in (90, 50, 10):
        log.record("pings|node|n1", at - timedelta(minutes=minutes))
    history = tmp_path / "history"
    history.write_text("".join(f"{line}\n" for line in log.to_lines()))
    ping = ("policy", "test", path, "--action", "agent.ping", "--node", "n1", "--at", INSIDE)
    limited = offline(capsys, *ping, "--history", str(history))
    assert limited.code == 1
    assert limited.lines == [
        "DENY",
        "denied by rate limit 'pings': 2 matching actions on n1 in the last 1h, the limit is 2",
    ]
    assert offline(capsys, *ping).code == 0  # no history: nothing counted
    history.write_text("1798108200000000\n")
    bad = offline(capsys, *ping, "--history", str(history))
    assert (bad.code, bad.out) == (1, "")
    assert bad.err == (
        f"sentinel: error: {history}: rate-limit history line 1: expected '<epoch micros> <key>'\n"
    )

    # A fleet rule without its input (the fleet size) asks for a human: exit 1 as well.
    scale = offline(
        capsys, "policy", "test", path, "--action", "k8s.deployment.scale", "--node", "n1",
        "--param", "namespace=ml", "--param", "name=trainer", "--param", "replicas=2",
    )  # fmt: skip
    assert scale.code == 1
    assert scale.lines == [
        "NEEDS_APPROVAL",
        "held for approval by rule 'manual-scale': k8s.deployment.scale requires approval",
        "held for approval by blast radius 'radius': 1 node would be changing at once, and the "
        "fleet size is unknown, so max_percent cannot be checked",
    ]

    for argv, expected in (
        (("--action", "agent.nope", "--node", "n1"), "unknown action 'agent.nope'"),
        (("--action", "agent.ping", "--node", "n1", "--at", "noon"), 'invalid time "noon"'),
        (("--action", "agent.ping", "--node", "n1", "--label", "x"), 'invalid label "x"'),
        (("--action", "node.systemd.restart", "--node", "n1"), "needs parameter 'unit'"),
    ):
        failed = offline(capsys, "policy", "test", path, *argv)
        assert (failed.code, failed.out) == (1, ""), argv
        assert failed.err.startswith("sentinel: error: ") and expected in failed.err, failed.err
        assert len(failed.err.splitlines()) == 1
    typo = write(tmp_path, BUNDLE.replace("kind: freeze", "kind: freez"), "typo.yaml")
    failed = offline(capsys, "policy", "test", str(typo), "--action", "agent.ping", "--node", "n1")
    assert failed.code == 1
    assert failed.err.startswith(f"sentinel: error: {typo}: rules[0].kind: ")


# -- the policy gate: denials, approvals, break-glass ------------------------------------


async def test_denied_held_approved_and_break_glass(
    cli: Cli, hub: Hub, agent: Agent, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ping = ("cmd", "issue", "--node", "node-a", "--action", "agent.ping")
    denied = await cli(*ping)
    assert (denied.code, denied.out) == (1, "")
    head, *violations = denied.err.splitlines()
    assert head.startswith(
        "sentinel: error: FAILED_PRECONDITION (POLICY_DENIED): policy version 2 denies "
        "agent.ping: denied by freeze window 'freeze-all': "
    )
    assert head.endswith(" (and 1 more)")
    assert [v.split(": ")[0] for v in violations] == [
        "  - freeze-all on node-a",
        "  - no-pings on node-a",
    ]
    assert violations[1].endswith(
        "is inside the one-off window 2001-01-01T00:00:00Z to 2099-01-01T00:00:00Z"
    )
    assert hub.commands.command_ids() == []

    # The same answer from the hub's EvaluatePolicy; and after the windows, allowed.
    evaluated = await cli("policy", "evaluate", "--node", "node-a", "--action", "agent.ping")
    assert evaluated.code == 1
    assert evaluated.lines[0] == "DENY"
    assert [line.split(": ")[0] for line in evaluated.lines[1:]] == [
        "denied by freeze window 'freeze-all'",
        "denied by freeze window 'no-pings'",
    ]
    assert evaluated.lines[2].endswith(violations[1].split(" is inside ")[1])
    # The hub evaluates within a year of now (every recurring window costs time per year);
    # `policy test`, offline, answers for any time.
    later = await cli(
        "policy", "evaluate", "--node", "node-a", "--action", "agent.ping",
        "--at", "2100-06-01T00:00:00Z", user="viewer",
    )  # fmt: skip
    assert later.code == 1
    assert later.err.startswith("sentinel: error: INVALID_ARGUMENT (BAD_TIME): ")
    as_json = (await cli("policy", "evaluate", *ping[2:], "-o", "json")).json()
    assert as_json["verdict"] == "VERDICT_DENY"
    assert as_json["policy_version"] == "2"
    ghost = await cli("policy", "evaluate", "--node", "ghost", "--action", "agent.ping")
    assert ghost.err.startswith("sentinel: error: NOT_FOUND (UNKNOWN_NODE): ")

    # Break-glass: admins only, with a reason, for at most an hour.
    glass = ("--break-glass", "incident 42: node-a unreachable")
    refused = await cli(*ping, *glass)
    assert (refused.code, refused.out) == (1, "")
    assert refused.err == (
        "sentinel: error: PERMISSION_DENIED (BREAK_GLASS_ADMIN_ONLY): "
        "only an admin may break the glass\n"
    )
    too_long = await cli(*ping, *glass, "--break-glass-ttl", "2h", user="admin")
    assert too_long.err.startswith("sentinel: error: INVALID_ARGUMENT (BREAK_GLASS_TTL): ")
    no_reason = await cli(*ping, "--break-glass-ttl", "5m", user="admin")
    assert no_reason.err == "sentinel: error: --break-glass-ttl needs --break-glass REASON\n"
    broken = await cli(*ping, *glass, "--break-glass-ttl", "5m", "--wait", user="admin")
    assert broken.code == 0, broken.err
    assert node_row(broken, "node-a") == ["node-a", "executed", "-", "pong"]
    got = await cli("cmd", "get", command_id(broken))
    (row,) = [line for line in got.lines if line.startswith("break-glass")]
    match = re.fullmatch(r"break-glass +by (\S+) until (\S+): incident 42: node-a unreachable", row)
    assert match is not None, row
    by, until = match.groups()
    assert by == ADMIN
    assert (
        timedelta(minutes=4)
        < datetime.fromisoformat(until) - datetime.now(UTC)
        <= timedelta(minutes=5)
    )

    # A restart waits for an admin who did not issue it.
    restart = ("cmd", "issue", "--node", "node-a", "--action", "node.systemd.restart")
    held = await cli(*restart, "--param", f"unit={UNIT}")
    assert held.code == 0, held.err
    held_id = command_id(held)
    assert held.out == f"{held_id}\n"
    assert held.err == f"awaiting approval: sentinel cmd approve {held_id}\n"
    got = await cli("cmd", "get", held_id, user="viewer")
    fields = {line.split()[0]: line.split()[1:] for line in got.lines[1:12] if line}
    assert fields["state"] == ["awaiting_approval"]
    assert fields["approvals"] == ["0", "of", "1"]
    assert node_row(got, "node-a") == ["node-a", "awaiting_approval", "-", "-"]

    by_operator = await cli("cmd", "approve", held_id)
    assert by_operator.err.startswith("sentinel: error: PERMISSION_DENIED (ROLE_TOO_LOW): ")
    own = await cli(*restart, "--param", f"unit={UNIT}", user="admin")
    self_approved = await cli("cmd", "approve", command_id(own), user="admin")
    assert (self_approved.code, self_approved.out) == (1, "")
    assert self_approved.err == (
        "sentinel: error: FAILED_PRECONDITION (SELF_APPROVAL): "
        "a command needs another person's approval than its issuer's\n"
    )
    script = tmp_path / "systemctl.calls"
    assert calls(script) == []

    approved = await cli("cmd", "approve", held_id, "--comment", "change 7", "--wait", user="admin")
    assert approved.code == 0, approved.err
    assert approved.lines[0] == f"{held_id} approved by {ADMIN}"
    assert node_row(approved, "node-a")[:2] == ["node-a", "executed"]
    await eventually(lambda: calls(script) == [f"restart -- {UNIT}"])
    got = await cli("cmd", "get", held_id)
    fields = {line.split()[0]: line.split()[1:] for line in got.lines[1:12] if line}
    assert fields["issuer"] == [OPERATOR]
    assert fields["state"] == ["executed"]
    assert fields["approvals"] == ["1", "of", "1"]
    assert fields["approved"][:2] == ["by", ADMIN]
    assert fields["approved"][-2:] == ["change", "7"]
    again = await cli("cmd", "approve", held_id, user="admin")
    assert again.err.startswith("sentinel: error: FAILED_PRECONDITION (NOT_AWAITING_APPROVAL): ")

    # --wait on a command nobody approves: gives up after expiry, and says why.
    monkeypatch.setattr(commands, "WATCH_GRACE", timedelta(0))
    waited = await cli(*restart, "--param", f"unit={UNIT}", "--ttl", "1s", "--wait")
    waiting = command_id(waited)
    assert waited.code == 1
    first, second = waited.err.splitlines()
    assert first == f"awaiting approval: sentinel cmd approve {waiting}"
    assert second.startswith(
        f"sentinel: error: command {waiting} is still awaiting approval (expired at "
    )
    assert calls(script) == [f"restart -- {UNIT}"]
