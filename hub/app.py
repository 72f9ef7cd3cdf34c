"""Runs a hub: NATS (embedded or external), state, registry, gRPC server, liveness sweeper.

Shutdown is two-stage: stop accepting and drain in-flight RPCs for the grace period,
then cancel what remains and close NATS.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc
from cryptography import x509
from prometheus_client import CollectorRegistry

import certs
from hub.agent_service import AgentService
from hub.audit_agents import AgentAuditReader
from hub.audit_log import AuditLog, AuditMetrics
from hub.audit_rpc import RpcAudit
from hub.audit_service import AuditService
from hub.auth import Gate
from hub.certificates import NodeCertificates
from hub.command_issuer import CommandIssuer
from hub.command_results import ResultReader
from hub.command_service import CommandService
from hub.command_store import CommandStore
from hub.embedded_nats import EmbeddedNats
from hub.enrollment import Enrollments
from hub.enrollment_service import EnrollmentService, PublicEnrollmentService
from hub.events import EventPublisher
from hub.fleet_service import FleetService
from hub.ingest import TelemetryIngest
from hub.key_service import KeyService
from hub.keys import KeyManager
from hub.metrics import HubMetrics
from hub.nats_access import check_external, hub_client_tls, start_nats
from hub.nats_callout import CalloutMetrics, NatsCallout
from hub.policy_gate import PolicyGate
from hub.policy_service import PolicyService
from hub.policy_store import PolicyStore
from hub.registry import Registry
from hub.revocation import Revocations
from hub.sent_history import SentHistory
from hub.series import SeriesSource
from hub.server import (
    Services,
    build_enroll_server,
    build_server,
    set_serving,
)
from hub.settings import HubSettings
from hub.state import COMMANDS_RETENTION, HubState, bucket_keys
from hub.telemetry_fanout import TelemetryFanout
from sentinel import subjects
from sentinel.errors import ConfigError, SentinelError
from sentinel.metrics_http import MetricsServer, serve_metrics
from sentinel.nats_tls import wants_tls
from sentinel.tasks import cancel_and_wait, termination_requested
from sentinel.tls import ReloadingServerCredentials

log = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 1.0
STOP_STEP_S = 5.0


def utc_now() -> datetime:
    return datetime.now(UTC)


class Hub:
    """A started hub. Create with `await Hub.start(settings)`; stop with `await hub.stop()`."""

    def __init__(
        self,
        settings: HubSettings,
        *,
        server: grpc.aio.Server,
        health: object,
        state: HubState,
        registry: Registry,
        embedded: EmbeddedNats | None,
        nats_callout: NatsCallout,
        port: int,
        clock: Callable[[], datetime],
        agent_service: AgentService,
        metrics_server: MetricsServer | None,
        commands: CommandStore,
        results: ResultReader,
        policies: PolicyStore,
        certificates: NodeCertificates,
        server_tls: ReloadingServerCredentials,
        trust: TrustParts,
        audit: AuditLog,
        agent_audit: AgentAuditReader,
        telemetry: TelemetryFanout,
    ) -> None:
        self.settings = settings
        self.telemetry = telemetry  # WatchTelemetry's shared subscription
        self.audit = audit
        self._audit_tasks = (
            asyncio.create_task(
                audit.run_checkpoints(settings.audit_checkpoint_interval.total_seconds()),
                name="hub-audit-checkpoints",
            ),
            asyncio.create_task(agent_audit.run(), name="hub-agent-audit"),
        )
        self.server = server
        self._health = health
        self.state = state
        self.registry = registry
        self._embedded = embedded
        # Who NATS admits (every connect), and closing revoked certificates' connections.
        self.nats_callout = nats_callout
        self.port = port
        self._clock = clock
        self._agent_service = agent_service
        self._metrics_server = metrics_server
        self.commands = commands
        self.policies = policies
        self.certificates = certificates
        self.server_tls = server_tls
        self.trust = trust
        self.revocations = trust.revocations
        self.enrollments = trust.enrollments
        self._revocation_poll = asyncio.create_task(
            trust.revocations.run(), name="hub-revocation-poll"
        )
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="hub-liveness-sweeper")
        self._results = asyncio.create_task(results.run(), name="hub-command-results")

    @property
    def address(self) -> str:
        host = self.settings.listen.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    @property
    def metrics_url(self) -> str:
        return self._metrics_server.url if self._metrics_server else ""

    @property
    def nats_url(self) -> str:
        return self._embedded.url if self._embedded else (self.settings.nats_url or "")

    @classmethod
    async def start(cls, settings: HubSettings, clock: Callable[[], datetime] = utc_now) -> Hub:
        layout = certs.CertLayout(settings.certs_dir)
        trust_domain = certs.load_trust_domain(settings.certs_dir)
        # Re-read for every new connection when the files change: no restart to rotate.
        server_tls = ReloadingServerCredentials(layout.ca_cert, layout.hub_cert, layout.hub_key)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        async with contextlib.AsyncExitStack() as undo:  # unwinds only if start fails
            embedded = await start_nats(settings, trust_domain)
            if embedded is not None:
                undo.push_async_callback(embedded.stop)
            nats_url = settings.nats_url or (embedded.url if embedded else "")
            state = await HubState.open(
                nats_url,
                telemetry_retention=settings.fleet.telemetry_retention,
                tls=hub_client_tls(nats_url, server_tls.files),
                timeout_s=settings.fleet.store_timeout_s,
            )
            undo.push_async_callback(state.close)
            metrics = HubMetrics(CollectorRegistry(), lambda: server_tls.expiries)
            revocations = await Revocations.open(state.js, clock, settings.revocation_poll_interval)
            callout = await _serve_nats_callout(settings, state, revocations, clock, metrics)
            events = EventPublisher(
                state.nc,
                source=f"sentinel-hub/{settings.hub_id}",
                on_failure=metrics.event_publish_failed,
            )
            registry = Registry(state.nodes, events)
            await registry.load(await bucket_keys(state.js, subjects.NODES_BUCKET))
            metrics.set_nodes_by_state(registry.count_by_state)
            keys = await KeyManager.open(state.keys, layout, clock)
            audit = await AuditLog.open(
                state.nc,
                state.js,
                hub_id=settings.hub_id,
                trust_domain=trust_domain,
                signer=keys.audit_signer,
                clock=clock,
                metrics=AuditMetrics(metrics.registry),
            )
            agent_audit = await AgentAuditReader.open(state.js, audit)
            certificates = await NodeCertificates.open(
                state.js, settings.certs_dir, settings.node_cert_validity, clock
            )
            policies = await PolicyStore.open(state.js, keys, clock)
            trust, enrollment_service = await _open_trust(
                settings,
                state,
                revocations,
                callout,
                certificates,
                registry,
                keys,
                policies,
                clock,
                audit,
            )
            series = SeriesSource(registry, settings.prometheus_url)
            sent = await SentHistory.open(state.js)  # what was sent, for rate limits
            policy_gate = PolicyGate(policies, registry, sent, clock, series=series)
            commands = await CommandStore.open(state.js, COMMANDS_RETENTION)
            undo.push_async_callback(commands.close)
            issuer = CommandIssuer(
                state.js,
                commands,
                idempotency=state.idempotency,
                keys=keys,
                events=events,
                clock=clock,
                audit=audit,
            )
            metrics_server = None
            if settings.metrics_listen:
                metrics_server = serve_metrics(metrics.registry, settings.metrics_listen)
                undo.callback(metrics_server.close)
            agent = AgentService(
                registry,
                TelemetryIngest(state.js, state.telemetry_hwm),
                settings.fleet,
                hub_id=settings.hub_id,
                nats_url=nats_url,
                clock=clock,
                metrics=metrics,
                keys=keys,
                policies=policies,
                certificates=certificates,
                on_hello=functools.partial(issuer.ensure_consumer, known_ok=False),
            )
            server, health = build_server(
                settings.limits,
                trust.gate,
                Services(
                    agent=agent,
                    fleet=(fleet := FleetService(registry, state.nc, metrics=metrics)),
                    command=CommandService(
                        registry,
                        commands,
                        issuer,
                        metrics,
                        clock,
                        gate=policy_gate,
                        events=events,
                        audit=audit,
                    ),
                    keys=KeyService(keys),
                    policy=PolicyService(
                        policies, registry, policy_gate, events, clock, audit=audit
                    ),
                    enrollment=enrollment_service,
                    audit=AuditService(audit, keys, clock),
                ),
                metrics,
            )
            try:
                port = server.add_secure_port(settings.listen, server_tls.credentials())
            except RuntimeError as exc:
                raise ConfigError(
                    f"cannot listen on {settings.listen}: the address is in use or not local "
                    "(is another hub running? choose another with --listen)",
                    reason="LISTEN_FAILED",
                ) from exc
            await server.start()
            undo.push_async_callback(server.stop, 0)
            trust.advertised.hub_port = port
            if settings.enroll_listen:
                trust.enroll_server, trust.advertised.enroll_port = await _serve_enrollment(
                    settings, PublicEnrollmentService(enrollment_service)
                )
                undo.push_async_callback(trust.enroll_server.stop, 0)
            await set_serving(health, True)
            hub = cls(
                settings,
                server=server,
                health=health,
                state=state,
                registry=registry,
                embedded=embedded,
                nats_callout=callout,
                port=port,
                clock=clock,
                agent_service=agent,
                metrics_server=metrics_server,
                commands=commands,
                results=ResultReader(state.js, commands, events, metrics, clock, audit=audit),
                policies=policies,
                certificates=certificates,
                server_tls=server_tls,
                trust=trust,
                audit=audit,
                agent_audit=agent_audit,
                telemetry=fleet.telemetry,
            )
            undo.pop_all()
        log.info("hub %s serving on %s (NATS %s)", settings.hub_id, hub.address, nats_url)
        return hub

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            try:
                await self.registry.sweep(self._clock(), self.settings.fleet.offline_after)
            except SentinelError as exc:  # the store is away: try again next round
                log.warning("liveness sweep failed: %s", exc)

    async def stop(self) -> None:
        await set_serving(self._health, False)
        stopping = asyncio.create_task(self.server.stop(self.settings.limits.shutdown_grace_s))
        await asyncio.sleep(0)  # let the server stop accepting first
        log.info("closing %d agent streams", self._agent_service.close_streams())
        await stopping
        if self.trust.enroll_server is not None:
            await self.trust.enroll_server.stop(0)
        # Bounded: a NATS that is itself stopping must not hold the hub's exit.
        try:
            async with asyncio.timeout(STOP_STEP_S):
                await cancel_and_wait(
                    self._sweeper, self._results, self._revocation_poll, *self._audit_tasks
                )
                await self.telemetry.close()
                await self.commands.close()
        except TimeoutError:
            log.warning("background tasks did not stop within %.0f s; going on", STOP_STEP_S)
        if self._metrics_server is not None:
            await asyncio.to_thread(self._metrics_server.close)
        await self.state.close()
        if self._embedded:
            await self._embedded.stop()
        log.info("hub stopped")


@dataclass
class _Advertised:
    """The addresses agents are told to dial: `--advertise` or the listen host (a wildcard
    host becomes this host's name), with the ports actually bound."""

    settings: HubSettings
    hub_port: int = 0
    enroll_port: int = 0

    def addresses(self) -> tuple[str, str]:
        """(enrollment address, hub address); the first is "" when enrollment is off."""
        listen_host = self.settings.listen.rsplit(":", 1)[0]
        host = listen_host
        if self.settings.advertise:
            host = self.settings.advertise.rsplit(":", 1)[0]
        if host in {"", "0.0.0.0", "[::]", "::"}:
            host = socket.gethostname()
        enroll = f"{host}:{self.enroll_port}" if self.enroll_port else ""
        return enroll, self.settings.advertise or f"{host}:{self.hub_port}"


@dataclass
class TrustParts:
    """Identity lifecycle: who may call (gate), revoked certificates, enrollment."""

    gate: Gate
    revocations: Revocations
    enrollments: Enrollments
    enroll_server: grpc.aio.Server | None
    advertised: _Advertised

    @property
    def enroll_address(self) -> str:
        return self.advertised.addresses()[0]


async def _serve_nats_callout(
    settings: HubSettings,
    state: HubState,
    revocations: Revocations,
    clock: Callable[[], datetime],
    metrics: HubMetrics,
) -> NatsCallout:
    """Answer NATS's auth callouts before anything tells a node where NATS is, and close
    the connections of certificates revoked while no hub could (or on another NATS)."""
    layout = certs.CertLayout(settings.certs_dir)
    callout = NatsCallout(
        state.nc,
        certs.nats_callout_key(layout),
        trust_domain=certs.load_trust_domain(settings.certs_dir),
        ca=x509.load_pem_x509_certificates(layout.ca_cert.read_bytes()),
        revocations=revocations,
        clock=clock,
        metrics=CalloutMetrics(metrics.registry),
    )
    await callout.start()
    if settings.nats_url and not (
        wants_tls(settings.nats_url) and await check_external(state.nc, settings.nats_url)
    ):
        return callout  # the server's access control is not ours (a warning said so)
    try:
        await callout.close_revoked()
    except SentinelError as exc:
        log.warning("cannot close revoked certificates' NATS connections now: %s", exc)
    return callout


async def _open_trust(  # noqa: PLR0917
    settings: HubSettings,
    state: HubState,
    revocations: Revocations,
    callout: NatsCallout,
    certificates: NodeCertificates,
    registry: Registry,
    keys: KeyManager,
    policies: PolicyStore,
    clock: Callable[[], datetime],
    audit: AuditLog,
) -> tuple[TrustParts, EnrollmentService]:
    trust_domain = certificates.trust_domain
    gate = Gate(trust_domain, revocations, audit=RpcAudit(audit))
    revocations.on_change = functools.partial(_cut_off, gate, revocations, callout)
    enrollments = await Enrollments.open(
        state.js, certificates=certificates, registry=registry, clock=clock
    )
    advertised = _Advertised(settings)
    service = EnrollmentService(
        enrollments,
        certificates,
        revocations,
        keys,
        policies,
        root_public_pem=certs.CertLayout(settings.certs_dir).root_pub.read_bytes(),
        addresses=advertised.addresses,
        audit=audit,
    )
    return TrustParts(gate, revocations, enrollments, None, advertised), service


async def _serve_enrollment(
    settings: HubSettings, service: PublicEnrollmentService
) -> tuple[grpc.aio.Server, int]:
    layout = certs.CertLayout(settings.certs_dir)
    # The hub's certificate, reloaded like the main listener's, followed by the CA's.
    tls = ReloadingServerCredentials(
        layout.ca_cert, layout.hub_cert, layout.hub_key, enrollment=True
    )
    server = build_enroll_server(service)
    listen = settings.enroll_listen or ""
    try:
        port = server.add_secure_port(listen, tls.credentials())
    except RuntimeError as exc:
        raise ConfigError(
            f"cannot listen on {listen} for enrollment: the address is in use or not local",
            reason="LISTEN_FAILED",
        ) from exc
    await server.start()
    log.info("enrollment served on %s", f"{listen.rsplit(':', 1)[0]}:{port}")
    return server, port


async def _cut_off(gate: Gate, revocations: Revocations, callout: NatsCallout) -> None:
    """The revoked set grew: end the open streams of revoked certificates and close their
    NATS connections (an error is retried at the next poll)."""
    ended = gate.calls.end_revoked(revocations)
    closed = await callout.close_revoked()
    if ended or closed:
        log.warning("revocation: %d open streams ended, %d NATS connections closed", ended, closed)


async def run_hub(settings: HubSettings) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    stop = termination_requested()
    hub = await Hub.start(settings)
    print(f"sentinel hub listening on {hub.address} (NATS {hub.nats_url})", flush=True)
    if hub.metrics_url:
        print(f"metrics on {hub.metrics_url}", flush=True)
    await stop.wait()
    await hub.stop()
