"""Certificate renewal: the agent renews its own certificate before it expires, and never
restarts to use the new one.

Schedule: `renewal_at` = not_before + lifetime * (0.7 + 0.2 * U[0, 1)), so a fleet whose
certificates were issued together does not renew together, and a renewal that fails has
the last 10-30% of the lifetime to succeed. `renew_now()` (SIGUSR1 on `sentinel agent
run`) cuts any wait short. Waits are chunked and re-read the wall clock, so a suspended
machine or a stepped clock does not oversleep the schedule.

A renewal: a fresh P-256 key and a CSR for this node (the key never leaves the node),
`AgentService.RenewCertificate` over a channel with the current certificate, the answer
checked (our key, our node id, issued by the CA we trust, not expired), stored
crash-safely (edge_agent.cert_files), and only then handed to `on_renewed`, which moves
the hub link and the command consumer to it. A failure keeps the current certificate,
is counted, logged once per distinct error, and retried after a jittered backoff.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client import CollectorRegistry, Counter, Gauge

import certs
from edge_agent.backoff import Backoff
from edge_agent.cert_files import save_node_credentials
from edge_agent.identity import NodeCredentials
from edge_agent.settings import RenewalSettings
from sentinel.errors import InvalidArgument, SentinelError
from sentinel.identity import Kind, identity_from_certificate
from sentinel.rpc_errors import describe
from sentinel.tls import TlsFiles, issued_by_ca, secure_aio_channel
from sentinel.v1 import agent_pb2, agent_pb2_grpc

log = logging.getLogger(__name__)

RENEW_FROM = 0.7
RENEW_SPREAD = 0.2
# The longest single sleep: the wall clock is read again after it.
MAX_SLEEP_S = 60.0

RenewCall = Callable[[TlsFiles, bytes], Awaitable[agent_pb2.RenewCertificateResponse]]
Sleep = Callable[[float], Awaitable[None]]


def utc_now() -> datetime:
    return datetime.now(UTC)


def renewal_at(not_before: datetime, not_after: datetime, rand: Callable[[], float]) -> datetime:
    """When to renew a certificate valid from `not_before` to `not_after`: 70-90% into it."""
    lifetime = not_after - not_before
    return not_before + lifetime * (RENEW_FROM + RENEW_SPREAD * rand())


class RenewalMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.expiry = Gauge(
            "sentinel_agent_certificate_expiry_timestamp_seconds",
            "When the agent's current certificate expires (Unix time).",
            registry=registry,
        )
        self.renewals = Counter(
            "sentinel_agent_certificate_renewals_total",
            "Certificate renewals attempted, by result (ok, failed).",
            ["result"],
            registry=registry,
        )
        for result in ("ok", "failed"):
            self.renewals.labels(result=result)


def check_renewed(
    cert_pem: bytes,
    key: ec.EllipticCurvePrivateKey,
    credentials: NodeCredentials,
    now: datetime,
) -> x509.Certificate:
    """The renewed certificate, if it is for our new key and our node, issued by the CA we
    trust and not expired; raise InvalidArgument (RENEWED_CERT_INVALID) otherwise."""

    def refuse(why: str) -> InvalidArgument:
        return InvalidArgument(
            f"the hub's renewed certificate is unusable: {why}",
            reason="RENEWED_CERT_INVALID",
            node_id=credentials.node_id,
        )

    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise refuse("not a PEM certificate") from exc
    if cert.public_key() != key.public_key():
        raise refuse("it is not for the key this agent asked with")
    try:
        identity = identity_from_certificate(cert, credentials.trust_domain)
    except SentinelError as exc:
        raise refuse(str(exc)) from exc
    if identity.kind is not Kind.NODE or identity.name != credentials.node_id:
        raise refuse(f"it names {identity}, not node {credentials.node_id}")
    if not issued_by_ca(cert, credentials.tls.ca_pem):
        raise refuse("it is not issued by the CA this agent trusts")
    if cert.not_valid_after_utc <= now:
        raise refuse(f"it expired at {cert.not_valid_after_utc.isoformat()}")
    return cert


class CertRenewer:
    """Keeps the agent's certificate renewed. Run `run()` as an owned task."""

    def __init__(
        self,
        credentials: NodeCredentials,
        certs_dir: Path,
        hub_address: str,
        *,
        on_renewed: Callable[[NodeCredentials], None],
        metrics: RenewalMetrics,
        settings: RenewalSettings | None = None,
        clock: Callable[[], datetime] = utc_now,
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        call: RenewCall | None = None,
    ) -> None:
        self._settings = settings or RenewalSettings()
        self._credentials = credentials
        self._layout = certs.CertLayout(certs_dir)
        self._hub_address = hub_address
        self._on_renewed = on_renewed
        self._metrics = metrics
        self._clock = clock
        self._sleep = sleep
        self._rand = rand
        self._call = call or self._renew_over_grpc
        self._backoff = Backoff(
            self._settings.backoff_initial_s, self._settings.backoff_max_s, rand
        )
        self._trigger = asyncio.Event()
        self.renewals = 0
        self.last_error = ""
        self.next_renewal: datetime | None = None
        self.certificate = x509.load_pem_x509_certificate(credentials.tls.cert_pem)
        metrics.expiry.set(self.certificate.not_valid_after_utc.timestamp())

    @property
    def credentials(self) -> NodeCredentials:
        return self._credentials

    def renew_now(self) -> None:
        """Renew at once (or retry at once, after a failure), whatever the schedule says."""
        log.info("certificate renewal requested")
        self._trigger.set()

    async def run(self) -> None:
        while True:
            cert = self.certificate
            self.next_renewal = renewal_at(
                cert.not_valid_before_utc, cert.not_valid_after_utc, self._rand
            )
            log.info(
                "certificate %x valid until %s; renewal due at %s",
                cert.serial_number,
                cert.not_valid_after_utc.isoformat(),
                self.next_renewal.isoformat(),
            )
            await self._wait_until(self.next_renewal)
            while not await self._attempt():
                await self._pause(self._backoff.next_delay_s())

    async def _attempt(self) -> bool:
        """One renewal; False (counted and logged) if it failed."""
        self._trigger.clear()
        try:
            await self.renew()
        except (SentinelError, grpc.RpcError, OSError, TimeoutError) as exc:
            self._metrics.renewals.labels(result="failed").inc()
            text = describe(exc) if isinstance(exc, grpc.RpcError) else str(exc)
            if text != self.last_error:
                left = self.certificate.not_valid_after_utc - self._clock()
                log.warning(
                    "certificate renewal failed (%s); keeping the current one, valid %s more",
                    text,
                    max(left, timedelta(0)),
                )
            self.last_error = text
            return False
        return True

    async def renew(self) -> NodeCredentials:
        """Renew once; the new pair is on disk and in use by the agent when this returns."""
        current = self._credentials
        key, csr_pem = certs.new_node_request(current.trust_domain, current.node_id)
        response = await self._call(current.tls, csr_pem)
        cert = check_renewed(response.certificate_pem, key, current, self._clock())
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        await asyncio.to_thread(
            save_node_credentials, self._layout, current.node_id, response.certificate_pem, key_pem
        )
        renewed = NodeCredentials(
            current.node_id,
            current.trust_domain,
            TlsFiles(current.tls.ca_pem, response.certificate_pem, key_pem),
        )
        self._credentials, self.certificate = renewed, cert
        self.renewals += 1
        self.last_error = ""
        self._backoff.reset()
        self._metrics.renewals.labels(result="ok").inc()
        self._metrics.expiry.set(cert.not_valid_after_utc.timestamp())
        log.info(
            "certificate renewed: serial %x, valid until %s",
            cert.serial_number,
            cert.not_valid_after_utc.isoformat(),
        )
        self._on_renewed(renewed)
        return renewed

    async def _renew_over_grpc(
        self, tls: TlsFiles, csr_pem: bytes
    ) -> agent_pb2.RenewCertificateResponse:
        async with secure_aio_channel(self._hub_address, tls) as channel:
            stub = agent_pb2_grpc.AgentServiceStub(channel)
            request = agent_pb2.RenewCertificateRequest(csr_pem=csr_pem)
            response: agent_pb2.RenewCertificateResponse = await stub.RenewCertificate(
                request, timeout=self._settings.rpc_timeout_s
            )
            return response

    async def _wait_until(self, due: datetime) -> None:
        while not self._trigger.is_set():
            left_s = (due - self._clock()).total_seconds()
            if left_s <= 0:
                return
            await self._pause(min(left_s, MAX_SLEEP_S))

    async def _pause(self, delay_s: float) -> None:
        """Sleep `delay_s`, or less if `renew_now()` is called meanwhile."""
        if self._trigger.is_set():
            return
        sleeper = asyncio.ensure_future(self._sleep(delay_s))
        trigger = asyncio.ensure_future(self._trigger.wait())
        try:
            await asyncio.wait({sleeper, trigger}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            trigger.cancel()
