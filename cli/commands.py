"""`sentinel cmd issue|approve|get|ls|watch`: signed commands through the hub's CommandService.

`issue` prints only the new command's id on its first line, so `ID=$(sentinel cmd
issue ...)` works; `--wait` then follows the command and prints the per-node table.
`watch` prints one line per node status change. Both exit 0 when every node ended
executed (or planned, in shadow mode) and 1 otherwise. Parameters are typed by the
action catalogue before anything is sent: a bad `--param` issues nothing.

Policy: a command the hub's policy denies is one error line and then one line per
violated rule (`  - <rule> on <node>: <why>`), on stderr. A command policy holds for a
human is stored `awaiting_approval` (stderr says how to approve it) until an admin
other than its issuer runs `approve`. `--break-glass REASON` (admins) overrides freeze
windows for this one command, for `--break-glass-ttl` (default 15m, at most 1h).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc

from cli.client import (
    CONFIG_ENV,
    add_client_arguments,
    age,
    load_config,
    open_channel,
    print_json,
    print_table,
    to_json,
)
from sentinel import actions
from sentinel.durations import (
    format_duration,
    format_time,
    from_proto_duration,
    from_timestamp,
    parse_duration,
    to_proto_duration,
)
from sentinel.errors import InvalidArgument, Unavailable
from sentinel.rpc_errors import describe, violations_of
from sentinel.v1 import command_pb2, command_pb2_grpc

S = command_pb2
FINAL_STATES = frozenset(
    {
        S.COMMAND_STATE_EXECUTED,
        S.COMMAND_STATE_PLANNED,
        S.COMMAND_STATE_REFUSED,
        S.COMMAND_STATE_FAILED,
        S.COMMAND_STATE_EXPIRED,
        S.COMMAND_STATE_INTERRUPTED,
    }
)
SUCCESS_STATES = frozenset({S.COMMAND_STATE_EXECUTED, S.COMMAND_STATE_PLANNED})
# How long past a command's expiry a watcher keeps waiting for a node to report.
WATCH_GRACE = timedelta(seconds=30)
DEFAULT_LIMIT = 50
MAX_PAGE_SIZE = 500
RPC_TIMEOUT_S = 30

Stub = command_pb2_grpc.CommandServiceStub


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("cmd", help="issue and follow signed commands")
    commands = parser.add_subparsers(dest="cmd_command", required=True, metavar="CMD")
    _register_issue(commands)
    approve = commands.add_parser(
        "approve", help="approve a command policy holds for a human (admin, not its issuer)"
    )
    approve.add_argument("command_id", metavar="ID")
    approve.add_argument("--comment", default="", metavar="TEXT", help="kept with the approval")
    approve.add_argument(
        "--wait", action="store_true", help="wait for every node; exit 1 unless all succeeded"
    )
    add_config_argument(approve)
    approve.set_defaults(func=_approve)
    get = commands.add_parser("get", help="show one command and its state on each node")
    get.add_argument("command_id", metavar="ID")
    add_client_arguments(get)
    get.set_defaults(func=_get)
    _register_ls(commands)
    watch = commands.add_parser("watch", help="follow a command until every node finished")
    watch.add_argument("command_id", metavar="ID")
    add_config_argument(watch)
    watch.set_defaults(func=_watch)


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """`--config` alone, for commands whose output has one fixed form."""
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help=f"client config (dev.json format); default ${CONFIG_ENV}",
    )


def _register_issue(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    issue = commands.add_parser(
        "issue",
        help="issue a command; prints its id",
        epilog=_catalogue_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    target = issue.add_mutually_exclusive_group(required=True)
    target.add_argument("--node", metavar="ID", help="the one node to run it on")
    target.add_argument(
        "-l", "--selector", metavar="SELECTOR", help="every node matching, e.g. 'role=gpu'"
    )
    issue.add_argument("--action", required=True, metavar="NAME", help="an action (see above)")
    issue.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="K=V",
        help="a parameter, typed by the action (repeatable)",
    )
    issue.add_argument("--ttl", metavar="DURATION", help="expires after this; default 10m")
    issue.add_argument(
        "--shadow", action="store_true", help="run every check and plan; change nothing"
    )
    issue.add_argument(
        "--idempotency-key", default="", metavar="KEY", help="a retry with it returns the first"
    )
    issue.add_argument(
        "--break-glass",
        metavar="REASON",
        help="admins: override freeze windows for this command (logged, evented)",
    )
    issue.add_argument(
        "--break-glass-ttl",
        metavar="DURATION",
        help="how long the override lasts; default 15m, at most 1h",
    )
    issue.add_argument(
        "--wait", action="store_true", help="wait for every node; exit 1 unless all succeeded"
    )
    add_config_argument(issue)
    issue.set_defaults(func=_issue)


def _register_ls(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ls = commands.add_parser("ls", help="list commands, newest first")
    ls.add_argument("--node", default="", metavar="ID", help="only commands for this node")
    ls.add_argument(
        "--state",
        choices=[_state_name(s) for s in S.CommandState.values() if s],
        help="only commands with a node in this state",
    )
    ls.add_argument("--action", default="", metavar="NAME", help="only this action")
    ls.add_argument(
        "--limit", type=_positive_int, default=DEFAULT_LIMIT, metavar="N", help="default 50"
    )
    add_client_arguments(ls)
    ls.set_defaults(func=_ls)


def _catalogue_help() -> str:
    """Each action, its scope and what it does; then its params (`[...]`: optional)."""
    lines = ["actions (cluster-scoped ones take --node, never --selector):"]
    for spec in actions.CATALOGUE.values():
        lines.append(f"  {spec.name} ({spec.scope}): {spec.help}")
        if spec.params:
            lines.append("      " + " ".join(_param_help(p) for p in spec.params))
    return "\n".join(lines)


def _param_help(param: actions.Param) -> str:
    text = f"{param.name}=<{param.kind.value.removesuffix('_value')}>"
    return text if param.required else f"[{text}]"


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


# -- issue -------------------------------------------------------------------------------


def issue_request(args: argparse.Namespace) -> command_pb2.IssueCommandRequest:
    """The request the flags describe; InvalidArgument if the action or a param is bad."""
    spec = actions.lookup(args.action)
    request = S.IssueCommandRequest(action=spec.name, idempotency_key=args.idempotency_key)
    if args.node is not None:
        request.target.node_id = args.node
    else:
        request.target.label_selector = args.selector
    for assignment in args.param:
        name, value = actions.parse_parameter(spec, assignment)
        request.parameters[name].CopyFrom(value)
    actions.validate_parameters(spec, request.parameters)  # every required one given
    if args.ttl is not None:
        request.ttl.CopyFrom(to_proto_duration(parse_duration(args.ttl)))
    request.mode = S.COMMAND_MODE_SHADOW if args.shadow else S.COMMAND_MODE_EXECUTE
    if args.break_glass is not None:
        request.break_glass.SetInParent()
        request.break_glass.reason = args.break_glass
        if args.break_glass_ttl is not None:
            ttl = to_proto_duration(parse_duration(args.break_glass_ttl))
            request.break_glass.ttl.CopyFrom(ttl)
    elif args.break_glass_ttl is not None:
        raise InvalidArgument(
            "--break-glass-ttl needs --break-glass REASON", reason="BREAK_GLASS_REASON"
        )
    return request


def _issue(args: argparse.Namespace) -> int:
    request = issue_request(args)
    config = load_config(args.config)
    with open_channel(config) as channel:
        stub = Stub(channel)
        try:
            command = stub.IssueCommand(request, timeout=RPC_TIMEOUT_S).command
        except grpc.RpcError as exc:
            return report_violations(exc)
        print(command.command_id, flush=True)
        if command.state == S.COMMAND_STATE_AWAITING_APPROVAL:
            print(
                f"awaiting approval: sentinel cmd approve {command.command_id}",
                file=sys.stderr,
                flush=True,
            )
        if not args.wait:
            return 0
        final = follow(stub, command)
    print_nodes(final)
    return exit_status(final)


def report_violations(exc: grpc.RpcError) -> int:
    """A refusal that lists violations (e.g. every policy rule that denied a command):
    the error line, then `  - <subject>: <description>` each, on stderr; exit status 1.
    Any other error is raised again, for `cli.main` to print."""
    violations = violations_of(exc)
    if not violations:
        raise exc
    print(f"sentinel: error: {describe(exc)}", file=sys.stderr)
    for violation in violations:
        print(f"  - {violation.subject}: {violation.description}", file=sys.stderr)
    return 1


# -- approve -----------------------------------------------------------------------------


def _approve(args: argparse.Namespace) -> int:
    request = S.ApproveCommandRequest(command_id=args.command_id, comment=args.comment)
    config = load_config(args.config)
    with open_channel(config) as channel:
        stub = Stub(channel)
        try:
            command = stub.ApproveCommand(request, timeout=RPC_TIMEOUT_S).command
        except grpc.RpcError as exc:
            return report_violations(exc)
        approver = command.approvals[-1].approver if command.approvals else "-"
        print(f"{command.command_id} approved by {approver}", flush=True)
        if not args.wait:
            return 0
        final = follow(stub, command)
    print_nodes(final)
    return exit_status(final)


# -- get ---------------------------------------------------------------------------------


def _get(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    with open_channel(config) as channel:
        command = get_command(Stub(channel), args.command_id)
    if args.output == "json":
        print_json(to_json(command))
        return 0
    print_command(command)
    return 0


def get_command(stub: Stub, command_id: str) -> command_pb2.Command:
    request = S.GetCommandRequest(command_id=command_id)
    response: command_pb2.GetCommandResponse = stub.GetCommand(request, timeout=RPC_TIMEOUT_S)
    return response.command


def print_command(command: command_pb2.Command, now: datetime | None = None) -> None:
    print_table(
        ["FIELD", "VALUE"],
        [
            ["id", command.command_id],
            ["action", command.action],
            ["parameters", _parameters(command) or "-"],
            ["target", _target(command.target, long=True)],
            ["mode", S.CommandMode.Name(command.mode).removeprefix("COMMAND_MODE_").lower()],
            ["issuer", command.issuer],
            ["issued", age(command.issued_at, now)],
            ["expires", _expires(command, now)],
            ["state", _state_name(command.state)],
            *_policy_rows(command),
        ],
    )
    print()
    print_nodes(command)


def _policy_rows(command: command_pb2.Command) -> list[list[str]]:
    """Approvals (when policy wanted any) and a break-glass override (when there is one)."""
    rows = []
    if command.required_approvals or command.approvals:
        rows.append(["approvals", f"{len(command.approvals)} of {command.required_approvals}"])
    for approval in command.approvals:
        when = format_time(from_timestamp(approval.approved_at))
        comment = f": {approval.comment}" if approval.comment else ""
        rows.append(["approved", f"by {approval.approver} at {when}{comment}"])
    if command.HasField("break_glass"):
        glass = command.break_glass
        until = format_time(from_timestamp(glass.expires_at)) if glass.expires_at.seconds else "-"
        rows.append(["break-glass", f"by {glass.admin} until {until}: {glass.reason}"])
    return rows


def print_nodes(command: command_pb2.Command) -> None:
    """NODE / STATE / REASON / MESSAGE, then each node's planned changes, indented."""
    print_table(
        ["NODE", "STATE", "REASON", "MESSAGE"],
        [
            [n.node_id, _state_name(n.state), n.reason or "-", n.message or "-"]
            for n in command.nodes
        ],
    )
    for node in command.nodes:
        if node.plan:
            print(f"\nplan for {node.node_id}:")
            for line in _plan_lines(node.plan):
                print(f"  {line}")


