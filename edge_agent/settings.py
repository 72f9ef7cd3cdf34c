"""Agent settings, grouped by concern. Frozen: a running agent never changes them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from edge_agent.actions.base import ActionSettings


@dataclass(frozen=True, slots=True)
class LinkSettings:
    """How the agent talks to the hub."""

    hub_address: str
    heartbeat_interval: timedelta = timedelta(seconds=5)
    hello_timeout_s: float = 10.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    # Re-sending a backlog after a reconnect is paced so a returning fleet cannot flood the hub.
    resend_batches_per_s: float = 50.0
    max_in_flight: int = 64
    # Moving to a renewed certificate waits this long for the batches in flight to be
    # acknowledged before the old stream ends (what is still unacknowledged is sent again).
    switch_drain_s: float = 5.0


@dataclass(frozen=True, slots=True)
class SamplingSettings:
    batch_interval: timedelta = timedelta(seconds=5)
    sample_interval: timedelta = timedelta(seconds=1)
    slow_counter_interval: timedelta = timedelta(seconds=30)
    nvml_replay: str | None = None
    replay_gpus: int = 1
    # JSON lines of XID events the replay backend injects ({"t": s, "gpu": i, "xid": n}).
    replay_xid_events: Path | None = None
    # The kubelet's pod-resources socket: GPUs are labelled with the pod that holds them.
    pod_resources_socket: Path | None = None


@dataclass(frozen=True, slots=True)
class CommandSettings:
    """How the agent receives and judges commands."""

    # NATS for commands; None: the URL the hub announced in its last hello reply.
    nats_url: str | None = None
    # The pinned root signing key; None: `<certs_dir>/signing/root.pub`.
    root_key: Path | None = None
    # How far in the future a command's issued-at may lie before it is NOT_YET_VALID.
    allowed_skew: timedelta = timedelta(minutes=5)
    actions: ActionSettings = field(default_factory=ActionSettings)


@dataclass(frozen=True, slots=True)
class RenewalSettings:
    """How the agent renews its certificate (see edge_agent.renewal)."""

    # A failed renewal is retried after an exponential, jittered backoff within these bounds.
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 300.0
    rpc_timeout_s: float = 15.0


@dataclass(frozen=True, slots=True)
class AgentSettings:
    certs_dir: Path
    data_dir: Path
    link: LinkSettings
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    node_id: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    # Prometheus /metrics (plain HTTP); None: not served.
    metrics_listen: str | None = None
    # Bytes of telemetry spooled on disk until the hub acknowledges it; beyond it the oldest
    # batches are dropped and announced as a gap (reason overflow).
    spool_max_bytes: int = 128 * 1024 * 1024
    commands: CommandSettings = field(default_factory=CommandSettings)
    renewal: RenewalSettings = field(default_factory=RenewalSettings)
