"""`sentinel certs`: create a trust domain's CA, then issue node and user certificates.

Each handler prints one line per file written (its path) and nothing else, so a
script can capture them. Expected errors are raised as `SentinelError` for
`cli.main` to print as one line; nothing is written when a name is invalid.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path

from certs import (
    CertLayout,
    init_ca,
    issue_hub_certificate,
    issue_node_certificate,
    issue_user_certificate,
    load_trust_domain,
)
from cli import enrollment
from hub.nats_access import callout_issuer, server_config, storage_limit_bytes
from hub.storage_budget import StorageBudget
from sentinel.errors import InvalidArgument
from sentinel.identity import DEFAULT_TRUST_DOMAIN

HUMAN_ROLES = ("viewer", "operator", "admin")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "certs",
        help="create the CA and issue certificates",
        description="Create a trust domain's CA and issue node and user certificates.",
    )
    commands = parser.add_subparsers(dest="certs_command", required=True, metavar="SUBCOMMAND")
    _register_init(commands)
    _register_issue(commands)
    _register_nats_config(commands)
    enrollment.register(commands)


def _register_init(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "init",
        help="create the CA, hub and admin certificates and the signing keys",
        description="Create a new CA in DIR; refuses if DIR already holds one.",
    )
    parser.add_argument("--dir", type=Path, required=True, help="certificate directory")
    parser.add_argument(
        "--trust-domain",
        default=DEFAULT_TRUST_DOMAIN,
        help=f"SPIFFE trust domain (default: {DEFAULT_TRUST_DOMAIN})",
    )
    parser.set_defaults(func=_init)


def _register_issue(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "issue",
        help="issue (or renew) a node, user or hub certificate",
        description="Issue a certificate signed by the CA in DIR; an existing one is replaced.",
    )
    parser.add_argument("--dir", type=Path, required=True, help="certificate directory")
    subject = parser.add_mutually_exclusive_group(required=True)
    subject.add_argument("--node", metavar="ID", help="node id (a DNS label)")
    subject.add_argument("--user", metavar="NAME", help="user name")
    subject.add_argument(
        "--hub",
        action="store_true",
        help="the hub's serving certificate (a running hub serves it to new connections)",
    )
    parser.add_argument("--role", choices=HUMAN_ROLES, help="the user's role (with --user)")
    parser.add_argument(
        "--days", type=_positive_int, default=365, help="validity in days (default: 365)"
    )
    parser.set_defaults(func=_issue)


def _register_nats_config(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "nats-config",
        help="print the access-control sections for a NATS server the hub does not run",
        description=(
            "Print the accounts, system_account and authorization (auth_callout) sections "
            "a nats-server needs to give Sentinel's hub the same access control as its "
            "embedded NATS; the callout key is made in DIR if missing."
        ),
    )
    parser.add_argument("--dir", type=Path, required=True, help="certificate directory")
    parser.set_defaults(func=_nats_config)


def _nats_config(args: argparse.Namespace) -> int:
    layout = CertLayout(args.dir)
    print(
        "# Sentinel's NATS access control. The server also needs mutual TLS from the "
        f"project CA ({layout.ca_cert}) with `verify_and_map: true` in its tls block."
    )
    storage = storage_limit_bytes(StorageBudget())
    print(
        "# JetStream must allow the hub's budgets: jetstream { max_file_store: "
        f"{storage} }} (see docs/sizing.md)."
    )
    print(server_config(load_trust_domain(args.dir), callout_issuer(layout), storage), end="")
    return 0


def _init(args: argparse.Namespace) -> int:
    init_ca(args.dir, args.trust_domain)
    _print_paths(CertLayout(args.dir).init_files)
    return 0


def _issue(args: argparse.Namespace) -> int:
    validity = timedelta(days=args.days)
    if args.role is not None and args.user is None:
        raise InvalidArgument("--role applies to --user only", reason="ROLE_NOT_ALLOWED")
    if args.hub:
        paths = issue_hub_certificate(args.dir, validity=validity)
    elif args.node is not None:
        paths = issue_node_certificate(args.dir, args.node, validity=validity)
    else:
        if args.role is None:
            raise InvalidArgument("--role is required with --user", reason="ROLE_REQUIRED")
        paths = issue_user_certificate(args.dir, args.user, args.role, validity=validity)
    _print_paths(paths)
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _print_paths(paths: Iterable[Path]) -> None:
    for path in paths:
        print(path)


__all__ = ["register"]
