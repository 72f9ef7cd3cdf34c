"""A GPU's health: HEALTHY, DEGRADED or FAILED, judged from XID events and counters, with reasons.

XID table, from NVIDIA's XID catalog (docs.nvidia.com/deploy/xid-errors):

| XID | NVIDIA's description | implies |
| --- | --- | --- |
| 13 | Graphics engine exception | recorded only |
| 31 | GPU memory page fault (MMU fault) | recorded only |
| 43 | GPU stopped processing | recorded only |
| 45 | Preemptive cleanup, due to previous errors | recorded only |
| 48 | Double-bit ECC error | FAILED |
| 61 | Internal micro-controller breakpoint/warning | DEGRADED |
| 62 | Internal micro-controller halt | DEGRADED |
| 63 | ECC page retirement or row remapping recording event | DEGRADED |
| 64 | ECC page retirement or row remapping recording failure | FAILED |
| 74 | NVLink error | DEGRADED |
| 79 | GPU has fallen off the bus | FAILED |
| 92 | High single-bit ECC error rate | DEGRADED |
| 94 | Contained ECC error | DEGRADED |
| 95 | Uncontained ECC error | FAILED |
| 119 | GSP RPC timeout | FAILED |
| 120 | GSP error | FAILED |
| 140 | Unrecovered ECC error | FAILED |
| any other | unknown xid | DEGRADED |

"Recorded only" XIDs are usually an application's fault: they count in `xid_counts` and
`last_xid` but do not change the state and give no reason. Counter rules, on the current sample:

| source | condition | implies |
| --- | --- | --- |
| `ecc_dbe_volatile` | `ecc_uncorrected_volatile` > 0 | DEGRADED |
| `remapped_rows_uncorrectable` | `remapped_rows_uncorrectable` > 0 | DEGRADED |
| `row_remap_pending` | `row_remap_pending` | DEGRADED |
| `row_remap_failure` | `row_remap_failure` | FAILED |
| `clock_event` | `hw_slowdown`, `hw_thermal_slowdown` or `hw_power_brake_slowdown` | DEGRADED |

Invariants:
- The state is the worst any reason implies; HEALTHY exactly when there is no reason.
- A FAILED XID is sticky: the GPU stays FAILED for the tracker's (the agent's) life, since only a
  GPU reset or driver reload clears such a fault. A DEGRADED XID clears `quiet_period_s` (1 h by
  default) after its last occurrence. Counter reasons reflect the sample being evaluated.
- Time is the caller's clock (`XidEvent.time_s` and `now_s` on the same monotonic clock).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from edge_agent.collectors.xid import XidEvent
from sentinel.v1 import telemetry_pb2

HEALTHY = telemetry_pb2.GPU_HEALTH_STATE_HEALTHY
DEGRADED = telemetry_pb2.GPU_HEALTH_STATE_DEGRADED
FAILED = telemetry_pb2.GPU_HEALTH_STATE_FAILED
DEFAULT_QUIET_PERIOD_S = 3600.0
XID_SOURCE = "xid"
UNKNOWN_XID = "unknown xid"


@dataclass(frozen=True)
class XidRule:
    """What one XID code means. `implies` HEALTHY: recorded only."""

    description: str
    implies: telemetry_pb2.GpuHealthState


XID_RULES: Mapping[int, XidRule] = MappingProxyType(
    {
        13: XidRule("graphics engine exception", HEALTHY),
        31: XidRule("GPU memory page fault (MMU fault)", HEALTHY),
        43: XidRule("GPU stopped processing", HEALTHY),
        45: XidRule("preemptive cleanup, due to previous errors", HEALTHY),
        48: XidRule("double-bit ECC error", FAILED),
        61: XidRule("internal micro-controller breakpoint/warning", DEGRADED),
        62: XidRule("internal micro-controller halt", DEGRADED),
        63: XidRule("ECC page retirement or row remapping recording event", DEGRADED),
        64: XidRule("ECC page retirement or row remapping recording failure", FAILED),
        74: XidRule("NVLink error", DEGRADED),
        79: XidRule("GPU has fallen off the bus", FAILED),
        92: XidRule("high single-bit ECC error rate", DEGRADED),
        94: XidRule("contained ECC error", DEGRADED),
        95: XidRule("uncontained ECC error", FAILED),
        119: XidRule("GSP RPC timeout", FAILED),
        120: XidRule("GSP error", FAILED),
        140: XidRule("unrecovered ECC error", FAILED),
    }
)
UNKNOWN_XID_RULE = XidRule(UNKNOWN_XID, DEGRADED)

# Clock-event reasons (as `gpu_fields.decode_clock_event_reasons` names them) that mean the
# hardware itself is slowing the GPU down, and what each says.
HARDWARE_SLOWDOWNS: Mapping[str, str] = MappingProxyType(
    {
        "hw_slowdown": "hardware slowdown (over temperature, power brake or external signal)",
        "hw_thermal_slowdown": "hardware thermal slowdown: the GPU is too hot",
        "hw_power_brake_slowdown": "hardware power brake: the power supply asked to slow down",
    }
)


def xid_rule(xid: int) -> XidRule:
    """The table's rule for `xid`; unknown codes are DEGRADED."""
    return XID_RULES.get(xid, UNKNOWN_XID_RULE)


