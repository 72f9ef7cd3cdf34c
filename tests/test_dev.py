"""`sentinel dev` as a user runs it: one process with embedded NATS, hub and agent;
the fleet view shows this machine with fresh host metrics; Ctrl-C stops it cleanly."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from sentinel import nats_tls
from sentinel.tls import TlsFiles
from tests.test_metrics import promtool_findings, scrape

BIN = Path(sys.executable).parent
NATS_KEYS = (
    "nats_ca",
    "nats_observer_cert",
    "nats_observer_key",
    "nats_admin_cert",
    "nats_admin_key",
)
DEADLINE_S = 60.0


def test_sentinel_dev_end_to_end(tmp_path: Path) -> None:
    data_dir = tmp_path / "dev"
    process = subprocess.Popen(
        [
            str(BIN / "sentinel"),
            "dev",
            "--data-dir",
            str(data_dir),
            "--listen",
            "127.0.0.1:0",
            "--nvml-replay",
            "builtin:h200",
            "--interval",
            "1s",
            "--label",
            "team=ml",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal job has
    )
    try:
        banner = _read_until(process, "Press Ctrl-C to stop.")
        config_path = data_dir / "dev.json"
        config = json.loads(config_path.read_text())
        assert {
            "agent_metrics_url",
            "hub_metrics_url",
            "hub_address",
            "nats_url",
            "certs_dir",
            "ca_cert",
            "admin_cert",
            "admin_key",
            "node_id",
            *NATS_KEYS,
        } <= config.keys()
        for key in ("certs_dir", "ca_cert", "admin_cert", "admin_key", *NATS_KEYS):
            assert Path(config[key]).is_absolute() and Path(config[key]).exists()
        assert f"export SENTINEL_CONFIG={config_path}" in banner
        assert f"--tlscert {config['nats_observer_cert']}" in banner
        assert config["nats_url"].startswith("tls://127.0.0.1:")
        assert asyncio.run(_one_telemetry_batch_as_observer(config))
        assert "grpcurl -cacert" in banner and config["hub_address"] in banner

        node = _wait_for_node_with_sample(config_path, config["node_id"])
        sample_time = datetime.fromisoformat(node["latest_sample"]["time"].replace("Z", "+00:00"))
        assert (datetime.now(UTC) - sample_time).total_seconds() < 10
        assert node["state"] == "NODE_STATE_ONLINE"
        assert node["labels"] == {"team": "ml"}
        assert int(node["latest_sample"]["host"]["memory_total_bytes"]) > 0
        assert node["gpus"][0]["name"] == "NVIDIA H200"

        grpcurl = subprocess.run(
            [
                str(BIN / "grpcurl"),
                "-cacert",
                config["ca_cert"],
                "-cert",
                config["admin_cert"],
                "-key",
                config["admin_key"],
                config["hub_address"],
                "list",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert "sentinel.v1.FleetService" in grpcurl.stdout.split()

        # The Act half, as the README shows it: ping this node, then read the result.
        cli_env = {**os.environ, "SENTINEL_CONFIG": str(config_path)}
        issued = subprocess.run(
            [str(BIN / "sentinel"), "cmd", "issue", "--node", config["node_id"],
             "--action", "agent.ping", "--wait"],
            capture_output=True, text=True, timeout=60, env=cli_env, check=False,
        )  # fmt: skip
        assert issued.returncode == 0, issued.stderr
        command_id = issued.stdout.splitlines()[0]
        shown = subprocess.run(
            [str(BIN / "sentinel"), "cmd", "get", command_id, "-o", "json"],
            capture_output=True, text=True, timeout=30, env=cli_env, check=True,
        )  # fmt: skip
        command = json.loads(shown.stdout)
        assert command["state"] == "COMMAND_STATE_EXECUTED"
        assert [(n["node_id"], n["message"]) for n in command["nodes"]] == [
            (config["node_id"], "pong")
        ]

        agent_metrics = scrape(config["agent_metrics_url"])
        assert agent_metrics.value("DCGM_FI_DEV_GPU_TEMP", gpu="0") > 0
        assert agent_metrics.value("sentinel_agent_hub_connected") == 1
        assert promtool_findings(agent_metrics.text, tolerate_dcgm=True) == []
        hub_metrics = scrape(config["hub_metrics_url"])
        assert hub_metrics.value("sentinel_hub_telemetry_batches_total") >= 1
        assert hub_metrics.value("sentinel_hub_agents_connected") == 1
        assert promtool_findings(hub_metrics.text, tolerate_dcgm=False) == []
        children = psutil.Process(process.pid).children(recursive=True)
        assert [c.name() for c in children] == ["nats-server"]
    finally:
        # Ctrl-C at a terminal signals the whole foreground process group.
        os.killpg(process.pid, signal.SIGINT)
        stop_started = time.monotonic()
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert time.monotonic() - stop_started < 10
    assert "stopping..." in out
    assert "Traceback" not in err
    assert "NATS" not in err  # the hub stopped its clients before the server
    assert not any(c.is_running() for c in children)


def _read_until(process: subprocess.Popen[str], marker: str) -> str:
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise AssertionError(
                f"sentinel dev exited: {process.stderr.read() if process.stderr else ''}"
            )
        lines.append(line)
        if marker in line:
            return "".join(lines)
    raise AssertionError(f"no {marker!r} within {DEADLINE_S} s")


def _wait_for_node_with_sample(config_path: Path, node_id: str) -> dict[str, object]:
    """Poll through the real CLI (each call a full round trip) until the node has a sample."""
    env = {**os.environ, "SENTINEL_CONFIG": str(config_path)}
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        result = subprocess.run(
            [str(BIN / "sentinel"), "fleet", "ls", "-o", "json"],
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
        )
        assert result.returncode == 0, result.stderr
        nodes = {n["node_id"]: n for n in json.loads(result.stdout)["nodes"]}
        if node_id in nodes and "latest_sample" in nodes[node_id]:
            return nodes[node_id]  # type: ignore[no-any-return]
    raise AssertionError(f"node {node_id} never showed a sample")


def sentinel(*args: str) -> list[str]:
    return [str(BIN / "sentinel"), *args]


def make_certs(tmp_path: Path, *node_ids: str) -> Path:
    """A CA (and node certificates) made through the real CLI."""
    certs_dir = tmp_path / "certs"
    subprocess.run(
        sentinel("certs", "init", "--dir", str(certs_dir)), check=True, capture_output=True
    )
    for node_id in node_ids:
        subprocess.run(
            sentinel("certs", "issue", "--dir", str(certs_dir), "--node", node_id),
            check=True,
            capture_output=True,
        )
    return certs_dir


def start_hub(certs_dir: Path, data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    """A `sentinel hub` process on a free port, and its address once it listens."""
    hub = subprocess.Popen(
        sentinel(
            "hub", "--certs", str(certs_dir), "--listen", "127.0.0.1:0", "--data-dir", str(data_dir)
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    banner = _read_until(hub, "sentinel hub listening on")
    return hub, banner.split()[4]


def test_hub_and_agent_processes_stop_cleanly_on_sigterm(tmp_path: Path) -> None:
    certs_dir = make_certs(tmp_path, "edge-1")
    hub, address = start_hub(certs_dir, tmp_path / "hub")
    try:
        agent = subprocess.Popen(
            sentinel(
                "agent",
                "run",
                "--hub",
                address,
                "--certs",
                str(certs_dir),
                "--data-dir",
                str(tmp_path / "agent"),
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        _read_until(agent, "sentinel agent edge-1")
        agent.send_signal(signal.SIGTERM)
        _, agent_err = agent.communicate(timeout=30)
        assert agent.returncode == 0, agent_err
        assert "Traceback" not in agent_err
    finally:
        hub.send_signal(signal.SIGTERM)
        _, hub_err = hub.communicate(timeout=30)
    assert hub.returncode == 0, hub_err
    assert "hub stopped" in hub_err
    # Closing a NATS connection over TLS makes asyncio warn (nats-py's upgraded stream);
    # an operator must not read that noise at every stop.
    assert "eof_received" not in agent_err + hub_err


def test_agent_refuses_a_node_id_that_is_not_its_certificates(tmp_path: Path) -> None:
    certs_dir = make_certs(tmp_path, "edge-1")
    result = subprocess.run(
        sentinel(
            "agent",
            "run",
            "--hub",
            "127.0.0.1:1",
            "--certs",
            str(certs_dir),
            "--data-dir",
            str(tmp_path / "agent"),
            "--node-id",
            "edge-2",
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.endswith(
        f"sentinel: error: no certificate for node 'edge-2' at "
        f"{certs_dir / 'nodes' / 'edge-2.crt'}\n"
    )
    assert "Traceback" not in result.stderr


def test_embedded_nats_dies_with_a_killed_hub(tmp_path: Path) -> None:
    hub, _ = start_hub(make_certs(tmp_path), tmp_path / "hub")
    try:
        (nats_server,) = [
            c for c in psutil.Process(hub.pid).children() if c.name() == "nats-server"
        ]
    finally:
        hub.kill()
        hub.communicate(timeout=30)
    # SIGKILL gives the hub no chance to clean up: the kernel must end the child.
    nats_server.wait(timeout=20)
    assert not nats_server.is_running()


def test_a_new_node_joins_sentinel_dev_with_the_line_token_create_prints(tmp_path: Path) -> None:
    process = subprocess.Popen(
        sentinel("dev", "--data-dir", str(tmp_path / "dev"), "--listen", "127.0.0.1:0"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    joined = None
    try:
        _read_until(process, "Press Ctrl-C to stop.")
        config_path = tmp_path / "dev" / "dev.json"
        env = {
            **os.environ,
            "SENTINEL_CONFIG": str(config_path),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        created = subprocess.run(
            sentinel("certs", "token", "create", "--ttl", "10m", "--node", "joiner",
                     "--label", "team=new", "--data-dir", str(tmp_path / "joiner")),
            capture_output=True, text=True, timeout=30, env=env, check=False,
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        lines = created.stdout.splitlines()
        assert len(lines) == 1 and lines[0].startswith("sentinel agent enroll --hub ")
        assert " && sentinel agent run --data-dir " in lines[0]
        joined = subprocess.Popen(
            [*lines[0].split(" && ")[0].split(), "--log-level", "warning"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        out, err = joined.communicate(timeout=60)
        assert joined.returncode == 0, err
        assert out.startswith("enrolled as node joiner")
        # The printed line as a whole, through a shell, as the operator pastes it.
        (tmp_path / "joiner").rename(tmp_path / "enrolled-once")
        reused = subprocess.run(
            ["bash", "-c", lines[0]], capture_output=True, text=True, timeout=60, env=env,
            check=False,
        )  # fmt: skip
        assert reused.returncode == 1
        assert "already used" in reused.stderr and "Traceback" not in reused.stderr
        (tmp_path / "enrolled-once").rename(tmp_path / "joiner")
        run_line = lines[0].split(" && ")[1]
        joined = subprocess.Popen(
            ["bash", "-c", f"exec {run_line} --metrics 127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        node = _wait_for_node_with_sample(config_path, "joiner")
        assert node["state"] == "NODE_STATE_ONLINE"
        assert node["assigned_labels"] == {"team": "new"}

        # The audit log holds the enrollment, verifies, and a tampered copy does not.
        def audit(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                sentinel("audit", *args), capture_output=True, text=True, timeout=60, env=env,
                check=False,
            )  # fmt: skip

        listed = audit("ls", "--action", "enrollment.", "-o", "json")
        assert listed.returncode == 0, listed.stderr
        assert '"enrollment.issued"' in listed.stdout and '"joiner"' in listed.stdout
        verified = audit("verify")
        assert verified.returncode == 0, verified.stderr
        assert verified.stdout.startswith("audit log verified")
        export = tmp_path / "audit.jsonl"
        assert audit("export", str(export)).returncode == 0
        assert audit("verify", "--file", str(export)).returncode == 0
        lines = export.read_bytes().splitlines(keepends=True)
        issued = next(i for i, line in enumerate(lines) if b'"enrollment.issued"' in line)
        lines[issued] = lines[issued].replace(b'"joiner"', b'"intruder"')
        tampered = tmp_path / "tampered.jsonl"
        tampered.write_bytes(b"".join(lines))
        refused = audit("verify", "--file", str(tampered))
        assert refused.returncode == 1
        assert f"(line {issued + 1})" in refused.stdout + refused.stderr
        assert "Traceback" not in refused.stderr
    finally:
        if joined is not None and joined.poll() is None:
            joined.send_signal(signal.SIGTERM)
            joined.communicate(timeout=30)
        os.killpg(process.pid, signal.SIGINT)
        process.communicate(timeout=30)
    assert process.returncode == 0


async def _one_telemetry_batch_as_observer(config: dict[str, Any]) -> bytes:
    """What a user does with dev.json's nats_* keys: read the fleet's telemetry."""
    tls = TlsFiles.load(
        Path(config["nats_ca"]),
        Path(config["nats_observer_cert"]),
        Path(config["nats_observer_key"]),
    )
    nc = await nats_tls.connect(config["nats_url"], tls)
    try:
        subscription = await nc.subscribe("sentinel.telemetry.>")
        return (await subscription.next_msg(timeout=DEADLINE_S)).data
    finally:
        await nc.close()
