"""Named SLO series: where the hub finds the value an `slo_guard` rule compares.

    series:
      p95_latency_ms:                   # the name a slo_guard's `series:` refers to
        promql: 1000 * histogram_quantile(0.95, sum by (le) (rate(http_seconds_bucket[5m])))
      gpu_busy: {telemetry: gpu_utilization_mean}

Each name has exactly one source: `promql` (an instant query the hub sends to the
Prometheus given by `sentinel hub --prometheus`) or `telemetry` (one of
`TelemetryMetric`, computed by the hub from the latest samples of the online nodes).

Invariants: this module only describes series; fetching them is the hub's business
(`hub.series`), so the policy package stays free of I/O. Names use letters, digits,
`_ . : -` and start with a letter or `_`. A value the hub cannot get is left out of
`FleetContext.series`, and the rule asks for a human (NEEDS_APPROVAL, NO_INPUT).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import TypeAlias

from policy._reader import Node

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,62}")
MAX_QUERY_CHARS = 4096


class TelemetryMetric(enum.StrEnum):
    """Series the hub computes from its own telemetry (online nodes, latest sample)."""

    GPU_UTILIZATION_MEAN = "gpu_utilization_mean"  # percent, over every reporting GPU
    GPU_UTILIZATION_MAX = "gpu_utilization_max"  # percent, the busiest GPU
    GPU_MEMORY_USED_FRACTION_MEAN = "gpu_memory_used_fraction_mean"  # 0..1, used/(used+free)
    NODES_ONLINE = "nodes_online"  # a count


@dataclass(frozen=True)
class PromQLSeries:
    """An instant PromQL query whose answer must be one number (a scalar or one sample)."""

    query: str


@dataclass(frozen=True)
class TelemetrySeries:
    metric: TelemetryMetric


SeriesSpec: TypeAlias = PromQLSeries | TelemetrySeries


def read_series(node: Node) -> dict[str, SeriesSpec]:
    """The bundle's `series:` mapping, name by name."""
    specs: dict[str, SeriesSpec] = {}
    for name, body in node.mapping().items():
        if not _NAME.fullmatch(name):
            raise body.error(
                f"invalid series name {name!r}: use up to 63 letters, digits, '_', '.', ':' "
                "or '-', starting with a letter or '_'"
            )
        specs[name] = _read_one(body)
    return specs


def _read_one(node: Node) -> SeriesSpec:
    fields = node.fields((), ("promql", "telemetry"))
    if len(fields) != 1:
        raise node.error("must have exactly one of: promql, telemetry")
    if "promql" in fields:
        return PromQLSeries(_read_query(fields["promql"]))
    return TelemetrySeries(_read_metric(fields["telemetry"]))


def _read_query(node: Node) -> str:
    query = node.text().strip()
    if not query:
        raise node.error("must not be empty")
    if len(query) > MAX_QUERY_CHARS:
        raise node.error(f"longer than {MAX_QUERY_CHARS} characters")
    return query


def _read_metric(node: Node) -> TelemetryMetric:
    name = node.text()
    try:
        return TelemetryMetric(name)
    except ValueError:
        known = ", ".join(metric.value for metric in TelemetryMetric)
        raise node.error(f"unknown telemetry series {name!r} (expected one of: {known})") from None