@dataclass
class _GpuXids:
    last_xid: int = 0
    counts: Counter[int] = field(default_factory=Counter)
    failed: set[int] = field(default_factory=set)
    degraded_last_s: dict[int, float] = field(default_factory=dict)


class GpuHealthTracker:
    """XID history per GPU index, and the health it and a sample's counters imply."""

    def __init__(self, *, quiet_period_s: float = DEFAULT_QUIET_PERIOD_S) -> None:
        self._quiet_period_s = quiet_period_s
        self._gpus: dict[int, _GpuXids] = {}

    def observe_xid(self, event: XidEvent) -> None:
        """Record one event; events without a GPU index are ignored (the caller counts them)."""
        if event.gpu_index is None:
            return
        gpu = self._gpus.setdefault(event.gpu_index, _GpuXids())
        gpu.last_xid = event.xid
        gpu.counts[event.xid] += 1
        implies = xid_rule(event.xid).implies
        if implies == FAILED:
            gpu.failed.add(event.xid)
        elif implies == DEGRADED:
            previous_s = gpu.degraded_last_s.get(event.xid, event.time_s)
            gpu.degraded_last_s[event.xid] = max(previous_s, event.time_s)

    def last_xid(self, gpu_index: int) -> int:
        """The most recent XID seen on the GPU; 0 for none."""
        gpu = self._gpus.get(gpu_index)
        return gpu.last_xid if gpu else 0

    def xid_counts(self, gpu_index: int) -> dict[int, int]:
        """XID code -> occurrences on the GPU since the tracker was made."""
        gpu = self._gpus.get(gpu_index)
        return dict(gpu.counts) if gpu else {}

    def evaluate(self, metrics: telemetry_pb2.GpuMetrics, now_s: float) -> telemetry_pb2.GpuHealth:
        """Health of the GPU `metrics.index` at `now_s`, given its XIDs and this sample."""
        reasons = self._xid_reasons(metrics.index, now_s) + counter_reasons(metrics)
        state = max((reason.implies for reason in reasons), default=HEALTHY)
        return telemetry_pb2.GpuHealth(state=state, reasons=reasons)

    def fill(self, metrics: telemetry_pb2.GpuMetrics, now_s: float) -> None:
        """Set `last_xid`, `xid_counts` and `health` on `metrics`."""
        metrics.last_xid = self.last_xid(metrics.index)
        metrics.xid_counts.update(self.xid_counts(metrics.index))
        metrics.health.CopyFrom(self.evaluate(metrics, now_s))

    def _xid_reasons(self, gpu_index: int, now_s: float) -> list[telemetry_pb2.GpuHealthReason]:
        gpu = self._gpus.get(gpu_index)
        if gpu is None:
            return []
        quiet = [
            xid
            for xid, last_s in gpu.degraded_last_s.items()
            if now_s - last_s >= self._quiet_period_s
        ]
        for xid in quiet:
            del gpu.degraded_last_s[xid]
        active = sorted(gpu.failed | gpu.degraded_last_s.keys())
        return [_xid_reason(xid, gpu.counts[xid]) for xid in active]


def counter_reasons(metrics: telemetry_pb2.GpuMetrics) -> list[telemetry_pb2.GpuHealthReason]:
    """Reasons the sample's ECC, row-remap and clock-event values give; none when unset."""
    reasons = []
    if metrics.ecc_uncorrected_volatile > 0:
        count = metrics.ecc_uncorrected_volatile
        reasons.append(
            _reason("ecc_dbe_volatile", f"{count} uncorrected ECC errors since the driver loaded")
        )
    if metrics.remapped_rows_uncorrectable > 0:
        count = metrics.remapped_rows_uncorrectable
        reasons.append(
            _reason(
                "remapped_rows_uncorrectable", f"{count} rows remapped for uncorrectable errors"
            )
        )
    if metrics.row_remap_pending:
        reasons.append(_reason("row_remap_pending", "row remapping pending: reset the GPU"))
    if metrics.row_remap_failure:
        reasons.append(_reason("row_remap_failure", "row remapping failed", implies=FAILED))
    for name in metrics.clock_event_reason_names:
        if name in HARDWARE_SLOWDOWNS:
            reasons.append(_reason("clock_event", f"{name}: {HARDWARE_SLOWDOWNS[name]}"))
    return reasons


def _xid_reason(xid: int, count: int) -> telemetry_pb2.GpuHealthReason:
    rule = xid_rule(xid)
    detail = rule.description if count == 1 else f"{rule.description} ({count} times)"
    return telemetry_pb2.GpuHealthReason(
        source=XID_SOURCE, xid=xid, detail=detail, implies=rule.implies
    )


def _reason(
    source: str, detail: str, implies: telemetry_pb2.GpuHealthState = DEGRADED
) -> telemetry_pb2.GpuHealthReason:
    return telemetry_pb2.GpuHealthReason(source=source, detail=detail, implies=implies)
