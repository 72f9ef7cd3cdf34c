"""Runs a hub: NATS (embedded or external), state, registry, gRPC server, liveness sweeper.

Shutdown is two-stage: stop accepting and drain in-flight RPCs for the grace period,
then cancel what remains and close NATS.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import grpc
from prometheus_client import CollectorRegistry

import certs
from hub.agent_service import AgentService
from hub.command_issuer import CommandIssuer
from hub.command_results import ResultReader
from hub.command_service import CommandService
from hub.command_store import CommandStore
from hub.embedded_nats import EmbeddedNats
from hub.events import EventPublisher
from hub.fleet_service import FleetService
from hub.ingest import TelemetryIngest
from hub.key_service import KeyService
from hub.keys import KeyManager
from hub.metrics import HubMetrics
from hub.policy_gate import PolicyGate
from hub.policy_service import PolicyService
from hub.policy_store import PolicyStore
from hub.registry import Registry
from hub.sent_history import SentHistory
from hub.series import SeriesSource
from hub.server import Services, build_server, set_serving
from hub.settings import HubSettings
from hub.state import COMMANDS_RETENTION, HubState, bucket_keys
from sentinel import subjects
from sentinel.errors import ConfigError, SentinelError
from sentinel.metrics_http import MetricsServer, serve_metrics
from sentinel.tasks import cancel_and_wait, termination_requested
from sentinel.tls import TlsFiles, server_credentials

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
        port: int,
        clock: Callable[[], datetime],
        agent_service: AgentService,
        metrics_server: MetricsServer | None,
        commands: CommandStore,
        results: ResultReader,
        policies: PolicyStore,
    ) -> None:
        self.settings = settings
        self.server = server
        self._health = health
        self.state = state
        self.registry = registry
        self._embedded = embedded
        self.port = port
        self._clock = clock
        self._agent_service = agent_service
        self._metrics_server = metrics_server
        self.commands = commands
        self.policies = policies
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
        tls = TlsFiles.load(layout.ca_cert, layout.hub_cert, layout.hub_key)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        if settings.enroll_listen:
            log.warning(
                "--enroll-listen %s: enrollment is not served yet; flag reserved",
                settings.enroll_listen,
            )
        async with contextlib.AsyncExitStack() as undo:  # unwinds only if start fails
            embedded = None
            if not settings.nats_url:
                embedded = await EmbeddedNats.start(settings.data_dir, sync=settings.nats_sync)
                undo.push_async_callback(embedded.stop)
            nats_url = settings.nats_url or (embedded.url if embedded else "")
            state = await HubState.open(
                nats_url,
                telemetry_retention=settings.fleet.telemetry_retention,
                timeout_s=settings.fleet.store_timeout_s,
            )
            undo.push_async_callback(state.close)
            metrics = HubMetrics(CollectorRegistry())
            events = EventPublisher(
                state.nc,
                source=f"sentinel-hub/{settings.hub_id}",
                on_failure=metrics.event_publish_failed,
            )
            registry = Registry(state.nodes, events)
            await registry.load(await bucket_keys(state.js, subjects.NODES_BUCKET))
            metrics.set_nodes_by_state(registry.count_by_state)
            keys = await KeyManager.open(state.keys, layout, clock)
            policies = await PolicyStore.open(state.js, keys, clock)
            series = SeriesSource(registry, settings.prometheus_url)
            sent = await SentHistory.open(state.js)  # what was sent, for rate limits
            gate = PolicyGate(policies, registry, sent, clock, series=series)
            commands = await CommandStore.open(state.js, COMMANDS_RETENTION)
            undo.push_async_callback(commands.close)
            issuer = CommandIssuer(
                state.js,
                commands,
                idempotency=state.idempotency,
                keys=keys,
                events=events,
                clock=clock,
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
                on_hello=functools.partial(issuer.ensure_consumer, known_ok=False),
            )
            server, health = build_server(
                settings.limits,
                trust_domain,
                Services(
                    agent=agent,
                    fleet=FleetService(registry, state.nc),
                    command=CommandService(
                        registry,
                        commands,
                        issuer,
                        metrics,
                        clock,
                        gate=gate,
                        events=events,
                    ),
                    keys=KeyService(keys),
                    policy=PolicyService(policies, registry, gate, events, clock),
                ),
            )
            try:
                port = server.add_secure_port(settings.listen, server_credentials(tls))
            except RuntimeError as exc:
                raise ConfigError(
                    f"cannot listen on {settings.listen}: the address is in use or not local "
                    "(is another hub running? choose another with --listen)",
                    reason="LISTEN_FAILED",
                ) from exc
            await server.start()
            undo.push_async_callback(server.stop, 0)
            await set_serving(health, True)
            hub = cls(
                settings,
                server=server,
                health=health,
                state=state,
                registry=registry,
                embedded=embedded,
                port=port,
                clock=clock,
                agent_service=agent,
                metrics_server=metrics_server,
                commands=commands,
                results=ResultReader(state.js, commands, events, metrics, clock),
                policies=policies,
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
        # Bounded: a NATS that is itself stopping must not hold the hub's exit.
        try:
            async with asyncio.timeout(STOP_STEP_S):
                await cancel_and_wait(self._sweeper, self._results)
                await self.commands.close()
        except TimeoutError:
            log.warning("background tasks did not stop within %.0f s; going on", STOP_STEP_S)
        if self._metrics_server is not None:
            await asyncio.to_thread(self._metrics_server.close)
        await self.state.close()
        if self._embedded:
            await self._embedded.stop()
        log.info("hub stopped")


async def run_hub(settings: HubSettings) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    stop = termination_requested()
    hub = await Hub.start(settings)
    print(f"sentinel hub listening on {hub.address} (NATS {hub.nats_url})", flush=True)
    if hub.metrics_url:
        print(f"metrics on {hub.metrics_url}", flush=True)
    await stop.wait()
    await hub.stop()
