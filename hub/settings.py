"""Hub settings, grouped by concern. Frozen: a running hub never changes them."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from sentinel.tls import MIB


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Transport limits and per-identity budgets of the gRPC listener (stated in the README).

    The defaults are sized for a fleet of 10,000 nodes:

    - `max_receive_bytes` (1 MiB): the largest message the hub reads; gRPC refuses a bigger
      one (RESOURCE_EXHAUSTED) before any handler runs. Agents seal batches well under it.
    - `max_concurrent_streams` (16): streams per HTTP/2 connection.
    - The budgets (`hub.budgets`), checked right after authorisation and keyed by the
      verified identity; a refusal is RESOURCE_EXHAUSTED with a reason and a RetryInfo of
      `budget_retry_after_s` (5 s):
      - `node_streams_per_identity` (3): streams one node may hold: its Connect, one that a
        certificate switch opens before the old one ends, one that a reconnect opens
        before the hub's keepalive noticed the dead one;
      - `user_streams_per_identity` (16): streams (WatchTelemetry, WatchCommand, ...) one
        user may hold. Each unfiltered WatchTelemetry stream is sent every batch the
        fleet stores, so this cap also bounds what one user's watching costs the hub;
      - `unary_per_identity` (32): unary calls one identity may have in flight;
      - `user_calls_total` (1,024): calls of all users together, streams and unary, so that
        what is left of the capacity is the nodes' own.
    - `max_concurrent_rpcs` (40,000): gRPC's own guard, counted before anyone is
      authenticated, so the one limit a single identity must never reach: a last resort
      above what the budgets admit at worst (10,000 nodes x 3 streams plus the users'
      1,024 calls) and well above the usual 10,000 Connect streams.
    """

    max_receive_bytes: int = MIB
    keepalive_time_s: float = 30.0
    keepalive_timeout_s: float = 10.0
    min_client_ping_interval_s: float = 10.0
    # gRPC core adds +/-10% jitter to the connection age on its own.
    max_connection_age_s: float = 3600.0
    max_connection_age_grace_s: float = 300.0
    max_concurrent_streams: int = 16
    node_streams_per_identity: int = 3
    user_streams_per_identity: int = 16
    unary_per_identity: int = 32
    user_calls_total: int = 1024
    budget_retry_after_s: float = 5.0
    max_concurrent_rpcs: int = 40_000
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
