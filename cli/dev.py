"""`sentinel dev`: embedded NATS, a hub and one agent for this machine, in one process.

Creates a dev CA under `D/certs` if missing, writes `D/dev.json` (the client config
format, absolute paths) and prints a ready grpcurl line. Ctrl-C stops all of it.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import certs
from cli.agent import add_agent_arguments, command_settings, labels, sampling_settings
from cli.hub import add_prometheus_argument
from cli.runtime import run
from sentinel.identity import validate_node_id
from sentinel.logs import configure_logging
from sentinel.tasks import termination_requested

if TYPE_CHECKING:
    from hub.app import Hub


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "dev", help="run embedded NATS, a hub and an agent for this machine"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(".sentinel/dev"),
        metavar="DIR",
        help="where certificates, state and dev.json go (default .sentinel/dev)",
    )
    parser.add_argument(
        "--listen",
        default="127.0.0.1:7443",
        metavar="HOST:PORT",
        help="hub address (default 127.0.0.1:7443; port 0 picks a free one)",
    )
    parser.add_argument(
        "--enroll-listen",
        metavar="HOST:PORT",
        help="enrollment port for new nodes (default: the --listen port + 1, or a free port "
        "when --listen asks for port 0)",
    )
    add_prometheus_argument(parser)
    add_agent_arguments(parser, hub_required=False)
    parser.add_argument("--log-level", default="warning")
    parser.set_defaults(func=_run)


def default_node_id() -> str:
    """This machine's host name, made into a DNS label."""
    name = re.sub(r"[^a-z0-9-]+", "-", socket.gethostname().split(".")[0].lower()).strip("-")
    return name[:63].strip("-") or "localhost"


def prepare_certs(certs_dir: Path, node_id: str) -> None:
    layout = certs.CertLayout(certs_dir)
    if not layout.ca_key.exists():
        certs.init_ca(certs_dir)
    if not layout.node_cert(node_id).exists():
        certs.issue_node_certificate(certs_dir, node_id)


def enroll_listen_for(listen: str) -> str:
    """The port after the hub's, on the same host; a free one when the hub's is chosen."""
    host, _, port = listen.rpartition(":")
    return f"{host}:{int(port) + 1 if port.isdigit() and int(port) else 0}"


def dev_config(data_dir: Path, hub: Hub, node_id: str) -> dict[str, Any]:
    layout = certs.CertLayout(data_dir / "certs")
    return {
        "hub_address": hub.address,
        "enroll_address": hub.trust.enroll_address,
        "nats_url": hub.nats_url,
        "hub_metrics_url": hub.metrics_url,
        "certs_dir": str(layout.directory),
        "ca_cert": str(layout.ca_cert),
        "admin_cert": str(layout.user_cert("admin")),
        "admin_key": str(layout.user_key("admin")),
        # NATS takes mutual TLS from the same CA: read-only events and telemetry, or all.
        "nats_ca": str(layout.ca_cert),
        "nats_observer_cert": str(layout.user_cert(certs.NATS_OBSERVER)),
        "nats_observer_key": str(layout.user_key(certs.NATS_OBSERVER)),
        "nats_admin_cert": str(layout.user_cert(certs.NATS_ADMIN)),
        "nats_admin_key": str(layout.user_key(certs.NATS_ADMIN)),
        "node_id": node_id,
        "data_dir": str(data_dir),
    }


def nats_sub_line(config: dict[str, Any]) -> str:
    """Fleet events with the official `nats` CLI, as the read-only observer."""
    return (
        f"nats sub -s {config['nats_url']} --tlsca {config['nats_ca']} "
        f"--tlscert {config['nats_observer_cert']} --tlskey {config['nats_observer_key']} "
        "'sentinel.events.>'"
    )


def grpcurl_line(config: dict[str, Any]) -> str:
    beside = Path(sys.executable).parent / "grpcurl"
    grpcurl = str(beside) if beside.exists() else "grpcurl"
    return (
        f"{grpcurl} -cacert {config['ca_cert']} -cert {config['admin_cert']} "
        f"-key {config['admin_key']} {config['hub_address']} "
        "sentinel.v1.FleetService/ListNodes"
    )


async def run_dev(args: argparse.Namespace) -> None:
    from edge_agent.app import Agent
    from edge_agent.settings import AgentSettings, LinkSettings
    from hub.app import Hub
    from hub.settings import HubSettings

    data_dir: Path = args.data_dir.resolve()
    node_id = validate_node_id(args.node_id or default_node_id())
    certs_dir = data_dir / "certs"
    prepare_certs(certs_dir, node_id)
    hub = await Hub.start(
        HubSettings(
            certs_dir=certs_dir,
            listen=args.listen,
            data_dir=data_dir / "hub",
            metrics_listen="127.0.0.1:0",
            prometheus_url=args.prometheus,
            enroll_listen=args.enroll_listen or enroll_listen_for(args.listen),
        )
    )
    try:
        agent = await Agent.start(
            AgentSettings(
                certs_dir=certs_dir,
                data_dir=data_dir / "agent",
                node_id=node_id,
                labels=labels(args),
                link=LinkSettings(hub_address=hub.address),
                sampling=sampling_settings(args),
                metrics_listen="127.0.0.1:0",
                commands=command_settings(args),
            )
        )
    except BaseException:
        await hub.stop()
        raise
    config = dev_config(data_dir, hub, node_id)
    config["agent_metrics_url"] = agent.metrics_server.url if agent.metrics_server else ""
    config_path = data_dir / "dev.json"
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    print(f"Sentinel dev is running: hub {hub.address}, NATS {hub.nats_url}, node {node_id}")
    print(f"  export SENTINEL_CONFIG={config_path}")
    print("  sentinel fleet ls")
    print("  sentinel certs token create --ttl 1h   # prints the line that joins another node")
    print(f"  {grpcurl_line(config)}")
    print(f"  curl {config['agent_metrics_url']}   # dcgm-exporter names, node and agent health")
    print(f"  {nats_sub_line(config)}   # events, read-only (nats_* keys in dev.json)")
    print("Press Ctrl-C to stop.", flush=True)
    stop = termination_requested()
    await stop.wait()
    print("stopping...", flush=True)
    await agent.stop()
    await hub.stop()


def _run(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    run(run_dev(args))
    return 0
