"""`sentinel hub`: run the hub."""

from __future__ import annotations

import argparse
from datetime import timedelta
from pathlib import Path

from cli.runtime import run
from sentinel.durations import parse_duration
from sentinel.errors import InvalidArgument, SentinelError
from sentinel.logs import configure_logging


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("hub", help="run the hub")
    parser.add_argument(
        "--certs",
        required=True,
        type=Path,
        metavar="DIR",
        help="certificate directory (from `sentinel certs init`)",
    )
    parser.add_argument(
        "--listen",
        required=True,
        metavar="HOST:PORT",
        help="gRPC listen address, e.g. 0.0.0.0:7443",
    )
    parser.add_argument(
        "--enroll-listen",
        metavar="HOST:PORT",
        help="serve enrollment (bootstrap tokens) on this server-authenticated TLS port; "
        "default: off",
    )
    parser.add_argument(
        "--advertise",
        metavar="HOST:PORT",
        help="the address agents should dial (default: the --listen address; a wildcard host "
        "becomes this host's name)",
    )
    parser.add_argument(
        "--node-cert-validity",
        default="720h",
        metavar="DURATION",
        help="validity of node certificates issued at enrollment and renewal (720h, 30 days)",
    )
    parser.add_argument(
        "--revocation-poll",
        default="10s",
        metavar="DURATION",
        help="how often this hub re-reads the revoked set that every hub shares (10s)",
    )
    parser.add_argument(
        "--nats", metavar="URL", help="external NATS URL; default: start an embedded nats-server"
    )
    parser.add_argument(
        "--nats-sync",
        default="always",
        metavar="always|DURATION",
        help="embedded JetStream fsync: 'always' (default: acknowledged writes survive a "
        "machine crash) or an interval such as 2m (about 3x the telemetry throughput, but a "
        "power loss can take back what was acknowledged in the last interval)",
    )
    parser.add_argument("--data-dir", required=True, type=Path, metavar="DIR")
    parser.add_argument(
        "--metrics",
        default="127.0.0.1:9401",
        metavar="HOST:PORT",
        help="Prometheus /metrics over plain HTTP (default 127.0.0.1:9401; '' turns it off)",
    )
    add_prometheus_argument(parser)
    parser.add_argument(
        "--offline-after",
        default="15s",
        metavar="DURATION",
        help="mark a node offline after this long without a message",
    )
    parser.add_argument("--telemetry-retention", default="24h", metavar="DURATION")
    parser.add_argument("--log-level", default="info")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from hub.app import run_hub
    from hub.settings import FleetSettings, HubSettings

    configure_logging(args.log_level)
    settings = HubSettings(
        certs_dir=args.certs,
        listen=args.listen,
        data_dir=args.data_dir,
        nats_url=args.nats,
        nats_sync=_nats_sync(args.nats_sync),
        enroll_listen=args.enroll_listen,
        advertise=args.advertise,
        node_cert_validity=_positive(args.node_cert_validity, "--node-cert-validity"),
        revocation_poll_interval=_positive(args.revocation_poll, "--revocation-poll"),
        metrics_listen=args.metrics or None,
        prometheus_url=args.prometheus,
        fleet=FleetSettings(
            offline_after=parse_duration(args.offline_after),
            telemetry_retention=parse_duration(args.telemetry_retention),
        ),
    )
    run(run_hub(settings))
    return 0


def add_prometheus_argument(parser: argparse.ArgumentParser) -> None:
    """`--prometheus URL`, shared with `sentinel dev`."""
    parser.add_argument(
        "--prometheus",
        type=_prometheus_url,
        metavar="URL",
        help="Prometheus to query for the policy's promql series, e.g. http://127.0.0.1:9090 "
        "(default: none; slo_guard rules on those series then ask for approval)",
    )


def _prometheus_url(text: str) -> str:
    from hub.series import prometheus_base

    try:
        return prometheus_base(text)
    except SentinelError as exc:
        raise argparse.ArgumentTypeError(exc.message) from exc


def _nats_sync(text: str) -> str:
    if text == "always":
        return text
    interval = parse_duration(text)
    if interval.total_seconds() <= 0:
        raise InvalidArgument("--nats-sync must be 'always' or positive", reason="INVALID_DURATION")
    return text


def _positive(text: str, flag: str) -> timedelta:
    value = parse_duration(text)
    if value.total_seconds() <= 0:
        raise InvalidArgument(f"{flag} must be positive", reason="INVALID_DURATION")
    return value
