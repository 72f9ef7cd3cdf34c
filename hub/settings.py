"""Hub settings, grouped by concern. Frozen: a running hub never changes them."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from sentinel.tls import MIB


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Transport limits of the gRPC listener (stated in the README)."""

    max_receive_bytes: int = 4 * MIB
    keepalive_time_s: float = 30.0
    keepalive_timeout_s: float = 10.0
    min_client_ping_interval_s: float = 10.0
    # gRPC core adds +/-10% jitter to the connection age on its own.
    max_connection_age_s: float = 3600.0
    max_connection_age_grace_s: float = 300.0
    max_concurrent_streams: int = 16
    max_concurrent_rpcs: int = 4096
    shutdown_grace_s: float = 10.0


@dataclass(frozen=True, slots=True)
class FleetSettings:
    """How the hub judges liveness and keeps telemetry."""

    heartbeat_interval: timedelta = timedelta(seconds=5)
    offline_after: timedelta = timedelta(seconds=15)
    telemetry_retention: timedelta = timedelta(hours=24)
    hello_timeout_s: float = 10.0
    # How long a JetStream write may take before the batch is refused (UNAVAILABLE).
    store_timeout_s: float = 5.0


@dataclass(frozen=True, slots=True)
class HubSettings:
    certs_dir: Path
    listen: str
    data_dir: Path
    # None: start an embedded nats-server under data_dir.
    nats_url: str | None = None
    # The embedded nats-server's JetStream `sync_interval`: "always" (fsync before every
    # PubAck) or a Go duration. See hub.embedded_nats.
    nats_sync: str = "always"
    # The server-authenticated enrollment listener (EnrollmentService/Enroll only); None: off.
    enroll_listen: str | None = None
    # The address agents are told to reach the hub at (enrollment replies, join commands);
    # None: the listen address, with a wildcard host replaced by this host's name.
    advertise: str | None = None
    # How long a node certificate issued at enrollment or renewal is valid.
    node_cert_validity: timedelta = timedelta(days=30)
    # How often the hub re-reads the revoked set shared by all hubs (JetStream KV).
    revocation_poll_interval: timedelta = timedelta(seconds=10)
    # Prometheus /metrics (plain HTTP); None: not served.
    metrics_listen: str | None = None
    # The Prometheus the policy's `promql` series are queried from (http(s)://HOST:PORT);
    # None: those series have no value, and slo_guard rules comparing them ask for approval.
    prometheus_url: str | None = None
    # How often the hub signs a checkpoint into the audit log (when records were added):
    # a truncation of the audit stream after the last checkpoint is what goes unnoticed.
    audit_checkpoint_interval: timedelta = timedelta(seconds=60)
    hub_id: str = field(default_factory=socket.gethostname)
    limits: ServerLimits = field(default_factory=ServerLimits)
    fleet: FleetSettings = field(default_factory=FleetSettings)
