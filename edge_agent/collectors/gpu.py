"""The GPU collector: NVML readings turned into `GpuMetrics`, at a cost an agent can afford.

`nvml` is the real `pynvml` module or a `ReplayNvml` (see `edge_agent.nvml.loader`); both answer
the same API. The only replay-specific step is `advance()`, called once at the start of every
sample when the backend has it.

Per sample and GPU (~0.3 ms of CPU on an H200): ten cheap calls of 1-2 us (utilisation, memory,
temperature, SM and memory clocks, P-state, clock-event reasons, processes, encoder and decoder
utilisation) and ONE `nvmlDeviceGetFieldValues` call (`gpu_fields.FAST_FIELDS`: power instant and
average, memory temperature, PCIe byte counters). `power_w` is the instant power field;
`nvmlDeviceGetPowerUsage` (a 1 s average on Ampere and newer) is read only where that field is
missing. Rates are derived from counter deltas, so they are unset on the first sample. Every
`slow_interval_s` the slow fields (ECC, row remapping, PCIe replay, energy) ride along in that same
call; between slow reads their last values are carried forward, so every sample has them.
Never called: `nvmlDeviceGetPcieThroughput` (blocks ~21 ms; rates come from the byte counters) and
`nvmlDeviceGetTotalEnergyConsumption` (the energy field is read at the slow rate instead).

XIDs and health: `start()` also starts an XID watcher (`edge_agent.collectors.xid`, one thread
blocked in `nvmlEventSetWait`) when the backend has NVML's event calls, as pynvml and the replay
do. Each sample drains its events into `GpuHealthTracker` (`edge_agent.collectors.health`) and
fills `last_xid`, `xid_counts` (cumulative since start) and `health` on every GPU; health is
judged from counters even without a watcher. An event for a GPU outside the inventory is counted
in `xid_events_ignored` and logged once. `close()` stops the watcher before NVML shuts down.

Threading: every method here is BLOCKING: NVML calls burn CPU while they wait. The agent calls
them in a worker thread (`asyncio.to_thread`), never on the event loop, and one at a time: the
collector is not thread-safe (its XID watcher thread only touches its own queue).

Errors: see `NvmlGuard`; "Not Supported" leaves the field unset and names it in `unsupported`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pynvml

from edge_agent.collectors.gpu_fields import (
    CHEAP_READS,
    FAST_FIELDS,
    FIELD_BY_ID,
    SLOW_FIELDS,
    FieldKind,
    FieldSpec,
    WrappingCounter,
    read_power_usage,
)
from edge_agent.collectors.gpu_inventory import GpuSystemInfo, read_inventory, read_system_info
from edge_agent.collectors.health import GpuHealthTracker
from edge_agent.collectors.nvml_guard import NvmlGuard
from edge_agent.collectors.xid import XidSource, XidWatcher, XidWatcherFactory
from edge_agent.nvml.values import counter_modulus, field_number
from sentinel.v1 import telemetry_pb2

log = logging.getLogger("edge_agent.collectors.gpu")
Metrics = telemetry_pb2.GpuMetrics
_SLOW_FIELD_IDS = frozenset(spec.field_id for spec in SLOW_FIELDS)


@dataclass
class _Gpu:
    """One GPU's handle and what the collector remembers about it between samples."""

    index: int
    uuid: str
    handle: Any
    guard: NvmlGuard
    skipped_fields: set[int] = field(default_factory=set)
    carried: dict[str, int | bool] = field(default_factory=dict)
    pcie: dict[FieldKind, WrappingCounter] = field(default_factory=dict)


