"""Runs an edge agent: collectors, batching, and the hub link.

Sampling runs on absolute deadlines (no drift). Every blocking collector call (NVML
burns CPU while it waits; psutil reads /proc) runs on one dedicated worker thread,
never on the event loop. The first batch is sealed after the first sample, so a new
node shows up with data at once; after that, one batch per batch interval, or sooner
when it would outgrow what the hub takes (`edge_agent.batching`).
Stopping seals the partial batch, gives the link a short window to deliver what is
pending, then cancels the owned tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry

import certs
from edge_agent.actions import NvmlPowerControl, read_node_labels
from edge_agent.actions.base import ActionContext, PowerControl
from edge_agent.audit_journal import AuditJournal
from edge_agent.audit_shipper import AuditShipper
from edge_agent.batching import Batcher
from edge_agent.collectors.gpu import GpuCollector
from edge_agent.collectors.host import HostCollector
from edge_agent.collectors.pods import PodAttributor
from edge_agent.collectors.pods import apply as apply_attributions
from edge_agent.commands import CommandMetrics, CommandRunner
from edge_agent.enforcement import Enforcement
from edge_agent.identity import NodeCredentials, load_node_credentials
from edge_agent.journal import CommandJournal
from edge_agent.link import HubLink
from edge_agent.metrics import AgentMetrics, AgentStatus
from edge_agent.node_labels import LABELS_FILE, NodeLabels
from edge_agent.nvml.loader import open_gpu_backend
from edge_agent.policy_cache import PolicyCache
from edge_agent.rate_history import RateHistory
from edge_agent.renewal import CertRenewer, RenewalMetrics
from edge_agent.settings import AgentSettings
from edge_agent.spool import Spool
from edge_agent.state import SequenceState
from edge_agent.trust import AgentClock, TrustStore
from edge_agent.verifier import Verifier
from sentinel import __version__
from sentinel.durations import timestamp_now, to_proto_duration
from sentinel.errors import SentinelError
from sentinel.identity import Kind, spiffe_id
from sentinel.metrics_http import MetricsServer, serve_metrics
from sentinel.tasks import cancel_and_wait, termination_requested
from sentinel.telemetry import MAX_BACKLOG_BOOTS
from sentinel.v1 import agent_pb2, telemetry_pb2

log = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 5.0


NATS_URL_FILE = "nats-url"
CLOCK_FILE = "agent-clock"


@dataclass
class CommandParts:
    """What the command path keeps on disk, opened (and verified) at start."""

    trust: TrustStore
    clock: AgentClock
    journal: CommandJournal
    labels: NodeLabels
    power: PowerControl | None
    policies: PolicyCache
    history: RateHistory
    # The audit journal (its actor is the node's SPIFFE id, known once the certificate is).
    audit: AuditJournal | None = None

    @classmethod
    async def open(cls, settings: AgentSettings, node_id: str, nvml: Any) -> CommandParts:
        data_dir = settings.data_dir
        root_key = settings.commands.root_key or certs.CertLayout(settings.certs_dir).root_pub
        trust = TrustStore.open(data_dir, root_key)
        clock = AgentClock(data_dir / CLOCK_FILE, system=lambda: datetime.now(UTC))
        # Compact by the persisted floor, never the system clock: a clock that is wrong
        # at boot must not make the journal forget a command that can still arrive.
        floor = clock.floor()
        journal = CommandJournal.open(data_dir, floor.timestamp() if floor else 0.0)
        base = {**await _kubernetes_labels(settings, node_id), **settings.labels}
        labels = NodeLabels(data_dir / LABELS_FILE, base)
        power = NvmlPowerControl(nvml) if nvml is not None else None
        policies = PolicyCache.open(data_dir, trust, clock.now())
        history = RateHistory.open(data_dir, clock.now())
        return cls(trust, clock, journal, labels, power, policies, history)


async def _kubernetes_labels(settings: AgentSettings, node_id: str) -> dict[str, str]:
    """The Node object's labels; a Kubernetes API that is away is logged, not fatal."""
    try:
        return await asyncio.to_thread(read_node_labels, settings.commands.actions, node_id)
    except SentinelError as exc:
        log.warning("cannot read this node's Kubernetes labels: %s", exc)
        return {}


