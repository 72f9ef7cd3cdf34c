"""The hub's Prometheus metrics: telemetry intake, gaps, refusals, agents and nodes.

`HubMetrics(registry)` registers everything on the registry it is given (a fresh one per test)
and offers one small method per event the hub counts, so call sites read as what happened
(`metrics.duplicate_dropped()`), not as metric plumbing.

Invariants:
- Names follow `sentinel_hub_<thing>_<unit>[_total]`; rates ("batches per second") are PromQL's
  `rate()` over the counters, never computed here.
- Label values come from small closed sets (gap and refusal reasons, node states), so series
  stay bounded. Gap reasons are `gap_reason_label(GapReason)`: "overflow", "corrupt"; both are
  exported at 0 from the start so that `increase()` sees the first gap.
- The nodes-by-state gauge asks the hub's callback at scrape time (on the HTTP server's thread);
  a callback that raises is logged and leaves that one family out of the scrape.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from hub.budgets import REASONS as BUDGET_REASONS
from sentinel.v1 import telemetry_pb2

log = logging.getLogger(__name__)

# From half a millisecond (a PubAck on a local JetStream) to 5 s (a struggling cluster).
ACK_LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
NodesByState = Callable[[], Mapping[str, int]]


def gap_reason_label(reason: int) -> str:
    """The `reason` label for a GapReason: GAP_REASON_OVERFLOW → "overflow"."""
    return telemetry_pb2.GapReason.Name(reason).removeprefix("GAP_REASON_").lower()


_GAP_REASONS = tuple(
    gap_reason_label(value)
    for value in telemetry_pb2.GapReason.values()
    if value != telemetry_pb2.GAP_REASON_UNSPECIFIED
)


class HubMetrics:
    """Every metric the hub exports, registered on `registry`."""

    def __init__(
        self,
        registry: CollectorRegistry,
        certificate_expiries: Callable[[], Mapping[str, float]] | None = None,
    ) -> None:
        """`certificate_expiries()`, asked at each scrape, gives {"server": …, "ca": …} in
        Unix seconds for the hub's serving pair (a reloaded pair shows at once)."""
        self.registry = registry
        self._agents = Gauge(
            "sentinel_hub_agents_connected",
            "Agents with an open telemetry stream to this hub.",
            registry=registry,
        )
        self._batches = Counter(
            "sentinel_hub_telemetry_batches_total",
            "Telemetry batches accepted and acknowledged; batches per second is rate() of this.",
            registry=registry,
        )
        self._ack_latency = Histogram(
            "sentinel_hub_ack_latency_seconds",
            "Time from receiving a telemetry batch to acknowledging it (durable write included).",
            buckets=ACK_LATENCY_BUCKETS_S,
            registry=registry,
        )
        self._duplicates = Counter(
            "sentinel_hub_telemetry_duplicates_total",
            "Telemetry batches at or below the acknowledged sequence: dropped and re-acknowledged.",
            registry=registry,
        )
        self._gaps = Counter(
            "sentinel_hub_telemetry_gaps_total",
            "Gaps agents announced (ranges of batches they had to drop), by reason.",
            ["reason"],
            registry=registry,
        )
        self._gap_batches = Counter(
            "sentinel_hub_telemetry_gap_batches_total",
            "Telemetry batches lost in announced gaps, by reason.",
            ["reason"],
            registry=registry,
        )
        self._refused = Counter(
            "sentinel_hub_telemetry_refused_total",
            "Telemetry batches refused (malformed, out of order, not allowed), by reason.",
            ["reason"],
            registry=registry,
        )
        self._rpc_refused = Counter(
            "sentinel_hub_rpc_refused_total",
            "Calls refused before their handler ran because a budget was spent, by reason.",
            ["reason"],
            registry=registry,
        )
        for reason in BUDGET_REASONS:
            self._rpc_refused.labels(reason=reason)
        self._telemetry_undecodable = Counter(
            "sentinel_hub_telemetry_undecodable_total",
            "Messages on the telemetry subjects of watched nodes that are no TelemetryBatch "
            "(skipped; counted once per message, however many viewers watch).",
            registry=registry,
        )
        self._telemetry_watch_dropped = Counter(
            "sentinel_hub_telemetry_watch_dropped_total",
            "Telemetry batches a slow WatchTelemetry viewer lost (its oldest queued, to make "
            "room); counted once per viewer that lost one.",
            registry=registry,
        )
        self._publish_failures = Counter(
            "sentinel_hub_event_publish_failures_total",
            "Fleet events (CloudEvents on NATS) that could not be published.",
            registry=registry,
        )
        self._commands_issued = Counter(
            "sentinel_hub_commands_issued_total",
            "Signed command envelopes published (one per target node), by action.",
            ["action"],
            registry=registry,
        )
        self._command_outcomes = Counter(
            "sentinel_hub_command_outcomes_total",
            "Per-node command outcomes announced (succeeded, planned, refused, failed), by reason.",
            ["outcome", "reason"],
            registry=registry,
        )
        self._results_dropped = Counter(
            "sentinel_hub_command_results_dropped_total",
            "Command results dropped unread (undecodable, or naming another node), by reason.",
            ["reason"],
            registry=registry,
        )
        self._certificate_expiry = Gauge(
            "sentinel_hub_certificate_expiry_timestamp_seconds",
            "When the hub's serving certificate (server) and its CA (ca) expire, Unix seconds.",
            ["certificate"],
            registry=registry,
        )
        if certificate_expiries is not None:
            self._export_expiries(certificate_expiries)
        for reason in _GAP_REASONS:
            self._gaps.labels(reason=reason)
            self._gap_batches.labels(reason=reason)
        self._nodes = _NodesByStateCollector()
        registry.register(self._nodes)

    def agent_connected(self) -> None:
        """An agent opened its telemetry stream."""
        self._agents.inc()

    def agent_disconnected(self) -> None:
        """An agent's telemetry stream ended."""
        self._agents.dec()

    def batch_accepted(self, ack_latency_s: float) -> None:
        """A batch was durably written and acknowledged `ack_latency_s` after it arrived."""
        self._batches.inc()
        self._ack_latency.observe(ack_latency_s)

    def duplicate_dropped(self) -> None:
        """A batch at or below the acknowledged sequence was dropped (and re-acknowledged)."""
        self._duplicates.inc()

    def gap_recorded(self, batches: int, reason: str) -> None:
        """An agent announced a gap of `batches` batches; `reason` from `gap_reason_label`."""
        self._gaps.labels(reason=reason).inc()
        self._gap_batches.labels(reason=reason).inc(batches)

    def batch_refused(self, reason: str) -> None:
        """A batch was refused; `reason` is the error's stable reason code."""
        self._refused.labels(reason=reason).inc()

    def rpc_refused(self, reason: str) -> None:
        """A call was refused for a spent budget; `reason` from `hub.budgets`."""
        self._rpc_refused.labels(reason=reason).inc()

    def telemetry_undecodable(self) -> None:
        """A watched telemetry message was skipped: it is no TelemetryBatch."""
        self._telemetry_undecodable.inc()

    def telemetry_watch_dropped(self, batches: int) -> None:
        """Slow WatchTelemetry viewers lost `batches` batches, each its oldest queued."""
        self._telemetry_watch_dropped.inc(batches)

    def event_publish_failed(self) -> None:
        """A fleet event could not be published."""
        self._publish_failures.inc()

    def commands_issued(self, action: str, envelopes: int) -> None:
        """`envelopes` signed envelopes of `action` were published."""
        self._commands_issued.labels(action=action).inc(envelopes)

    def command_outcome(self, outcome: str, reason: str) -> None:
        """One (command, node, outcome) was announced."""
        self._command_outcomes.labels(outcome=outcome, reason=reason or "none").inc()

    def command_result_dropped(self, reason: str) -> None:
        self._results_dropped.labels(reason=reason).inc()

    def set_nodes_by_state(self, nodes_by_state: NodesByState) -> None:
        """Export `sentinel_hub_nodes{state}` from `nodes_by_state()`, asked at each scrape."""
        self._nodes.source = nodes_by_state

    def _export_expiries(self, expiries: Callable[[], Mapping[str, float]]) -> None:
        def expiry_of(name: str) -> Callable[[], float]:
            return lambda: expiries()[name]

        for name in ("server", "ca"):
            self._certificate_expiry.labels(certificate=name).set_function(expiry_of(name))


class _NodesByStateCollector:
    """`sentinel_hub_nodes{state}`, from the hub's callback; nothing until one is set."""

    def __init__(self) -> None:
        self.source: NodesByState | None = None

    def collect(self) -> Iterator[Metric]:
        source = self.source
        if source is None:
            return
        try:
            counts = dict(source())
        except Exception:
            log.exception("nodes-by-state callback failed; sentinel_hub_nodes left out")
            return
        yield self._family(counts)

    def describe(self) -> Iterator[Metric]:
        yield self._family({})

    @staticmethod
    def _family(counts: Mapping[str, int]) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            "sentinel_hub_nodes", "Nodes in the fleet registry, by state.", labels=["state"]
        )
        for state, count in sorted(counts.items()):
            family.add_metric([state], count)
        return family


__all__ = ["ACK_LATENCY_BUCKETS_S", "HubMetrics", "NodesByState", "gap_reason_label"]
