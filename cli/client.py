"""What every client command shares: finding the hub and credentials, and output.

Config comes from `--config FILE` or `$SENTINEL_CONFIG`, in the `dev.json` format:
`hub_address`, `ca_cert`, and `client_cert`/`client_key` (falling back to
`admin_cert`/`admin_key`). Paths are absolute or relative to the config file.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from sentinel.durations import from_timestamp
from sentinel.errors import ConfigError
from sentinel.tls import TlsFiles, secure_channel

CONFIG_ENV = "SENTINEL_CONFIG"


@dataclass(frozen=True, slots=True)
class ClientConfig:
    hub_address: str
    tls: TlsFiles


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help=f"client config (dev.json format); default ${CONFIG_ENV}",
    )
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table")


def load_config(path: Path | None) -> ClientConfig:
    if path is None:
        env = os.environ.get(CONFIG_ENV)
        if not env:
            raise ConfigError(
                f"no hub configured: pass --config FILE or set {CONFIG_ENV} "
                "(sentinel dev prints the line)",
                reason="NO_CONFIG",
            )
        path = Path(env)
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(
            f"cannot read config {path}: {exc.strerror}", reason="CONFIG_UNREADABLE"
        ) from exc
    except ValueError as exc:
        raise ConfigError(
            f"config {path} is not valid JSON: {exc}", reason="CONFIG_INVALID"
        ) from exc
    base = path.parent

    def file(*keys: str) -> Path:
        for key in keys:
            if isinstance(raw.get(key), str):
                return base / str(raw[key])
        raise ConfigError(f"config {path} has no {' or '.join(keys)}", reason="CONFIG_INVALID")

    if not isinstance(raw.get("hub_address"), str):
        raise ConfigError(f"config {path} has no hub_address", reason="CONFIG_INVALID")
    tls = TlsFiles.load(
        file("ca_cert"), file("client_cert", "admin_cert"), file("client_key", "admin_key")
    )
    return ClientConfig(raw["hub_address"], tls)


def open_channel(config: ClientConfig) -> grpc.Channel:
    return secure_channel(config.hub_address, config.tls)


def to_json(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=False))


def age(timestamp: Any, now: datetime | None = None) -> str:
    """`12s ago`, `3m ago`, or `-` for an unset timestamp."""
    if not timestamp.seconds and not timestamp.nanos:
        return "-"
    seconds = int(((now or datetime.now(UTC)) - from_timestamp(timestamp)).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if abs(seconds) >= size:
            return f"{seconds // size}{unit} ago"
    return f"{max(seconds, 0)}s ago"


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    for row in [headers, *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