class Agent:
    """A started agent. Create with `await Agent.start(settings)`; stop with `await stop()`."""

    def __init__(
        self,
        settings: AgentSettings,
        credentials: NodeCredentials,
        *,
        sequence: SequenceState,
        spool: Spool,
        host: HostCollector,
        gpu: GpuCollector | None,
        executor: ThreadPoolExecutor,
        commands: CommandParts,
        pods: PodAttributor | None = None,
    ) -> None:
        self.settings = settings
        self.node_id = credentials.node_id
        # Replaced by each renewal; the link and the command consumer read it from here.
        self.credentials = credentials
        self.sequence = sequence
        self._host = host
        self._gpu = gpu
        self._executor = executor
        self._pods = pods
        self.spool = spool
        self.host_inventory = telemetry_pb2.HostInventory()
        self.gpu_inventory: list[telemetry_pb2.GpuInventory] = []
        self.started_at = timestamp_now()
        self.trust = commands.trust
        self.labels = commands.labels
        self.commands_parts = commands
        self.link = HubLink(
            settings.link,
            credentials.tls,
            self.spool,
            self._hello,
            trust=commands.trust,
            policies=commands.policies,
            clock=commands.clock.now,
            nats_url_file=settings.data_dir / NATS_URL_FILE,
        )
        self.samples_taken = 0
        self.sample_cpu_s = 0.0
        self.batcher = Batcher(self.node_id, sequence, spool)
        self.metrics = AgentMetrics(CollectorRegistry(), hostname=socket.gethostname())
        self.commands = CommandRunner(
            self.node_id,
            verifier=Verifier(
                self.node_id,
                commands.trust,
                commands.clock,
                skew=settings.commands.allowed_skew,
            ),
            trust=commands.trust,
            journal=commands.journal,
            enforcement=Enforcement(commands.policies, commands.history, commands.clock),
            context=ActionContext(
                self.node_id, settings.commands.actions, commands.labels, commands.power
            ),
            metrics=CommandMetrics(self.metrics.registry),
            nats_url=lambda: settings.commands.nats_url or self.link.nats_url,
            tls=lambda: self.credentials.tls,
            audit=AuditShipper(self.node_id, commands.audit) if commands.audit else None,
        )
        self.renewer = CertRenewer(
            credentials,
            settings.certs_dir,
            settings.link.hub_address,
            on_renewed=self._use_credentials,
            metrics=RenewalMetrics(self.metrics.registry),
            settings=settings.renewal,
        )
        self.metrics_server: MetricsServer | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    async def start(cls, settings: AgentSettings) -> Agent:
        credentials = load_node_credentials(settings.certs_dir, settings.node_id)
        sequence = SequenceState.open(settings.data_dir)
        sampling = settings.sampling
        nvml, backend = open_gpu_backend(
            sampling.nvml_replay, sampling.replay_gpus, xid_events=sampling.replay_xid_events
        )
        with contextlib.ExitStack() as undo:  # unwinds only if start fails
            gpu = None
            if nvml is not None:
                gpu = GpuCollector(
                    nvml, slow_interval_s=sampling.slow_counter_interval.total_seconds()
                )
                undo.callback(gpu.close)
            spool = Spool.open(settings.data_dir / "spool", max_bytes=settings.spool_max_bytes)
            undo.callback(spool.close)
            commands = await CommandParts.open(settings, credentials.node_id, nvml)
            undo.callback(commands.journal.close)
            undo.callback(commands.history.close)
            commands.audit = AuditJournal.open(
                settings.data_dir,
                spiffe_id(credentials.trust_domain, Kind.NODE, credentials.node_id),
            )
            undo.callback(commands.audit.close)
            # A batch spooled just before a crash keeps its seq: never issue it again.
            sequence.advance_past(spool.last_seq)
            agent = cls(
                settings,
                credentials,
                sequence=sequence,
                spool=spool,
                host=HostCollector(),
                gpu=gpu,
                executor=ThreadPoolExecutor(max_workers=1, thread_name_prefix="sentinel-collect"),
                commands=commands,
                pods=PodAttributor(sampling.pod_resources_socket)
                if sampling.pod_resources_socket
                else None,
            )
            await agent._read_inventory(backend)
            agent.metrics.set_status(agent.status)
            if settings.metrics_listen:
                agent.metrics_server = serve_metrics(
                    agent.metrics.registry, settings.metrics_listen
                )
            undo.pop_all()
        commands.labels.on_change = agent.link.rehello
        agent._tasks = [
            asyncio.create_task(agent._sample_forever(), name="agent-sampler"),
            asyncio.create_task(agent.link.run(), name="agent-hub-link"),
            asyncio.create_task(agent.commands.run(), name="agent-commands"),
            asyncio.create_task(agent.renewer.run(), name="agent-cert-renewer"),
        ]
        log.info(
            "agent %s started (boot %s, GPU backend %s)", agent.node_id, sequence.boot_id, backend
        )
        return agent

    async def _read_inventory(self, backend: str) -> None:
        loop = asyncio.get_running_loop()
        self.host_inventory = await loop.run_in_executor(self._executor, self._host.inventory)
        self.host_inventory.gpu_backend = backend
        if self._gpu is not None:
            self.gpu_inventory = await loop.run_in_executor(self._executor, self._gpu.start)
            self._gpu.system_info().fill(self.host_inventory)

    def _use_credentials(self, credentials: NodeCredentials) -> None:
        """A renewed certificate: the hub link moves to it now, NATS at its next connect."""
        self.credentials = credentials
        self.link.use_credentials(credentials.tls)

    def _hello(self) -> agent_pb2.AgentHello:
        return agent_pb2.AgentHello(
            node_id=self.node_id,
            boot_id=self.sequence.boot_id,
            backlog_boot_ids=self.spool.backlog_boot_ids(
                self.sequence.boot_id, limit=MAX_BACKLOG_BOOTS
            ),
            agent_version=__version__,
            labels=self.labels.current(),
            keyset_version=self.trust.version,
            policy_version=self.commands_parts.policies.version,
            host=self.host_inventory,
            gpus=self.gpu_inventory,
            heartbeat_interval=to_proto_duration(self.settings.link.heartbeat_interval),
            started_at=self.started_at,
        )

    async def _sample_forever(self) -> None:
        loop = asyncio.get_running_loop()
        sample_s = self.settings.sampling.sample_interval.total_seconds()
        batch_s = self.settings.sampling.batch_interval.total_seconds()
        next_sample = loop.time()
        next_seal = loop.time()  # the first sample is sealed at once
        while True:
            sample = await loop.run_in_executor(self._executor, self._take_sample)
            self.batcher.add(sample)  # seals early when the batch would grow too large
            self.metrics.update(sample, self.gpu_inventory)
            if loop.time() >= next_seal:
                self.seal()
                next_seal += batch_s * max(1, int((loop.time() - next_seal) // batch_s) + 1)
            next_sample += sample_s
            await asyncio.sleep(max(0.0, next_sample - loop.time()))

    def _take_sample(self) -> telemetry_pb2.Sample:
        """Runs on the collector thread."""
        started = time.thread_time()
        sample = telemetry_pb2.Sample(time=timestamp_now(), host=self._host.sample())
        if self._gpu is not None:
            sample.gpus.extend(self._gpu.sample())
            if self._pods is not None:
                apply_attributions(sample.gpus, self._pods.attributions())
        self.sample_cpu_s += time.thread_time() - started
        self.samples_taken += 1
        return sample

    def seal(self) -> None:
        """Turn the samples gathered so far into one batch, durable in the spool."""
        self.batcher.seal()

    async def stop(self) -> None:
        """Idempotent: seal, drain briefly, then cancel the owned tasks."""
        if not self._tasks:
            return
        sampler, link, commands, renewer = self._tasks
        self._tasks = []
        await cancel_and_wait(sampler, commands, renewer)
        self.commands.close()
        self.seal()
        if self.link.connected.is_set():
            await self._drain(DRAIN_TIMEOUT_S)
        await cancel_and_wait(link)
        self.spool.close()
        if self._gpu is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._gpu.close)
        if self._pods is not None:
            self._pods.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self.metrics_server is not None:
            await asyncio.to_thread(self.metrics_server.close)
        log.info("agent %s stopped (%d batches unacknowledged)", self.node_id, len(self.spool))

    async def _drain(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while len(self.spool):
                    self.spool.changed.clear()
                    await self.spool.changed.wait()

    def status(self) -> AgentStatus:
        """The agent's own health, as /metrics shows it."""
        return AgentStatus(
            spool_bytes=self.spool.bytes_on_disk(),
            spool_batches=len(self.spool),
            corrupt_records_total=self.spool.corrupt_records,
            gaps_announced_total=self.link.gaps_sent,
            batches_dropped_total=self.spool.dropped_batches,
            reconnects_total=max(0, self.link.sessions - 1),
            acks_total=self.link.acks_received,
            hub_connected=self.link.connected.is_set(),
            samples_total=self.samples_taken,
            sample_cpu_seconds_total=self.sample_cpu_s,
        )


async def run_agent(settings: AgentSettings) -> None:
    """Run until SIGTERM or SIGINT, then stop gracefully. SIGUSR1 renews the certificate now."""
    stop = termination_requested()
    # Installed before start, so an early SIGUSR1 is kept for the renewer, not fatal.
    renew_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, renew_requested.set)
    agent = await Agent.start(settings)
    loop.add_signal_handler(signal.SIGUSR1, agent.renewer.renew_now)
    if renew_requested.is_set():
        agent.renewer.renew_now()
    print(
        f"sentinel agent {agent.node_id} on {socket.gethostname()} -> {settings.link.hub_address}",
        flush=True,
    )
    if agent.metrics_server is not None:
        print(f"metrics on {agent.metrics_server.url}", flush=True)
    await stop.wait()
    await agent.stop()
