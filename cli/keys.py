"""`sentinel keys show|rotate|retire`: the command-signing keys agents trust.

Rotation is two steps. `rotate` publishes a keyset that adds a new command key and
only then has the hub sign with it; `retire KEY_ID` later publishes a keyset without
the old key, which then stops verifying on every agent that receives it. The key the
hub signs with cannot be retired (reason `KEY_IN_USE`).
"""

from __future__ import annotations

import argparse
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from cli.client import (
    add_client_arguments,
    age,
    load_config,
    open_channel,
    print_json,
    print_table,
    to_json,
)
from sentinel.durations import format_time, from_timestamp
from sentinel.v1 import keys_pb2, keys_pb2_grpc, signing_pb2

RPC_TIMEOUT_S = 30


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("keys", help="the command-signing keyset (admins change it)")
    commands = parser.add_subparsers(dest="keys_command", required=True, metavar="CMD")
    show = commands.add_parser("show", help="the keyset agents trust and the signing key")
    add_client_arguments(show)
    show.set_defaults(func=_show)
    rotate = commands.add_parser(
        "rotate", help="add a new command key and sign with it (admin); retire the old later"
    )
    add_client_arguments(rotate)
    rotate.set_defaults(func=_rotate)
    retire = commands.add_parser(
        "retire", help="remove a key from the keyset; agents stop trusting it (admin)"
    )
    retire.add_argument("key_id", metavar="KEY_ID")
    add_client_arguments(retire)
    retire.set_defaults(func=_retire)


def _show(args: argparse.Namespace) -> int:
    with open_channel(load_config(args.config)) as channel:
        stub = keys_pb2_grpc.KeyServiceStub(channel)
        keyset = stub.GetKeyset(keys_pb2.GetKeysetRequest(), timeout=RPC_TIMEOUT_S).keyset
    if args.output == "json":
        print_json(to_json(keyset))
        return 0
    print_keyset(keyset)
    return 0


def _rotate(args: argparse.Namespace) -> int:
    with open_channel(load_config(args.config)) as channel:
        stub = keys_pb2_grpc.KeyServiceStub(channel)
        request = keys_pb2.RotateCommandKeyRequest()
        keyset = stub.RotateCommandKey(request, timeout=RPC_TIMEOUT_S).keyset
    if args.output == "json":
        print_json(to_json(keyset))
        return 0
    print(
        f"signing with new command key {keyset.command_signing_key_id} "
        f"(keyset version {keyset.version})"
    )
    return 0


def _retire(args: argparse.Namespace) -> int:
    with open_channel(load_config(args.config)) as channel:
        stub = keys_pb2_grpc.KeyServiceStub(channel)
        request = keys_pb2.RetireKeyRequest(key_id=args.key_id)
        keyset = stub.RetireKey(request, timeout=RPC_TIMEOUT_S).keyset
    if args.output == "json":
        print_json(to_json(keyset))
        return 0
    print(f"retired key {args.key_id} (keyset version {keyset.version})")
    return 0


def print_keyset(keyset: keys_pb2.KeysetInfo, now: datetime | None = None) -> None:
    """The keyset's header, then KEY ID / PURPOSE / SIGNING (`yes` on the signing key)."""
    print_table(
        ["FIELD", "VALUE"],
        [
            ["version", str(keyset.version)],
            ["issued", age(keyset.issued_at, now)],
            ["expires", _time(keyset.expires_at)],
            ["signing key", keyset.command_signing_key_id or "-"],
        ],
    )
    print()
    print_table(
        ["KEY ID", "PURPOSE", "SIGNING"],
        [
            [
                key.key_id,
                signing_pb2.KeyPurpose.Name(key.purpose).removeprefix("KEY_PURPOSE_").lower(),
                "yes" if key.key_id == keyset.command_signing_key_id else "",
            ]
            for key in keyset.keys
        ],
    )


def _time(timestamp: Timestamp) -> str:
    return format_time(from_timestamp(timestamp)) if timestamp.seconds else "-"
