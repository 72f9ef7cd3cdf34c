"""Turns the GPU health states in a node's samples into `gpu.health_changed` events.

Pure: given the node's last known sample and the new ones, in order, it returns one
event payload per GPU (by UUID) whose state changed. A GPU seen for the first time
produces an event only if it is not healthy; GPUs that report no health
(UNSPECIFIED, e.g. an older agent) produce none.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sentinel.durations import format_time, from_timestamp
from sentinel.v1 import telemetry_pb2

UNSPECIFIED = telemetry_pb2.GPU_HEALTH_STATE_UNSPECIFIED
HEALTHY = telemetry_pb2.GPU_HEALTH_STATE_HEALTHY


def state_name(state: int) -> str:
    return telemetry_pb2.GpuHealthState.Name(state).removeprefix("GPU_HEALTH_STATE_").lower()


def health_changes(
    previous: telemetry_pb2.Sample | None, samples: Iterable[telemetry_pb2.Sample]
) -> list[dict[str, Any]]:
    known = {g.uuid: g.health.state for g in previous.gpus} if previous is not None else {}
    changes: list[dict[str, Any]] = []
    for sample in samples:
        for gpu in sample.gpus:
            state = gpu.health.state
            before = known.get(gpu.uuid, UNSPECIFIED)
            known[gpu.uuid] = state
            if state in (UNSPECIFIED, before):
                continue
            if before == UNSPECIFIED and state == HEALTHY:
                continue
            changes.append(_payload(sample, gpu, before))
    return changes


def _payload(
    sample: telemetry_pb2.Sample, gpu: telemetry_pb2.GpuMetrics, before: int
) -> dict[str, Any]:
    reasons = [
        {"source": r.source, "xid": r.xid, "detail": r.detail, "implies": state_name(r.implies)}
        for r in gpu.health.reasons
    ]
    xids = [r.xid for r in gpu.health.reasons if r.source == "xid" and r.xid]
    return {
        "gpu": gpu.index,
        "uuid": gpu.uuid,
        "from_state": state_name(before),
        "to_state": state_name(gpu.health.state),
        "xid": xids[0] if xids else None,
        "reasons": reasons,
        "observed_at": format_time(from_timestamp(sample.time))
        if sample.HasField("time")
        else None,
    }