def _plan_lines(plan: Iterable[command_pb2.PlannedChange]) -> list[str]:
    """`resource field: from -> to (description)` per change; parts left out when empty."""
    lines = []
    for change in plan:
        head = " ".join(part for part in (change.resource, change.field) if part) or "-"
        body = (
            f"{change.from_value or '-'} -> {change.to_value or '-'}"
            if change.from_value or change.to_value
            else ""
        )
        if change.description:
            body = f"{body} ({change.description})" if body else change.description
        lines.append(f"{head}: {body}" if body else head)
    return lines


def _parameters(command: command_pb2.Command) -> str:
    return ",".join(f"{k}={_value(v)}" for k, v in sorted(command.parameters.items()))


def _value(value: command_pb2.ParameterValue) -> str:
    kind = value.WhichOneof("kind")
    if kind == "duration_value":
        return format_duration(from_proto_duration(value.duration_value))
    if kind == "bool_value":
        return str(value.bool_value).lower()
    return str(getattr(value, kind)) if kind else ""


def _target(target: command_pb2.CommandTarget, *, long: bool = False) -> str:
    if target.WhichOneof("target") == "label_selector":
        return f"selector {target.label_selector}" if long else f"-l {target.label_selector}"
    return f"node {target.node_id}" if long else target.node_id


