"""`sentinel policy apply|show|versions|test|evaluate`: the hub's signed policy bundles.

`apply FILE` (admins) checks the bundle here first, with the same loader the hub and
the agents use, so a typo is one line naming its path (`bundle.rules[0].limit: ...`)
and nothing is sent; then the hub validates, signs and stores it as a new version
(a version not newer than the current one is refused: `POLICY_VERSION_NOT_NEWER`).
`show` prints the current bundle's YAML exactly as authored (`-o table|json` for the
rest); `versions` lists every version, newest first.

`test FILE` evaluates a proposal offline (no hub, no config): node and fleet rules,
without fleet inputs, so a fleet rule that needs one asks for approval. `evaluate`
asks the hub, which knows the node's labels and what it has sent (rate limits).
Both print the verdict (`ALLOW`, `DENY`, `NEEDS_APPROVAL`) and then one sentence per
deciding rule; they exit 0 for ALLOW and 1 for DENY or NEEDS_APPROVAL (and errors).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from google.protobuf.timestamp_pb2 import Timestamp

import policy
from cli.client import (
    CONFIG_ENV,
    add_client_arguments,
    load_config,
    open_channel,
    print_json,
    print_table,
    to_json,
)
from sentinel import actions
from sentinel.durations import format_time, from_timestamp, parse_time, to_timestamp
from sentinel.errors import ConfigError, InvalidArgument
from sentinel.identity import validate_node_id
from sentinel.selectors import parse_label_assignment
from sentinel.v1 import command_pb2, policy_pb2, policy_pb2_grpc

RPC_TIMEOUT_S = 30
DEFAULT_LIMIT = 50
MAX_PAGE_SIZE = 500
SHA_PREFIX = 12

Stub = policy_pb2_grpc.PolicyServiceStub

_VERDICTS: dict[int, policy.Verdict] = {
    policy_pb2.VERDICT_ALLOW: policy.Verdict.ALLOW,
    policy_pb2.VERDICT_DENY: policy.Verdict.DENY,
    policy_pb2.VERDICT_NEEDS_APPROVAL: policy.Verdict.NEEDS_APPROVAL,
}
_SCOPES: dict[int, policy.Scope] = {
    policy_pb2.RULE_SCOPE_NODE: policy.Scope.NODE,
    policy_pb2.RULE_SCOPE_FLEET: policy.Scope.FLEET,
}
_EXIT_HELP = "exit status: 0 for ALLOW; 1 for DENY, NEEDS_APPROVAL or an error"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("policy", help="the signed policy bundles (admins apply)")
    commands = parser.add_subparsers(dest="policy_command", required=True, metavar="CMD")

    apply = commands.add_parser(
        "apply", help="check a bundle here, then store it as the new version (admin)"
    )
    apply.add_argument("file", type=Path, metavar="FILE", help="the bundle's YAML")
    add_client_arguments(apply)
    apply.set_defaults(func=_apply)

    show = commands.add_parser("show", help="a bundle: its YAML as authored (default)")
    show.add_argument(
        "--version", type=_positive_int, default=0, metavar="N", help="default: the current one"
    )
    _add_config_argument(show)
    show.add_argument("-o", "--output", choices=("yaml", "table", "json"), default="yaml")
    show.set_defaults(func=_show)

    versions = commands.add_parser("versions", help="every policy version, newest first")
    versions.add_argument(
        "--limit", type=_positive_int, default=DEFAULT_LIMIT, metavar="N", help="default 50"
    )
    add_client_arguments(versions)
    versions.set_defaults(func=_versions)

    _register_test(commands)
    _register_evaluate(commands)


def _register_test(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    test = commands.add_parser(
        "test",
        help="evaluate a proposal against a bundle file, offline",
        description=(
            "Evaluate one action on one node against a bundle file, without a hub: node "
            "rules and fleet rules alike. No fleet inputs are known offline (usage, "
            "prices, SLO series, fleet size), so a fleet rule that needs one answers "
            "NEEDS_APPROVAL (reason NO_INPUT), as the hub does when it lacks an input. "
            "Prints the verdict, then one sentence per deciding rule."
        ),
        epilog=_EXIT_HELP,
    )
    test.add_argument("file", type=Path, metavar="FILE", help="the bundle's YAML")
    _add_proposal_arguments(test)
    test.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="K=V",
        help="a label of the node, for rule selectors (repeatable)",
    )
    test.add_argument("--shadow", action="store_true", help="a shadow run (changes nothing)")
    test.add_argument(
        "--break-glass", action="store_true", help="as an admin's break-glass command"
    )
    test.add_argument(
        "--history",
        type=Path,
        metavar="FILE",
        help="rate-limit history: lines '<epoch microseconds> <key>', e.g. "
        "'1767225600000000 <rule id>|node|<node id>' (an agent's rate history format)",
    )
    test.set_defaults(func=_test)


def _register_evaluate(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        help="ask the hub whether an action would be allowed on a node",
        description=(
            "Evaluate one action on one node on the hub, which knows the node's labels and "
            "the rate-limit history of what it has sent. Prints the verdict, then one "
            "sentence per deciding rule."
        ),
        epilog=_EXIT_HELP,
    )
    _add_proposal_arguments(evaluate)
    evaluate.add_argument(
        "--version", type=_positive_int, default=0, metavar="N", help="default: the current one"
    )
    add_client_arguments(evaluate)
    evaluate.set_defaults(func=_evaluate)


def _add_proposal_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--node", required=True, metavar="ID", help="the node it would run on")
    parser.add_argument("--action", required=True, metavar="NAME", help="a catalogue action")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="K=V",
        help="a parameter, typed by the action (repeatable)",
    )
    parser.add_argument("--at", metavar="TIME", help="evaluate at this RFC 3339 time; default now")


def _add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help=f"client config (dev.json format); default ${CONFIG_ENV}",
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


# -- apply -------------------------------------------------------------------------------


def _apply(args: argparse.Namespace) -> int:
    source = _read(args.file, "policy")
    load_local(args.file, source)  # a typo is reported before anything is sent
    try:
        text = source.decode("utf-8")  # the hub stores (and signs) the UTF-8 bytes
    except UnicodeDecodeError as exc:
        raise InvalidArgument(
            f"{args.file}: a policy is UTF-8 text (byte {exc.start} is not)",
            reason="POLICY_INVALID",
        ) from exc
    with open_channel(load_config(args.config)) as channel:
        request = policy_pb2.PutPolicyRequest(source_yaml=text)
        bundle = Stub(channel).PutPolicy(request, timeout=RPC_TIMEOUT_S).bundle
    if args.output == "json":
        print_json(to_json(bundle))
        return 0
    print(f"policy version {bundle.version} applied (sha256 {bundle.sha256.hex()[:SHA_PREFIX]})")
    return 0


def load_local(path: Path, source: bytes) -> policy.Bundle:
    """The bundle in `source`, or the loader's error (its path and problem) naming `path`."""
    try:
        return policy.load_bundle(source)
    except policy.PolicyError as exc:
        raise InvalidArgument(f"{path}: {exc}", reason=exc.reason) from exc


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read {what} {path}: {exc.strerror}", reason="FILE_UNREADABLE"
        ) from exc


