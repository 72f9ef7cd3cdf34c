"""`sentinel agent run`: run an edge agent."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from cli.runtime import run
from sentinel.durations import parse_duration
from sentinel.errors import InvalidArgument
from sentinel.logs import configure_logging
from sentinel.selectors import parse_label_assignment

if TYPE_CHECKING:
    from edge_agent.settings import CommandSettings, SamplingSettings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("agent", help="edge agent commands")
    agent_commands = parser.add_subparsers(dest="agent_command", required=True, metavar="CMD")
    run_parser = agent_commands.add_parser("run", help="run the agent on this node")
    add_agent_arguments(run_parser, hub_required=True)
    run_parser.add_argument(
        "--metrics",
        default="127.0.0.1:9400",
        metavar="HOST:PORT",
        help="Prometheus /metrics over plain HTTP (default 127.0.0.1:9400, dcgm-exporter's "
        "port; '' turns it off)",
    )
    run_parser.add_argument(
        "--spool-max-mib",
        type=int,
        default=128,
        metavar="MIB",
        help="disk spool bound; beyond it the oldest batches are dropped and announced (128)",
    )
    run_parser.add_argument(
        "--resend-rate",
        type=float,
        default=50.0,
        metavar="BATCHES_PER_S",
        help="pace of re-sending a backlog after a reconnect (default 50 batches/s)",
    )
    run_parser.add_argument("--log-level", default="info")
    run_parser.set_defaults(func=_run)
    _register_enroll(agent_commands)


def _register_enroll(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "enroll",
        help="join the fleet with a bootstrap token (what `sentinel certs token create` prints)",
    )
    parser.add_argument("--hub", required=True, metavar="HOST:PORT", help="the enrollment port")
    parser.add_argument("--token", required=True, help="the one-time bootstrap token")
    parser.add_argument(
        "--ca-hash",
        required=True,
        metavar="sha256:HEX",
        help="SHA-256 of the CA's SubjectPublicKeyInfo; nothing else is trusted",
    )
    parser.add_argument("--data-dir", required=True, type=Path, metavar="DIR")
    parser.add_argument("--node-id", metavar="ID", help="default: this host's name")
    parser.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="K=V",
        help="a label this node reports about itself (repeatable)",
    )
    parser.add_argument(
        "--wait",
        default="1h",
        metavar="DURATION",
        help="how long to wait for an admin's approval, if the token asks for one (1h)",
    )
    parser.add_argument("--log-level", default="warning")
    parser.set_defaults(func=_enroll)


def _enroll(args: argparse.Namespace) -> int:
    from cli.dev import default_node_id
    from edge_agent.enroll import enroll

    configure_logging(args.log_level)
    node_id = args.node_id or default_node_id()
    enrolled = enroll(
        args.hub,
        args.token,
        args.ca_hash,
        node_id,
        args.data_dir,
        labels=labels(args),
        wait_s=parse_duration(args.wait).total_seconds(),
        on_pending=lambda enrollment_id: print(
            f"waiting for an admin: sentinel certs approve {enrollment_id}", flush=True
        ),
    )
    print(
        f"enrolled as node {enrolled.node_id} (certificate {enrolled.serial}); "
        f"run: sentinel agent run --data-dir {args.data_dir} --hub {enrolled.hub_address}",
        flush=True,
    )
    return 0


def add_agent_arguments(parser: argparse.ArgumentParser, *, hub_required: bool) -> None:
    if hub_required:
        parser.add_argument("--hub", required=True, metavar="HOST:PORT")
        parser.add_argument(
            "--certs",
            type=Path,
            metavar="DIR",
            help="certificate directory (default: DATA_DIR/certs, where `agent enroll` writes)",
        )
        parser.add_argument("--data-dir", required=True, type=Path, metavar="DIR")
    parser.add_argument(
        "--node-id",
        metavar="ID",
        help="must match the node certificate; default: the one certificate",
    )
    parser.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="K=V",
        help="a label this node reports about itself (repeatable)",
    )
    parser.add_argument(
        "--interval",
        default="5s",
        metavar="DURATION",
        help="one telemetry batch per interval (default 5s)",
    )
    parser.add_argument(
        "--sample-interval",
        default="1s",
        metavar="DURATION",
        help="time between samples within a batch (default 1s)",
    )
    parser.add_argument(
        "--slow-counter-interval",
        default="30s",
        metavar="DURATION",
        help="how often ECC, row-remap, PCIe replay and energy counters are read (default 30s)",
    )
    parser.add_argument(
        "--pod-resources-socket",
        type=Path,
        default=Path("/var/lib/kubelet/pod-resources/kubelet.sock"),
        metavar="PATH",
        help="kubelet pod-resources socket, to label GPUs with their pod (used when present)",
    )
    parser.add_argument(
        "--nvml-replay",
        metavar="builtin:h200|FILE",
        help="replay a recorded NVML capture instead of the real GPU",
    )
    parser.add_argument(
        "--nvml-replay-xids",
        type=Path,
        metavar="FILE",
        help='XID events for the replay backend, JSON lines {"t": s, "gpu": i, "xid": n}',
    )
    parser.add_argument(
        "--replay-gpus", type=int, default=1, metavar="N", help="clone the replayed GPU N times"
    )
    add_command_arguments(parser.add_argument_group("commands"))


def add_command_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--nats",
        metavar="URL",
        help="NATS for commands (default: the URL the hub announced last, cached on disk)",
    )
    group.add_argument(
        "--root-key",
        type=Path,
        metavar="FILE",
        help="pinned root signing key (default: CERTS/signing/root.pub)",
    )
    group.add_argument(
        "--allow-action",
        action="append",
        metavar="ACTION",
        help="restrict this node to these actions, on top of the fleet's policy (repeatable; "
        "default: the policy alone decides)",
    )
    group.add_argument(
        "--allowed-skew",
        default="5m",
        metavar="DURATION",
        help="how far ahead of the agent clock a command's issued-at may be (default 5m)",
    )
    group.add_argument(
        "--systemctl", default="systemctl", metavar="PATH", help="systemctl binary to call"
    )
    group.add_argument(
        "--systemd-unit",
        action="append",
        default=[],
        metavar="UNIT",
        help="a unit node.systemd.restart may restart (repeatable; default: none)",
    )
    kube = group.add_mutually_exclusive_group()
    kube.add_argument(
        "--kubeconfig", type=Path, metavar="FILE", help="act on Kubernetes with this kubeconfig"
    )
    kube.add_argument(
        "--in-cluster",
        action="store_true",
        help="act on Kubernetes with the pod's service account",
    )
    group.add_argument(
        "--cluster-actor",
        action="store_true",
        help="this node runs the cluster-scoped actions (Deployments, pods)",
    )
    group.add_argument(
        "--k8s-node-name",
        metavar="NAME",
        help="this node's Kubernetes Node object (default: the node id)",
    )


def command_settings(args: argparse.Namespace) -> CommandSettings:
    from edge_agent.actions.base import ActionSettings
    from edge_agent.settings import CommandSettings
    from sentinel.actions import lookup

    allowed = frozenset(args.allow_action) if args.allow_action else None
    for name in sorted(allowed or ()):
        lookup(name)  # an unknown name is a typo: say so now, not at the first command
    skew = parse_duration(args.allowed_skew)
    if skew.total_seconds() < 0:
        raise InvalidArgument("--allowed-skew must not be negative", reason="INVALID_DURATION")
    kubernetes = bool(args.kubeconfig or args.in_cluster)
    if args.cluster_actor and not kubernetes:
        raise InvalidArgument(
            "--cluster-actor needs --kubeconfig or --in-cluster", reason="INVALID_ARGUMENT"
        )
    return CommandSettings(
        nats_url=args.nats,
        root_key=args.root_key,
        allowed_skew=skew,
        actions=ActionSettings(
            allowed_actions=allowed,
            systemctl_path=args.systemctl,
            systemd_units=frozenset(args.systemd_unit),
            kubernetes=kubernetes,
            kubeconfig=args.kubeconfig,
            cluster_actor=args.cluster_actor,
            k8s_node_name=args.k8s_node_name,
        ),
    )


def sampling_settings(args: argparse.Namespace) -> SamplingSettings:
    from edge_agent.settings import SamplingSettings

    batch = parse_duration(args.interval)
    sample = parse_duration(args.sample_interval)
    slow = parse_duration(args.slow_counter_interval)
    if min(batch.total_seconds(), sample.total_seconds(), slow.total_seconds()) <= 0:
        raise InvalidArgument(
            "--interval, --sample-interval and --slow-counter-interval must be positive",
            reason="INVALID_DURATION",
        )
    if args.replay_gpus < 1:
        raise InvalidArgument("--replay-gpus must be at least 1", reason="INVALID_ARGUMENT")
    return SamplingSettings(
        batch_interval=batch,
        sample_interval=min(sample, batch),
        slow_counter_interval=slow,
        nvml_replay=args.nvml_replay,
        replay_gpus=args.replay_gpus,
        replay_xid_events=args.nvml_replay_xids,
        pod_resources_socket=args.pod_resources_socket,
    )


def labels(args: argparse.Namespace) -> dict[str, str]:
    return dict(parse_label_assignment(item) for item in args.label)


def _run(args: argparse.Namespace) -> int:
    from edge_agent.app import run_agent
    from edge_agent.settings import AgentSettings, LinkSettings

    configure_logging(args.log_level)
    if args.spool_max_mib < 1 or args.resend_rate <= 0:
        raise InvalidArgument(
            "--spool-max-mib must be at least 1 and --resend-rate positive",
            reason="INVALID_ARGUMENT",
        )
    settings = AgentSettings(
        certs_dir=args.certs or args.data_dir / "certs",
        data_dir=args.data_dir,
        node_id=args.node_id,
        labels=labels(args),
        link=LinkSettings(hub_address=args.hub, resend_batches_per_s=args.resend_rate),
        sampling=sampling_settings(args),
        metrics_listen=args.metrics or None,
        spool_max_bytes=args.spool_max_mib * 1024 * 1024,
        commands=command_settings(args),
    )
    run(run_agent(settings))
    return 0