def _expires(command: command_pb2.Command, now: datetime | None) -> str:
    if not command.not_after.seconds:
        return "-"
    at = from_timestamp(command.not_after)
    left = at - (now or datetime.now(UTC))
    when = f"in {format_duration(_whole_seconds(left))}" if left > timedelta(0) else "expired"
    return f"{format_time(at)} ({when})"


def _whole_seconds(td: timedelta) -> timedelta:
    return timedelta(seconds=int(td.total_seconds()))


def _state_name(state: int) -> str:
    return S.CommandState.Name(state).removeprefix("COMMAND_STATE_").lower()


# -- ls ----------------------------------------------------------------------------------


def _ls(args: argparse.Namespace) -> int:
    request = S.ListCommandsRequest(
        node_id=args.node,
        action=args.action,
        state=f"COMMAND_STATE_{args.state.upper()}" if args.state else None,
    )
    config = load_config(args.config)
    with open_channel(config) as channel:
        commands = list_commands(Stub(channel), request, args.limit)
    if args.output == "json":
        print_json({"commands": [to_json(c) for c in commands]})
        return 0
    now = datetime.now(UTC)
    print_table(
        ["ID", "ACTION", "TARGET", "STATE", "NODES", "AGE"],
        [_summary_row(c, now) for c in commands],
    )
    return 0


