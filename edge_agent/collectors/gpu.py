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

Threading: every method here is BLOCKING: NVML calls burn CPU while they wait. The agent calls
them in a worker thread (`asyncio.to_thread`), never on the event loop, and one at a time: the
collector is not thread-safe.

Errors: see `NvmlGuard`; "Not Supported" leaves the field unset and names it in `unsupported`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pynvml

from edge_agent.collectors.gpu_fields import (
    FAST_FIELDS,
    FIELD_BY_ID,
    SLOW_FIELDS,
    FieldKind,
    FieldSpec,
    WrappingCounter,
    decode_clock_event_reasons,
)
from edge_agent.collectors.gpu_inventory import GpuSystemInfo, read_inventory, read_system_info
from edge_agent.collectors.nvml_guard import NvmlGuard
from edge_agent.nvml.values import counter_modulus, field_number
from sentinel.v1 import telemetry_pb2

Metrics = telemetry_pb2.GpuMetrics
_SLOW_FIELD_IDS = frozenset(spec.field_id for spec in SLOW_FIELDS)
_CheapRead = Callable[[Any, Any, Metrics], None]


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
    """Samples every GPU NVML sees. Call `start()` once, then `sample()` at the agent's rate."""

    def __init__(
        self,
        nvml: Any,
        *,
        slow_interval_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._nvml = nvml
        self._slow_interval_s = slow_interval_s
        self._clock = clock
        self._advance: Callable[[], None] | None = getattr(nvml, "advance", None)
        self._gpus: list[_Gpu] | None = None
        self._last_slow_s: float | None = None
        self._system_guard = NvmlGuard("NVML")

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
        slow_due = self._slow_due(self._clock())
        return [self._sample_gpu(gpu, slow_due) for gpu in self._gpus]

    def close(self) -> None:
        """Release NVML (nvmlShutdown). The collector cannot sample afterwards."""
        self._gpus = None
        self._system_guard.call(("shutdown",), self._nvml.nvmlShutdown)

    def _slow_due(self, now_s: float) -> bool:
        if self._last_slow_s is not None and now_s - self._last_slow_s < self._slow_interval_s:
            return False
        self._last_slow_s = now_s
        return True

    def _sample_gpu(self, gpu: _Gpu, slow_due: bool) -> Metrics:
        metrics = Metrics(index=gpu.index, uuid=gpu.uuid)
        for names, read in _CHEAP_READS:
            gpu.guard.call(names, read, self._nvml, gpu.handle, metrics)
        self._read_fields(gpu, metrics, slow_due)
        if not metrics.HasField("power_w"):
            gpu.guard.call(("power_w",), _power_usage, self._nvml, gpu.handle, metrics)
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


def _utilization(nvml: Any, handle: Any, metrics: Metrics) -> None:
    rates = nvml.nvmlDeviceGetUtilizationRates(handle)
    metrics.utilization_gpu_percent = int(rates.gpu)
    metrics.utilization_memory_percent = int(rates.memory)


def _memory(nvml: Any, handle: Any, metrics: Metrics) -> None:
    memory = nvml.nvmlDeviceGetMemoryInfo(handle)
    metrics.memory_used_bytes = int(memory.used)
    metrics.memory_free_bytes = int(memory.free)


def _temperature(nvml: Any, handle: Any, metrics: Metrics) -> None:
    metrics.temperature_gpu_c = int(
        nvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)
    )


def _sm_clock(nvml: Any, handle: Any, metrics: Metrics) -> None:
    metrics.clock_sm_mhz = int(nvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM))


def _memory_clock(nvml: Any, handle: Any, metrics: Metrics) -> None:
    metrics.clock_memory_mhz = int(nvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_MEM))


def _performance_state(nvml: Any, handle: Any, metrics: Metrics) -> None:
    metrics.performance_state = int(nvml.nvmlDeviceGetPerformanceState(handle))


def _clock_events(nvml: Any, handle: Any, metrics: Metrics) -> None:
    mask = int(nvml.nvmlDeviceGetCurrentClocksEventReasons(handle))
    metrics.clock_event_reasons = mask
    metrics.clock_event_reason_names.extend(decode_clock_event_reasons(mask))


def _processes(nvml: Any, handle: Any, metrics: Metrics) -> None:
    metrics.process_count = len(nvml.nvmlDeviceGetComputeRunningProcesses(handle))


def _encoder(nvml: Any, handle: Any, metrics: Metrics) -> None:
    metrics.encoder_utilization_percent = int(nvml.nvmlDeviceGetEncoderUtilization(handle)[0])


def _decoder(nvml: Any, handle: Any, metrics: Metrics) -> None:
    metrics.decoder_utilization_percent = int(nvml.nvmlDeviceGetDecoderUtilization(handle)[0])


def _power_usage(nvml: Any, handle: Any, metrics: Metrics) -> None:
    metrics.power_w = nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0


_CHEAP_READS: tuple[tuple[tuple[str, ...], _CheapRead], ...] = (
    (("utilization_gpu_percent", "utilization_memory_percent"), _utilization),
    (("memory_used_bytes", "memory_free_bytes"), _memory),
    (("temperature_gpu_c",), _temperature),
    (("clock_sm_mhz",), _sm_clock),
    (("clock_memory_mhz",), _memory_clock),
    (("performance_state",), _performance_state),
    (("clock_event_reasons", "clock_event_reason_names"), _clock_events),
    (("process_count",), _processes),
    (("encoder_utilization_percent",), _encoder),
    (("decoder_utilization_percent",), _decoder),
)