# -- show, versions ----------------------------------------------------------------------


def _show(args: argparse.Namespace) -> int:
    with open_channel(load_config(args.config)) as channel:
        request = policy_pb2.GetPolicyRequest(version=args.version)
        bundle = Stub(channel).GetPolicy(request, timeout=RPC_TIMEOUT_S).bundle
    if args.output == "json":
        print_json(to_json(bundle))
    elif args.output == "table":
        print_bundle(bundle)
    else:
        sys.stdout.write(bundle.source_yaml)
    return 0


def print_bundle(bundle: policy_pb2.PolicyBundle) -> None:
    """The bundle's header, then its rules in evaluation order: ID / KIND / ACTIONS."""
    print_table(
        ["FIELD", "VALUE"],
        [
            ["version", str(bundle.version)],
            ["author", bundle.author or "-"],
            ["created", _time(bundle.created_at)],
            ["expires", _time(bundle.expires_at)],
            ["sha256", bundle.sha256.hex() or "-"],
        ],
    )
    print()
    print_table(["ID", "KIND", "ACTIONS"], [_rule_row(rule) for rule in _rules(bundle)])


def _rules(bundle: policy_pb2.PolicyBundle) -> list[Mapping[str, Any]]:
    """The rules as YAML reads them (the hub validated them; nothing here re-checks)."""
    try:
        document = yaml.safe_load(bundle.source_yaml)
    except yaml.YAMLError:
        return []
    rules = document.get("rules") if isinstance(document, dict) else None
    return [rule for rule in rules or [] if isinstance(rule, dict)]


def _rule_row(rule: Mapping[str, Any]) -> list[str]:
    globs = rule.get("actions")
    shown = ",".join(str(g) for g in globs) if isinstance(globs, list) else "*"
    return [str(rule.get("id", "-")), str(rule.get("kind", "-")), shown or "*"]


