"""gRPC transport security: mutual TLS credentials and the channel options both sides share.

Invariants: a server built from `server_credentials` always requires a client
certificate signed by the project CA; a client channel always verifies the hub
against the same CA. There is no insecure mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from sentinel.errors import ConfigError

MIB = 1024 * 1024

# Client side of the keepalive contract: the hub permits pings no more often than every 10 s.
CLIENT_CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 16 * MIB),
    ("grpc.max_send_message_length", 16 * MIB),
)


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM bytes of a CA bundle and one certificate with its key."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    @classmethod
    def load(cls, ca: Path, cert: Path, key: Path) -> TlsFiles:
        try:
            return cls(ca.read_bytes(), cert.read_bytes(), key.read_bytes())
        except OSError as exc:
            raise ConfigError(
                f"cannot read TLS file {exc.filename}: {exc.strerror}", reason="TLS_FILE_MISSING"
            ) from exc


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [(files.key_pem, files.cert_pem)],
        root_certificates=files.ca_pem,
        require_client_auth=True,
    )


def channel_credentials(files: TlsFiles) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=files.ca_pem,
        private_key=files.key_pem,
        certificate_chain=files.cert_pem,
    )


def secure_aio_channel(address: str, files: TlsFiles) -> grpc.aio.Channel:
    return grpc.aio.secure_channel(
        address, channel_credentials(files), options=CLIENT_CHANNEL_OPTIONS
    )


def secure_channel(address: str, files: TlsFiles) -> grpc.Channel:
    return grpc.secure_channel(address, channel_credentials(files), options=CLIENT_CHANNEL_OPTIONS)


__all__ = [
    "CLIENT_CHANNEL_OPTIONS",
    "MIB",
    "TlsFiles",
    "channel_credentials",
    "secure_aio_channel",
    "secure_channel",
    "server_credentials",
]
