"""TLS for NATS clients: the one place an `ssl.SSLContext` for nats-py is built.

Invariants: the context trusts the project CA only (never the system store), checks the
server's name (the embedded nats-server is `localhost` / `127.0.0.1`), and presents the
caller's certificate, by which nats-server maps the connection to its rights. It is built
from `TlsFiles` at each (re)connect, so a rotated certificate is used by the next
connection. Whether a URL wants TLS is decided by its scheme alone (`tls://`).
"""

from __future__ import annotations

import os
import ssl
import tempfile
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client as NatsClient

from sentinel.tls import TlsFiles

TLS_SCHEME = "tls://"


def wants_tls(url: str) -> bool:
    return url.startswith(TLS_SCHEME)


def client_ssl_context(files: TlsFiles) -> ssl.SSLContext:
    """A client context that verifies the server against `files.ca_pem` and presents
    `files.cert_pem` with its key."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=files.ca_pem.decode())
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # The ssl module loads a certificate and key from files only: write them to a private
    # directory (0700, key 0600) for the moment it takes, then remove them.
    with tempfile.TemporaryDirectory(prefix="sentinel-nats-tls-") as directory:
        cert, key = Path(directory) / "cert.pem", Path(directory) / "key.pem"
        cert.write_bytes(files.cert_pem)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(files.key_pem)
        context.load_cert_chain(cert, key)
    return context


async def connect(url: str, tls: TlsFiles | None = None, **options: Any) -> NatsClient:
    """`nats.connect`, presenting `tls` to a `tls://` server (tools, tests, benchmarks)."""
    if tls is not None and wants_tls(url):
        options["tls"] = client_ssl_context(tls)
    return await nats.connect(url, **options)


__all__ = ["TLS_SCHEME", "client_ssl_context", "connect", "wants_tls"]
