"""`sentinel audit ls|export|verify`: the hub's tamper-evident audit log (admins).

`export FILE` writes JSON Lines: every record exactly as stored (the bytes that were
hashed), one per line, then the seal. `verify` checks such a file (`--file`), or an
export streamed from the hub, against the pinned root key (`--root-key`, default
`signing/root.pub` under the config's `certs_dir`): it names the first bad record on
any edit, deletion, reordering or truncation, and exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cli.client import (
    CONFIG_ENV,
    add_client_arguments,
    load_config,
    open_channel,
    print_json,
    print_table,
)
from sentinel import audit
from sentinel.errors import ConfigError
from sentinel.keyset import load_root_public_key
from sentinel.v1 import audit_pb2, audit_pb2_grpc

RPC_TIMEOUT_S = 30
EXPORT_TIMEOUT_S = 3600
PAGE_SIZE = 500


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("audit", help="the hub's hash-chained audit log (admins)")
    commands = parser.add_subparsers(dest="audit_command", required=True, metavar="CMD")
    ls = commands.add_parser("ls", help="records, oldest first")
    ls.add_argument("--from", dest="from_seq", type=int, default=1, metavar="SEQ")
    ls.add_argument("--limit", type=int, default=50, metavar="N", help="default 50")
    ls.add_argument("--action", default="", help="only actions starting with this")
    ls.add_argument("--actor", default="", help="only this actor (a SPIFFE id, or hub/<id>)")
    add_client_arguments(ls)
    ls.set_defaults(func=_ls)
    export = commands.add_parser("export", help="write every record, then the seal (JSON Lines)")
    export.add_argument("file", type=Path, metavar="FILE")
    add_client_arguments(export)
    export.set_defaults(func=_export)
    verify = commands.add_parser(
        "verify", help="check the chain, checkpoints and seal; name the first bad record"
    )
    verify.add_argument("--file", type=Path, help="an export (default: stream one from the hub)")
    verify.add_argument(
        "--root-key", type=Path, help="the pinned root key (default: CERTS/signing/root.pub)"
    )
    add_client_arguments(verify)
    verify.set_defaults(func=_verify)


def _ls(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise ConfigError("--limit must be at least 1", reason="BAD_LIMIT")
    records: list[audit_pb2.AuditRecord] = []
    request = audit_pb2.ListAuditRecordsRequest(
        from_seq=max(1, args.from_seq), action=args.action, actor=args.actor
    )
    with open_channel(load_config(args.config)) as channel:
        stub = audit_pb2_grpc.AuditServiceStub(channel)
        while len(records) < args.limit:
            request.page_size = min(PAGE_SIZE, args.limit - len(records))
            page = stub.ListAuditRecords(request, timeout=RPC_TIMEOUT_S)
            records.extend(page.records)
            if not page.next_page_token:
                break
            request.page_token = page.next_page_token
    values = [_value(r) for r in records[: args.limit]]
    if args.output == "json":
        print_json(values)
        return 0
    print_table(
        ["SEQ", "TIME", "ACTOR", "ACTION", "TARGET", "OUTCOME", "REASON"],
        [
            [
                str(v.get("seq", "?")),
                str(v.get("time", "")),
                str(v.get("actor", "")),
                str(v.get("action", "?")),
                str(v.get("target", "")) or "-",
                str(v.get("outcome", "")) or "-",
                str(v.get("reason", "")) or "-",
            ]
            for v in values
        ],
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    path: Path = args.file
    temporary = path.with_name(f".{path.name}.partial")
    records, sealed = 0, False
    try:
        with open_channel(load_config(args.config)) as channel, temporary.open("wb") as out:
            stub = audit_pb2_grpc.AuditServiceStub(channel)
            for item in stub.ExportAudit(audit_pb2.ExportAuditRequest(), timeout=EXPORT_TIMEOUT_S):
                if item.HasField("record"):
                    out.write(item.record.line.encode() + b"\n")
                    records += 1
                else:
                    out.write(item.seal.encode() + b"\n")
                    sealed = True
        if not sealed:
            raise ConfigError("the hub ended the export without its seal", reason="EXPORT_CUT")
        os.replace(temporary, path)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}", reason="EXPORT_FAILED") from exc
    finally:
        temporary.unlink(missing_ok=True)
    print(f"exported {records:,} records and the seal to {path}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    root = load_root_public_key(args.root_key or _default_root_key(args.config))
    roots = {root.key_id: root}
    if args.file is not None:
        result = audit.verify_chain(_file_lines(args.file), roots=roots)
    else:
        with open_channel(load_config(args.config)) as channel:
            stub = audit_pb2_grpc.AuditServiceStub(channel)
            stream = stub.ExportAudit(audit_pb2.ExportAuditRequest(), timeout=EXPORT_TIMEOUT_S)
            result = audit.verify_chain(_streamed_lines(stream), roots=roots)
    print(describe(result))
    return 0 if result.ok else 1


def describe(result: audit.Verification) -> str:
    """One line: what verified, or the first bad record and why."""
    problem = result.problem
    if problem is not None:
        where = (
            f"line {problem.line} (the seal)"
            if problem.in_seal
            else f"seq {problem.seq} (line {problem.line})"
        )
        return f"audit log INVALID at {where}: {problem.message}"
    text = f"audit log verified: {result.records:,} records"
    if result.records:
        text += f", seq {result.first_seq}..{result.last_seq}, head {result.head[:12]}…"
    return f"{text}, {result.checkpoints:,} checkpoints, sealed by {result.sealed_by}"


def _file_lines(path: Path) -> Iterator[bytes]:
    try:
        with path.open("rb") as handle:
            for raw in handle:
                yield raw[:-1] if raw.endswith(b"\n") else raw
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", reason="FILE_UNREADABLE") from exc


def _streamed_lines(stream: Any) -> Iterator[bytes]:
    for item in stream:
        yield (item.record.line if item.HasField("record") else item.seal).encode()


def _default_root_key(config: Path | None) -> Path:
    """`signing/root.pub` under the config's `certs_dir` (the dev.json format)."""
    path = config or (Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None)
    certs_dir: Any = None
    if path is not None:
        try:
            certs_dir = json.loads(path.read_text()).get("certs_dir")
        except (OSError, ValueError, AttributeError):
            certs_dir = None
    if not isinstance(certs_dir, str):
        raise ConfigError(
            "no root key: pass --root-key PATH (the CA directory's signing/root.pub), or a "
            "config with certs_dir",
            reason="ROOT_KEY_MISSING",
        )
    assert path is not None
    return path.parent / certs_dir / "signing" / "root.pub"


def _value(record: audit_pb2.AuditRecord) -> dict[str, Any]:
    try:
        value = json.loads(record.line)
    except ValueError:
        return {"seq": record.seq, "action": "(damaged)", "line": record.line}
    return value if isinstance(value, dict) else {"seq": record.seq, "line": record.line}
