"""gRPC transport security: mutual TLS credentials and the channel options both sides share.

Invariants: a server built from `server_credentials` or `ReloadingServerCredentials`
always requires a client certificate signed by the project CA; a client channel always
verifies the hub against the same CA. There is no insecure mode. A reloading server
serves a replaced certificate to new connections only, and only a pair that parses,
matches and chains to the CA; anything else is logged and the pair in use is kept.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from sentinel.errors import ConfigError

log = logging.getLogger(__name__)

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


# (inode, mtime in ns, size) of each file: a rename or an in-place rewrite changes it.
_Stamp = tuple[tuple[int, int, int], ...]


class ReloadingServerCredentials:
    """Server credentials that pick up a replaced certificate, key or CA bundle for new
    connections, without a restart.

    grpc calls the fetcher before every TLS handshake, on one of its own threads: it
    only stats the three files, and reads and checks them when one changed. A pair that
    does not parse, does not match, does not chain to the CA or has expired is logged
    once and the pair in use is kept (a half-copied pair is retried once the second
    file lands). Connections already open keep the certificate they were made with;
    the server's connection age limit bounds how long they live.
    """

    def __init__(self, ca: Path, cert: Path, key: Path, *, enrollment: bool = False) -> None:
        # enrollment: server-authenticated only (no client certificate asked for), and the
        # CA sent after the certificate, so a new node can check it against its pinned hash.
        self._enrollment = enrollment
        self._paths = (ca, cert, key)
        self._lock = threading.Lock()
        self.files = TlsFiles.load(ca, cert, key)
        self._seen = self._stat()
        try:
            self.serial = check_server_files(self.files)
        except ValueError as exc:
            raise ConfigError(f"{cert}: {exc}", reason="TLS_FILE_INVALID") from exc
        # When the pair in use and the CA expire (Unix seconds), for the hub's /metrics.
        self.expiries = certificate_expiries(self.files)
        self.reloads = 0

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._configuration(self.files),
            self._fetch,
            require_client_authentication=not self._enrollment,
        )

    def _configuration(self, files: TlsFiles) -> grpc.ServerCertificateConfiguration:
        if self._enrollment:
            chain = files.cert_pem.rstrip(b"\n") + b"\n" + files.ca_pem
            return grpc.ssl_server_certificate_configuration([(files.key_pem, chain)])
        return _configuration(files)

    def _stat(self) -> _Stamp:
        stats = [os.stat(path) for path in self._paths]
        return tuple((s.st_ino, s.st_mtime_ns, s.st_size) for s in stats)

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """None keeps the configuration in use. Runs on a grpc thread: it must not raise."""
        try:
            return self.reload_if_changed()
        except Exception:  # an escaping error would break the handshake, not just the reload
            log.exception("checking the server certificate files failed; keeping the current pair")
            return None

    def reload_if_changed(self) -> grpc.ServerCertificateConfiguration | None:
        """The new configuration if the files changed and are usable, else None."""
        with self._lock:
            try:
                stamp = self._stat()
            except OSError:
                stamp = ()  # a file is missing (mid-copy?): said once, until it is back
            if stamp == self._seen:
                return None
            self._seen = stamp
            try:
                files = TlsFiles.load(*self._paths)
                serial = check_server_files(files)
            except (ConfigError, ValueError) as exc:
                log.warning(
                    "new server certificate not used (%s); keeping serial %s", exc, self.serial
                )
                return None
            self.files, self.serial = files, serial
            self.expiries = certificate_expiries(files)
            self.reloads += 1
        log.info("server certificate reloaded (serial %s) for new connections", serial)
        return self._configuration(files)


def check_server_files(files: TlsFiles, now: datetime | None = None) -> str:
    """The certificate's serial (hex) if the key matches it, it chains directly to a CA of
    the bundle and it has not expired; raise ValueError otherwise."""
    try:
        cert = x509.load_pem_x509_certificate(files.cert_pem)
        key = serialization.load_pem_private_key(files.key_pem, password=None)
    except (TypeError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"unusable key or certificate: {exc}") from exc
    if key.public_key() != cert.public_key():
        raise ValueError("the key does not match the certificate")
    if not issued_by_ca(cert, files.ca_pem):
        raise ValueError("the certificate is not issued by the CA")
    if cert.not_valid_after_utc <= (now or datetime.now(UTC)):
        raise ValueError(
            f"the certificate expired at {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}"
        )
    return format(cert.serial_number, "x")


def certificate_expiries(files: TlsFiles) -> dict[str, float]:
    """When the certificate and the first-expiring CA of the bundle expire, in Unix seconds:
    {"server": …, "ca": …}. The files must already have passed `check_server_files`."""
    cert = x509.load_pem_x509_certificate(files.cert_pem)
    cas = x509.load_pem_x509_certificates(files.ca_pem)
    return {
        "server": cert.not_valid_after_utc.timestamp(),
        "ca": min(ca.not_valid_after_utc for ca in cas).timestamp(),
    }


def issued_by_ca(cert: x509.Certificate, ca_pem: bytes) -> bool:
    """Whether a CA of the PEM bundle `ca_pem` signed `cert` (the trust domain's CA signs
    leaves directly); raise ValueError if the bundle does not parse."""
    for ca in x509.load_pem_x509_certificates(ca_pem):
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


def _configuration(files: TlsFiles) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration(
        [(files.key_pem, files.cert_pem)], root_certificates=files.ca_pem
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
    "ReloadingServerCredentials",
    "TlsFiles",
    "channel_credentials",
    "check_server_files",
    "issued_by_ca",
    "secure_aio_channel",
    "secure_channel",
    "server_credentials",
]
