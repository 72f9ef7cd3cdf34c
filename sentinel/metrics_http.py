"""Serve a Prometheus registry over plain HTTP, the way Prometheus scrapes by default.

`serve_metrics(registry, "127.0.0.1:9400")` binds at once (so a bad address fails at start, with
one clear error) and answers `GET /metrics` from a daemon thread, one short-lived thread per
request, so a scrape never touches the caller's event loop. `MetricsServer.close()` stops it.

Invariants:
- Always the Prometheus text format 0.0.4, whatever the scraper's Accept header asks for: the
  agent keeps dcgm-exporter's exact metric names, and dcgm-exporter's counters have no `_total`
  suffix, which only the text format can express.
- Rendering is prometheus_client's own `generate_latest`, family by family. One exception: a
  counter family whose samples carry the family's bare name (dcgm-exporter style) is written
  under that bare name; prometheus_client would otherwise announce it as `<name>_total` and
  leave its samples untyped.
- Errors: an unparsable listen string raises `InvalidArgument` (reason `INVALID_LISTEN`); an
  address that cannot be bound raises `ConfigError` (reason `LISTEN_FAILED`).
- `close()` blocks for at most about `_POLL_INTERVAL_S`; it is idempotent.
"""

from __future__ import annotations

import errno
import logging
import socket
import socketserver
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import Metric

from sentinel.errors import ConfigError, InvalidArgument

log = logging.getLogger(__name__)

INVALID_LISTEN = "INVALID_LISTEN"
LISTEN_FAILED = "LISTEN_FAILED"
METRICS_PATH = "/metrics"
_POLL_INTERVAL_S = 0.2
# A scraper that stalls mid-request frees its thread after this long.
_REQUEST_TIMEOUT_S = 10.0


def render_text(registry: CollectorRegistry) -> bytes:
    """The registry in Prometheus text format 0.0.4 (see the module docstring for counters)."""
    return b"".join(_render_family(family) for family in registry.collect())


def _render_family(family: Metric) -> bytes:
    bare_counter = (
        family.type == "counter"
        and bool(family.samples)
        and all(sample.name == family.name for sample in family.samples)
    )
    if not bare_counter:
        return generate_latest(_OneFamily(family))
    # Render it as a gauge (same name, same samples), then restore its type.
    as_gauge = Metric(family.name, family.documentation, "gauge")
    as_gauge.samples = list(family.samples)
    text = generate_latest(_OneFamily(as_gauge))
    return text.replace(
        f"# TYPE {family.name} gauge\n".encode(), f"# TYPE {family.name} counter\n".encode(), 1
    )


class _OneFamily:
    """A collector of one already-collected family, to hand to `generate_latest`."""

    def __init__(self, family: Metric) -> None:
        self._family = family

    def collect(self) -> Iterable[Metric]:
        return [self._family]


def parse_listen(listen: str) -> tuple[str, int]:
    """`host:port` or `[ipv6]:port` → (host, port); port 0 picks a free one."""
    host, sep, port_text = listen.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or any(c.isspace() or c in "[]" for c in host):
        raise _invalid(listen, "expected host:port, e.g. 127.0.0.1:9400 or [::1]:9400")
    if not port_text.isdigit() or int(port_text) > 65535:
        raise _invalid(listen, f"port must be a number from 0 to 65535, got {port_text!r}")
    return host, int(port_text)


def _invalid(listen: str, why: str) -> InvalidArgument:
    return InvalidArgument(
        f"invalid metrics listen address {listen!r}: {why}", reason=INVALID_LISTEN, listen=listen
    )


class MetricsServer:
    """A running /metrics endpoint. `url` is where to scrape it; `close()` stops it."""

    def __init__(self, server: _Server, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self._closed = False
        self.host: str = server.server_name
        self.port: int = server.server_port
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url: str = f"http://{shown}:{self.port}{METRICS_PATH}"

    def close(self) -> None:
        """Stop accepting scrapes and release the port. Blocking, briefly; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def serve_metrics(registry: CollectorRegistry, listen: str) -> MetricsServer:
    """Bind `listen` now and serve `registry` at /metrics from a daemon thread."""
    host, port = parse_listen(listen)
    try:
        server = _Server((host, port), _handler_for(registry))
    except OSError as exc:
        raise ConfigError(
            f"cannot serve metrics on {listen}: {_bind_failure(exc)}",
            reason=LISTEN_FAILED,
            listen=listen,
        ) from exc
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": _POLL_INTERVAL_S},
        name=f"metrics-http-{listen}",
        daemon=True,
    )
    thread.start()
    return MetricsServer(server, thread)


def _bind_failure(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "the address is already in use (another process on that port? choose another)"
    return exc.strerror or str(exc)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Any) -> None:
        # The family of the address given (IPv4 or IPv6); socket.gaierror if it resolves to none.
        found = socket.getaddrinfo(*address, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        self.address_family = found[0][0]
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would resolve the host's FQDN: a DNS round trip we never use.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = host.decode() if isinstance(host, bytes) else str(host)
        self.server_port = int(port)


def _handler_for(registry: CollectorRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(_MetricsHandler):
        served: ClassVar[CollectorRegistry] = registry

    return Handler


class _MetricsHandler(BaseHTTPRequestHandler):
    served: ClassVar[CollectorRegistry]
    timeout = _REQUEST_TIMEOUT_S

    def do_GET(self) -> None:
        self._answer(with_body=True)

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def _answer(self, *, with_body: bool) -> None:
        if self.path.split("?", 1)[0] != METRICS_PATH:
            self._send(404, "text/plain; charset=utf-8", b"not found: scrape /metrics\n", with_body)
            return
        try:
            body = render_text(self.served)
        except Exception:
            # A broken collector fails this scrape (Prometheus then reports the target down),
            # not the server.
            log.exception("rendering /metrics failed")
            self._send(500, "text/plain; charset=utf-8", b"metrics collection failed\n", with_body)
            return
        self._send(200, CONTENT_TYPE_PLAIN_0_0_4, body, with_body)

    def _send(self, status: int, content_type: str, body: bytes, with_body: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds are not worth a log line each."""


__all__ = [
    "INVALID_LISTEN",
    "LISTEN_FAILED",
    "METRICS_PATH",
    "MetricsServer",
    "parse_listen",
    "render_text",
    "serve_metrics",
]