def list_commands(
    stub: Stub, request: command_pb2.ListCommandsRequest, limit: int
) -> list[command_pb2.Command]:
    """Newest first, page after page, until `limit` commands or the last page."""
    commands: list[command_pb2.Command] = []
    request = _copy(request)
    while len(commands) < limit:
        request.page_size = min(limit - len(commands), MAX_PAGE_SIZE)
        page = stub.ListCommands(request, timeout=RPC_TIMEOUT_S)
        commands.extend(page.commands)
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    return commands[:limit]


def _copy(request: command_pb2.ListCommandsRequest) -> command_pb2.ListCommandsRequest:
    copy = S.ListCommandsRequest()
    copy.CopyFrom(request)
    return copy


def _summary_row(command: command_pb2.Command, now: datetime) -> list[str]:
    done = sum(1 for n in command.nodes if n.state in FINAL_STATES)
    return [
        command.command_id,
        command.action + (" (shadow)" if command.mode == S.COMMAND_MODE_SHADOW else ""),
        _target(command.target),
        _state_name(command.state),
        f"{done}/{len(command.nodes)} done",
        age(command.issued_at, now),
    ]


# -- watch -------------------------------------------------------------------------------


def _watch(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    with open_channel(config) as channel:
        stub = Stub(channel)
        command = follow(stub, get_command(stub, args.command_id), on_status=print_status)
    return exit_status(command)


def print_status(status: command_pb2.NodeCommandStatus) -> None:
    """`<time> <node> <state> <reason> <message>`, then planned changes, indented."""
    when = format_time(from_timestamp(status.updated_at)) if status.updated_at.seconds else "-"
    print(
        f"{when} {status.node_id} {_state_name(status.state)} {status.reason or '-'} "
        f"{status.message}".rstrip(),
        flush=True,
    )
    for line in _plan_lines(status.plan):
        print(f"  {line}", flush=True)


def follow(
    stub: Stub,
    command: command_pb2.Command,
    on_status: Callable[[command_pb2.NodeCommandStatus], None] | None = None,
) -> command_pb2.Command:
    """Follow WatchCommand until every node is final; the command as it ended.

    Gives up (Unavailable, NODES_SILENT) once the command expired more than
    WATCH_GRACE ago and a node still has not reported: the hub expires nothing itself,
    so an offline node stays pending until it comes back."""
    deadline = from_timestamp(command.not_after) + WATCH_GRACE
    timeout_s = max((deadline - datetime.now(UTC)).total_seconds(), 1.0)
    latest = command
    try:
        for response in stub.WatchCommand(
            S.WatchCommandRequest(command_id=command.command_id), timeout=timeout_s
        ):
            if response.HasField("command"):
                latest = response.command
            if on_status is not None:
                on_status(response.status)
    except grpc.RpcError as exc:
        if exc.code() is not grpc.StatusCode.DEADLINE_EXCEEDED:
            raise
        latest = get_command(stub, command.command_id)
    if latest.state == S.COMMAND_STATE_AWAITING_APPROVAL:
        raise Unavailable(
            f"command {command.command_id} is still awaiting approval "
            f"(expired at {format_time(deadline - WATCH_GRACE)}): "
            f"sentinel cmd approve {command.command_id}",
            reason="NOT_APPROVED",
        )
    if not all(n.state in FINAL_STATES for n in latest.nodes):
        raise Unavailable(
            f"command {command.command_id}: no result from {', '.join(_pending(latest))} "
            f"by {format_time(deadline)} (expired at {format_time(deadline - WATCH_GRACE)}); "
            "are they offline?",
            reason="NODES_SILENT",
        )
    return latest


def _pending(command: command_pb2.Command) -> list[str]:
    return [n.node_id for n in command.nodes if n.state not in FINAL_STATES]


def exit_status(command: command_pb2.Command) -> int:
    """0 when every node executed (or planned); else 1, with a summary on stderr."""
    failed = [n for n in command.nodes if n.state not in SUCCESS_STATES]
    if not failed:
        return 0
    counts: dict[str, int] = {}
    for node in failed:
        counts[_state_name(node.state)] = counts.get(_state_name(node.state), 0) + 1
    summary = ", ".join(f"{state} on {count}" for state, count in sorted(counts.items()))
    print(
        f"sentinel: command {command.command_id} did not succeed on {len(failed)} of "
        f"{len(command.nodes)} node(s): {summary}",
        file=sys.stderr,
    )
    return 1
