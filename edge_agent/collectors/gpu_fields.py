"""What the GPU collector reads each sample, how often, and how each reading becomes a metric.

CHEAP_READS: ten calls of 1-2 us each (utilisation, memory, temperature, SM and memory clocks,
P-state, clock-event reasons, processes, encoder and decoder utilisation), every sample;
`read_power_usage` only where the instant power field is missing.

Field ids, read in ONE `nvmlDeviceGetFieldValues` call; costs measured on an H200 (driver 580)
decide the split:
- FAST, every sample, in the one `nvmlDeviceGetFieldValues` call: power instant/average and memory
  temperature (~5 us each) and the PCIe byte counters (~133 us each). The counters replace
  `nvmlDeviceGetPcieThroughput`, which blocks ~21 ms per call: rates are derived from deltas.
- SLOW, every `slow_interval_s`, appended to that same call: ECC totals, row remapping, the PCIe
  replay counter (148 us) and total energy (~2.9 ms).

Also here: decoding the clock-event reason bitmask, and `WrappingCounter`, which turns a counter
that wraps (the PCIe byte counters are 32-bit) into a monotonic total and a rate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import pynvml

from sentinel.v1 import telemetry_pb2

Metrics = telemetry_pb2.GpuMetrics
_CheapRead = Callable[[Any, Any, Metrics], None]


class FieldKind(Enum):
    """How a field's raw number becomes its metric's value."""

    MILLIWATTS = "mW"  # -> watts (float)
    COUNT = "count"  # -> int
    FLAG = "flag"  # -> bool
    PCIE_TX = "pcie_tx"  # -> total and rate, see WrappingCounter
    PCIE_RX = "pcie_rx"


@dataclass(frozen=True)
class FieldSpec:
    """One field id and the GpuMetrics field it fills. `has_fallback`: another call can fill it."""

    field_id: int
    metric: str
    kind: FieldKind
    has_fallback: bool = False


FAST_FIELDS: tuple[FieldSpec, ...] = (
    # Falls back to nvmlDeviceGetPowerUsage on GPUs without the instant power field.
    FieldSpec(pynvml.NVML_FI_DEV_POWER_INSTANT, "power_w", FieldKind.MILLIWATTS, True),
    FieldSpec(pynvml.NVML_FI_DEV_POWER_AVERAGE, "power_average_w", FieldKind.MILLIWATTS),
    FieldSpec(pynvml.NVML_FI_DEV_MEMORY_TEMP, "temperature_memory_c", FieldKind.COUNT),
    FieldSpec(
        pynvml.NVML_FI_DEV_PCIE_COUNT_TX_BYTES, "pcie_transmit_bytes_total", FieldKind.PCIE_TX
    ),
    FieldSpec(
        pynvml.NVML_FI_DEV_PCIE_COUNT_RX_BYTES, "pcie_receive_bytes_total", FieldKind.PCIE_RX
    ),
)

SLOW_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec(pynvml.NVML_FI_DEV_ECC_SBE_VOL_TOTAL, "ecc_corrected_volatile", FieldKind.COUNT),
    FieldSpec(pynvml.NVML_FI_DEV_ECC_DBE_VOL_TOTAL, "ecc_uncorrected_volatile", FieldKind.COUNT),
    FieldSpec(pynvml.NVML_FI_DEV_ECC_SBE_AGG_TOTAL, "ecc_corrected_aggregate", FieldKind.COUNT),
    FieldSpec(pynvml.NVML_FI_DEV_ECC_DBE_AGG_TOTAL, "ecc_uncorrected_aggregate", FieldKind.COUNT),
    FieldSpec(pynvml.NVML_FI_DEV_REMAPPED_COR, "remapped_rows_correctable", FieldKind.COUNT),
    FieldSpec(pynvml.NVML_FI_DEV_REMAPPED_UNC, "remapped_rows_uncorrectable", FieldKind.COUNT),
    FieldSpec(pynvml.NVML_FI_DEV_REMAPPED_PENDING, "row_remap_pending", FieldKind.FLAG),
    FieldSpec(pynvml.NVML_FI_DEV_REMAPPED_FAILURE, "row_remap_failure", FieldKind.FLAG),
    FieldSpec(pynvml.NVML_FI_DEV_PCIE_REPLAY_COUNTER, "pcie_replay_total", FieldKind.COUNT),
    FieldSpec(pynvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION, "energy_consumed_mj", FieldKind.COUNT),
)

FIELD_BY_ID: dict[int, FieldSpec] = {spec.field_id: spec for spec in FAST_FIELDS + SLOW_FIELDS}

# pynvml's nvmlClocksEventReason* bits, in bit order, with the names the agent reports.
CLOCK_EVENT_REASONS: tuple[tuple[int, str], ...] = (
    (pynvml.nvmlClocksEventReasonGpuIdle, "gpu_idle"),
    (pynvml.nvmlClocksEventReasonApplicationsClocksSetting, "applications_clocks_setting"),
    (pynvml.nvmlClocksEventReasonSwPowerCap, "sw_power_cap"),
    (pynvml.nvmlClocksEventReasonHwSlowdown, "hw_slowdown"),
    (pynvml.nvmlClocksEventReasonSyncBoost, "sync_boost"),
    (pynvml.nvmlClocksEventReasonSwThermalSlowdown, "sw_thermal_slowdown"),
    (pynvml.nvmlClocksEventReasonHwThermalSlowdown, "hw_thermal_slowdown"),
    (pynvml.nvmlClocksEventReasonHwPowerBrakeSlowdown, "hw_power_brake_slowdown"),
    (pynvml.nvmlClocksEventReasonDisplayClockSetting, "display_clock_setting"),
)
_KNOWN_REASON_BITS = sum(bit for bit, _ in CLOCK_EVENT_REASONS)


def decode_clock_event_reasons(mask: int) -> list[str]:
    """Names of the bits set in `mask`; a bit pynvml does not name reads `unknown_0x<bit>`."""
    names = [name for bit, name in CLOCK_EVENT_REASONS if mask & bit]
    unknown = mask & ~_KNOWN_REASON_BITS
    names.extend(
        f"unknown_{1 << bit:#x}" for bit in range(unknown.bit_length()) if unknown >> bit & 1
    )
    return names


class WrappingCounter:
    """A hardware counter that wraps at `modulus`, extended to a monotonic total with a rate.

    The total starts at the first raw reading and then grows by each delta taken modulo the
    counter's width, so one wrap between two readings is absorbed. A counter that wraps more than
    once between readings (a 32-bit PCIe counter above ~4 GiB/s at 1 Hz) under-reports; nothing
    that reads only the counter can tell.
    """

    def __init__(self) -> None:
        self.total: int | None = None
        self._last_raw: int | None = None
        self._last_s = 0.0

    def update(self, raw: int, modulus: int, now_s: float) -> float | None:
        """Take a reading at `now_s`; returns units per second since the previous one, if any."""
        rate: float | None = None
        if self._last_raw is None or self.total is None:
            self.total = raw
        else:
            delta = (raw - self._last_raw) % modulus
            self.total += delta
            elapsed_s = now_s - self._last_s
            rate = delta / elapsed_s if elapsed_s > 0 else None
        self._last_raw, self._last_s = raw, now_s
        return rate


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


def read_power_usage(nvml: Any, handle: Any, metrics: Metrics) -> None:
    metrics.power_w = nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0


CHEAP_READS: tuple[tuple[tuple[str, ...], _CheapRead], ...] = (
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