def _versions(args: argparse.Namespace) -> int:
    with open_channel(load_config(args.config)) as channel:
        bundles = list_versions(Stub(channel), args.limit)
    if args.output == "json":
        print_json({"bundles": [to_json(b) for b in bundles]})
        return 0
    print_table(
        ["VERSION", "AUTHOR", "CREATED", "EXPIRES", "SHA256"],
        [
            [
                str(b.version),
                b.author or "-",
                _time(b.created_at),
                _time(b.expires_at),
                b.sha256.hex()[:SHA_PREFIX] or "-",
            ]
            for b in bundles
        ],
    )
    return 0


def list_versions(stub: Stub, limit: int) -> list[policy_pb2.PolicyBundle]:
    """Newest first, page after page, until `limit` versions or the last page."""
    bundles: list[policy_pb2.PolicyBundle] = []
    request = policy_pb2.ListPolicyVersionsRequest()
    while len(bundles) < limit:
        request.page_size = min(limit - len(bundles), MAX_PAGE_SIZE)
        page = stub.ListPolicyVersions(request, timeout=RPC_TIMEOUT_S)
        bundles.extend(page.bundles)
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    return bundles[:limit]


def _time(timestamp: Timestamp) -> str:
    return format_time(from_timestamp(timestamp)) if timestamp.seconds else "-"


# -- test, evaluate ----------------------------------------------------------------------


def _test(args: argparse.Namespace) -> int:
    bundle = load_local(args.file, _read(args.file, "policy"))
    spec = actions.lookup(args.action)
    params = actions.validate_parameters(spec, _parameters(spec, args.param))
    labels = dict(parse_label_assignment(text) for text in args.label)
    history = _history(args.history) if args.history is not None else policy.SlidingWindowLog()
    proposal = policy.Proposal(
        action=spec.name,
        node_id=validate_node_id(args.node),
        labels=labels,
        params=params,
        shadow=args.shadow,
        target=actions.target_of(spec.name, params),
        break_glass=args.break_glass,
    )
    # This one node is all that is selected; nothing else of the fleet is known.
    fleet = policy.FleetContext(selected_nodes=1)
    decision = policy.evaluate(bundle, proposal, _at(args.at), history=history, fleet=fleet)
    return print_decision(decision)


def _evaluate(args: argparse.Namespace) -> int:
    spec = actions.lookup(args.action)
    request = policy_pb2.EvaluatePolicyRequest(
        node_id=validate_node_id(args.node), action=spec.name, policy_version=args.version
    )
    for name, value in _parameters(spec, args.param).items():
        request.parameters[name].CopyFrom(value)
    actions.validate_parameters(spec, request.parameters)  # every required one given
    if args.at is not None:
        request.at.CopyFrom(to_timestamp(parse_time(args.at)))
    with open_channel(load_config(args.config)) as channel:
        response = Stub(channel).EvaluatePolicy(request, timeout=RPC_TIMEOUT_S)
    if args.output == "json":
        print_json(to_json(response.decision))
        return 0 if response.decision.verdict == policy_pb2.VERDICT_ALLOW else 1
    return print_decision(decision_from_proto(response.decision))


def print_decision(decision: policy.Decision) -> int:
    """The verdict (`ALLOW`, `DENY`, `NEEDS_APPROVAL`), then a sentence per deciding
    rule; the exit status: 0 for ALLOW, else 1."""
    print(decision.verdict.name)
    for sentence in policy.explain(decision):
        print(sentence)
    return 0 if decision.verdict is policy.Verdict.ALLOW else 1


def decision_from_proto(message: policy_pb2.PolicyDecision) -> policy.Decision:
    """The decision as the policy library has it, so that it explains the same here."""
    results = tuple(
        policy.RuleResult(
            rule_id=r.rule_id,
            kind=r.kind,
            scope=_SCOPES.get(r.scope, policy.Scope.NODE),
            verdict=_verdict(r.verdict),
            reason=r.reason,
            details=dict(r.details),
        )
        for r in message.rules
    )
    return policy.Decision(_verdict(message.verdict), results, message.policy_version)


def _verdict(value: int) -> policy.Verdict:
    verdict = _VERDICTS.get(value)
    if verdict is None:  # a verdict this client does not know: never read as ALLOW
        return policy.Verdict.DENY
    return verdict


def _parameters(
    spec: actions.ActionSpec, assignments: list[str]
) -> dict[str, command_pb2.ParameterValue]:
    values: dict[str, command_pb2.ParameterValue] = {}
    for assignment in assignments:
        name, value = actions.parse_parameter(spec, assignment)
        values[name] = value
    return values


def _history(path: Path) -> policy.SlidingWindowLog:
    lines = _read(path, "rate-limit history").decode(errors="replace").splitlines()
    try:
        return policy.SlidingWindowLog.from_lines(lines)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}", reason="HISTORY_INVALID") from exc


def _at(text: str | None) -> datetime:
    return parse_time(text) if text is not None else datetime.now(UTC)
