"""`sentinel certs token create|approve|enrollments|revoke`: the identity lifecycle, through
the hub (found like every client command: `--config` or `$SENTINEL_CONFIG`; admins only).

`token create` prints one line: the complete command to run on the new node, as
`kubeadm token create --print-join-command` does.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from cli.client import (
    add_client_arguments,
    age,
    load_config,
    open_channel,
    print_json,
    print_table,
    to_json,
)
from sentinel.durations import parse_duration, to_proto_duration
from sentinel.errors import InvalidArgument
from sentinel.identity import validate_node_id
from sentinel.selectors import parse_label_assignment
from sentinel.v1 import enrollment_pb2, enrollment_pb2_grpc

RPC_TIMEOUT_S = 30
DEFAULT_AGENT_DATA_DIR = Path("/var/lib/sentinel-agent")
_STATES = {
    "pending": enrollment_pb2.ENROLLMENT_STATE_PENDING_APPROVAL,
    "issued": enrollment_pb2.ENROLLMENT_STATE_ISSUED,
    "denied": enrollment_pb2.ENROLLMENT_STATE_DENIED,
}


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = commands.add_parser("token", help="bootstrap tokens for new nodes (admin, via the hub)")
    token_commands = token.add_subparsers(dest="token_command", required=True, metavar="CMD")
    create = token_commands.add_parser(
        "create",
        help="make a one-time token and print the command that joins a node with it",
    )
    create.add_argument(
        "--ttl", default="1h", metavar="DURATION", help="how long the token is valid (1h)"
    )
    create.add_argument("--node", metavar="ID", help="the token enrolls this node id only")
    create.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="K=V",
        help="a label the node gets; wins over labels it reports (repeatable)",
    )
    create.add_argument(
        "--approve",
        choices=("auto", "manual"),
        default="auto",
        help="manual: the enrollment waits for `sentinel certs approve` (default auto)",
    )
    create.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_AGENT_DATA_DIR,
        metavar="DIR",
        help=f"the agent's data directory in the printed command ({DEFAULT_AGENT_DATA_DIR})",
    )
    add_client_arguments(create)
    create.set_defaults(func=_create_token)

    approve = commands.add_parser("approve", help="approve a pending enrollment (admin)")
    approve.add_argument("enrollment_id", metavar="ENROLLMENT_ID")
    approve.add_argument(
        "--label", action="append", default=[], metavar="K=V", help="assign a label (repeatable)"
    )
    add_client_arguments(approve)
    approve.set_defaults(func=_approve)

    listing = commands.add_parser("enrollments", help="list enrollments (admin)")
    listing.add_argument("--state", choices=sorted(_STATES), help="only this state")
    add_client_arguments(listing)
    listing.set_defaults(func=_list)

    revoke = commands.add_parser(
        "revoke", help="revoke a node's certificates or one certificate, on every hub (admin)"
    )
    subject = revoke.add_mutually_exclusive_group(required=True)
    subject.add_argument("--node", metavar="ID", help="every certificate of this node")
    subject.add_argument("--serial", metavar="HEX", help="one certificate, by serial number")
    revoke.add_argument("--reason", default="", help="why (kept in the audit log)")
    add_client_arguments(revoke)
    revoke.set_defaults(func=_revoke)


def join_command(
    response: enrollment_pb2.CreateEnrollmentTokenResponse, node_id: str, data_dir: Path
) -> str:
    """The one line that enrolls a node and then runs its agent."""
    enroll = [
        "sentinel",
        "agent",
        "enroll",
        "--hub",
        response.enroll_address,
        "--token",
        response.token,
        "--ca-hash",
        response.ca_hash,
        "--data-dir",
        str(data_dir),
    ]
    if node_id:
        enroll += ["--node-id", node_id]
    run = ["sentinel", "agent", "run", "--data-dir", str(data_dir), "--hub", response.hub_address]
    return f"{shlex.join(enroll)} && {shlex.join(run)}"


def _labels(items: list[str]) -> dict[str, str]:
    return dict(parse_label_assignment(item) for item in items)


def _create_token(args: argparse.Namespace) -> int:
    if args.node:
        validate_node_id(args.node)
    ttl = parse_duration(args.ttl)
    request = enrollment_pb2.CreateEnrollmentTokenRequest(
        node_id=args.node or "",
        labels=_labels(args.label),
        ttl=to_proto_duration(ttl),
        manual_approval=args.approve == "manual",
    )
    with open_channel(load_config(args.config)) as channel:
        stub = enrollment_pb2_grpc.EnrollmentServiceStub(channel)
        response = stub.CreateEnrollmentToken(request, timeout=RPC_TIMEOUT_S)
    if not response.enroll_address:
        raise InvalidArgument(
            "the hub does not serve enrollment: start it with --enroll-listen HOST:PORT",
            reason="ENROLLMENT_OFF",
        )
    if args.output == "json":
        print_json(
            {
                **to_json(response),
                "join_command": join_command(response, args.node or "", args.data_dir),
            }
        )
        return 0
    print(join_command(response, args.node or "", args.data_dir))
    return 0


def _approve(args: argparse.Namespace) -> int:
    with open_channel(load_config(args.config)) as channel:
        stub = enrollment_pb2_grpc.EnrollmentServiceStub(channel)
        response = stub.ApproveEnrollment(
            enrollment_pb2.ApproveEnrollmentRequest(
                enrollment_id=args.enrollment_id, labels=_labels(args.label)
            ),
            timeout=RPC_TIMEOUT_S,
        )
    if args.output == "json":
        print_json(to_json(response.enrollment))
        return 0
    enrollment = response.enrollment
    print(f"approved: node {enrollment.node_id} (certificate {enrollment.serial})")
    return 0


def _list(args: argparse.Namespace) -> int:
    state = _STATES[args.state] if args.state else 0
    with open_channel(load_config(args.config)) as channel:
        stub = enrollment_pb2_grpc.EnrollmentServiceStub(channel)
        response = stub.ListEnrollments(
            enrollment_pb2.ListEnrollmentsRequest(state=state),  # type: ignore[arg-type]
            timeout=RPC_TIMEOUT_S,
        )
    if args.output == "json":
        print_json([to_json(e) for e in response.enrollments])
        return 0
    names = {value: name for name, value in _STATES.items()}
    print_table(
        ["ENROLLMENT", "NODE", "STATE", "REQUESTED", "APPROVED BY", "LABELS"],
        [
            [
                e.enrollment_id,
                e.node_id,
                names.get(e.state, "?"),
                age(e.requested_at),
                e.approved_by or "-",
                ",".join(f"{k}={v}" for k, v in sorted(e.labels.items())) or "-",
            ]
            for e in response.enrollments
        ],
    )
    return 0


def _revoke(args: argparse.Namespace) -> int:
    request = enrollment_pb2.RevokeCertificateRequest(reason=args.reason)
    if args.node:
        request.node_id = args.node
    else:
        request.serial = args.serial
    with open_channel(load_config(args.config)) as channel:
        stub = enrollment_pb2_grpc.EnrollmentServiceStub(channel)
        response = stub.RevokeCertificate(request, timeout=RPC_TIMEOUT_S)
    if args.output == "json":
        print_json(to_json(response))
        return 0
    subject = f"node {args.node}" if args.node else f"certificate {args.serial}"
    serials = ", ".join(response.revoked_serials) or "none recorded by the hub"
    print(f"revoked {subject} (serials: {serials}); every hub refuses it within its poll interval")
    return 0