class GpuCollector:
    """Samples every GPU NVML sees. Call `start()` once, then `sample()` at the agent's rate.

    `xid_watcher` builds the XID watcher (None: no XID events); `health` judges each GPU (a
    fresh `GpuHealthTracker` by default). Both use `clock`.
    """

    def __init__(
        self,
        nvml: Any,
        *,
        slow_interval_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        xid_watcher: XidWatcherFactory | None = XidWatcher,
        health: GpuHealthTracker | None = None,
    ) -> None:
        self._nvml = nvml
        self._slow_interval_s = slow_interval_s
        self._clock = clock
        self._advance: Callable[[], None] | None = getattr(nvml, "advance", None)
        self._gpus: list[_Gpu] | None = None
        self._last_slow_s: float | None = None
        self._system_guard = NvmlGuard("NVML")
        self._watcher_factory = xid_watcher
        self._watcher: XidSource | None = None
        self._health = health or GpuHealthTracker()
        self.xid_events_ignored = 0

    @property
    def xid_watcher(self) -> XidSource | None:
        """The running XID watcher; None before start, after close, or without XID events."""
        return self._watcher

    def start(self) -> list[telemetry_pb2.GpuInventory]:
        """Find the GPUs and read their static facts, once. NVMLError if GPUs cannot be listed."""
        inventories = []
        self._gpus = []
        for index in range(self._nvml.nvmlDeviceGetCount()):
            handle = self._nvml.nvmlDeviceGetHandleByIndex(index)
            inventory = read_inventory(self._nvml, handle, index, NvmlGuard(f"GPU {index}"))
            label = f"GPU {index} ({inventory.uuid or 'uuid unknown'})"
            self._gpus.append(_Gpu(index, inventory.uuid, handle, NvmlGuard(label)))
            inventories.append(inventory)
        self._start_watcher(self._gpus)
        return inventories

    def system_info(self) -> GpuSystemInfo:
        """Backend name and driver/NVML/CUDA versions."""
        return read_system_info(self._nvml, self._system_guard)

    def sample(self) -> list[telemetry_pb2.GpuMetrics]:
        """One `GpuMetrics` per GPU. BLOCKING: run it in a worker thread."""
        if self._gpus is None:
            raise RuntimeError("GpuCollector.start() must be called before sample()")
        if self._advance is not None:
            self._advance()
        now_s = self._clock()
        slow_due = self._slow_due(now_s)
        self._take_xids(self._gpus)
        samples = [self._sample_gpu(gpu, slow_due) for gpu in self._gpus]
        for metrics in samples:
            self._health.fill(metrics, now_s)
        return samples

    def close(self) -> None:
        """Stop the XID watcher and release NVML (nvmlShutdown). No sampling afterwards."""
        self._gpus = None
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.stop()
        self._system_guard.call(("shutdown",), self._nvml.nvmlShutdown)

    def _start_watcher(self, gpus: list[_Gpu]) -> None:
        has_events = callable(getattr(self._nvml, "nvmlEventSetCreate", None))
        if self._watcher_factory is None or not has_events or not gpus:
            return
        handles = {gpu.index: gpu.handle for gpu in gpus}
        watcher = self._watcher_factory(self._nvml, handles, clock=self._clock)
        if watcher.start():
            self._watcher = watcher

    def _take_xids(self, gpus: list[_Gpu]) -> None:
        if self._watcher is None:
            return
        known = {gpu.index for gpu in gpus}
        for event in self._watcher.drain():
            if event.gpu_index in known:
                self._health.observe_xid(event)
                continue
            self.xid_events_ignored += 1
            if self.xid_events_ignored == 1:
                log.warning(
                    "XID %d for GPU %s, which is not in the inventory: ignored (counted)",
                    event.xid,
                    event.gpu_index,
                )

    def _slow_due(self, now_s: float) -> bool:
        if self._last_slow_s is not None and now_s - self._last_slow_s < self._slow_interval_s:
            return False
        self._last_slow_s = now_s
        return True

    def _sample_gpu(self, gpu: _Gpu, slow_due: bool) -> Metrics:
        metrics = Metrics(index=gpu.index, uuid=gpu.uuid)
        for names, read in CHEAP_READS:
            gpu.guard.call(names, read, self._nvml, gpu.handle, metrics)
        self._read_fields(gpu, metrics, slow_due)
        if not metrics.HasField("power_w"):
            gpu.guard.call(("power_w",), read_power_usage, self._nvml, gpu.handle, metrics)
        for name, value in gpu.carried.items():
            setattr(metrics, name, value)
        metrics.unsupported.extend(gpu.guard.unsupported)
        return metrics

    def _read_fields(self, gpu: _Gpu, metrics: Metrics, slow_due: bool) -> None:
        specs = [spec for spec in FAST_FIELDS if spec.field_id not in gpu.skipped_fields]
        if slow_due:
            specs += [spec for spec in SLOW_FIELDS if spec.field_id not in gpu.skipped_fields]
        if not specs:
            return
        try:
            values = self._nvml.nvmlDeviceGetFieldValues(gpu.handle, [s.field_id for s in specs])
        except pynvml.NVMLError_NotSupported:
            for spec in specs:
                _field_failed(gpu, spec, pynvml.NVML_ERROR_NOT_SUPPORTED)
            return
        except pynvml.NVMLError as exc:
            gpu.guard.report("field_values", exc)
            return
        now_s = self._clock()
        for value in values:
            found = FIELD_BY_ID.get(int(value.fieldId))
            if found is None:
                continue
            spec = found
            if value.nvmlReturn != pynvml.NVML_SUCCESS:
                _field_failed(gpu, spec, int(value.nvmlReturn))
                continue
            _apply_field(gpu, metrics, spec, value, now_s)


def _field_failed(gpu: _Gpu, spec: FieldSpec, code: int) -> None:
    if code == pynvml.NVML_ERROR_NOT_SUPPORTED:
        gpu.skipped_fields.add(spec.field_id)
    gpu.guard.field_failed(spec.metric, code, has_fallback=spec.has_fallback)


def _apply_field(gpu: _Gpu, metrics: Metrics, spec: FieldSpec, value: Any, now_s: float) -> None:
    number = field_number(value)
    if spec.kind is FieldKind.MILLIWATTS:
        setattr(metrics, spec.metric, number / 1000.0)
    elif spec.kind in (FieldKind.PCIE_TX, FieldKind.PCIE_RX):
        _apply_pcie(gpu, metrics, spec, value, now_s)
    elif spec.field_id in _SLOW_FIELD_IDS:
        is_flag = spec.kind is FieldKind.FLAG
        gpu.carried[spec.metric] = bool(number) if is_flag else int(number)
    else:
        setattr(metrics, spec.metric, int(number))


def _apply_pcie(gpu: _Gpu, metrics: Metrics, spec: FieldSpec, value: Any, now_s: float) -> None:
    counter = gpu.pcie.setdefault(spec.kind, WrappingCounter())
    modulus = counter_modulus(int(value.valueType))
    rate = counter.update(int(field_number(value)), modulus, now_s)
    setattr(metrics, spec.metric, counter.total)
    if rate is not None:
        rate_metric = (
            "pcie_transmit_bytes_per_second"
            if spec.kind is FieldKind.PCIE_TX
            else "pcie_receive_bytes_per_second"
        )
        setattr(metrics, rate_metric, rate)
