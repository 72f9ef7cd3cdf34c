"""A stand-in for the `pynvml` module that answers from a capture of a real GPU.

`ReplayNvml` exposes the pynvml functions the collector uses, with the same names, arguments and
return shapes (the real ctypes structs where pynvml returns one), and raises pynvml's own
exceptions: `pynvml.NVMLError(code)`, so `except pynvml.NVMLError_NotSupported` dispatches exactly
as with the library. Constants (`NVML_CLOCK_SM`, `NVML_FI_DEV_*`, ...) are pynvml's, reachable as
attributes here too.

Invariants:
- Static facts and slow counters come from the capture's `queries` and `fields`; the hot values
  come from the current `trace_5hz` point. A capture entry that records an NVML error makes the
  matching call raise it (also for trace-driven values); a query the capture lacks answers
  "Not Supported".
- `advance()` is the only thing the collector calls that pynvml lacks: it calls it once per
  sample and it moves one trace point (see `edge_agent.nvml.trace`). `inject_xid()` is the
  other addition, for tests and demos; nothing else differs between the library and the replay.
- `gpus=N` presents the captured GPU N times with distinct identities (`edge_agent.nvml.clones`).
- XID events: `xid_events` (see `edge_agent.nvml.xid_file`) and `inject_xid()` are delivered
  through pynvml's own event-set calls (`edge_agent.nvml.events`), so the XID watcher runs the
  same code here as on a real GPU.
- Static calls live in `edge_agent.nvml.facts`, field values in `edge_agent.nvml.fields`.

Threading: like the collector, one thread samples; the event-set calls alone are thread-safe, so
the XID watcher's thread may wait in `nvmlEventSetWait` meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pynvml

from edge_agent.nvml.capture import Capture
from edge_agent.nvml.events import ReplayEventData, ReplayEvents, ReplayEventSet
from edge_agent.nvml.facts import CapturedFacts, ReplayHandle
from edge_agent.nvml.fields import FieldAnswers
from edge_agent.nvml.trace import RX, TX, TraceCursor
from edge_agent.nvml.xid_file import ScheduledXid

_OK = pynvml.NVML_SUCCESS
_CLOCK_QUERY = {
    pynvml.NVML_CLOCK_GRAPHICS: "clock_sm",  # one clock domain for graphics and SM on Hopper
    pynvml.NVML_CLOCK_SM: "clock_sm",
    pynvml.NVML_CLOCK_MEM: "clock_mem",
}
# nvmlDeviceGetTotalEccErrors(errorType, counterType) answers what these fields hold.
_ECC_FIELD = {
    (
        pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED,
        pynvml.NVML_VOLATILE_ECC,
    ): pynvml.NVML_FI_DEV_ECC_SBE_VOL_TOTAL,
    (
        pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
        pynvml.NVML_VOLATILE_ECC,
    ): pynvml.NVML_FI_DEV_ECC_DBE_VOL_TOTAL,
    (
        pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED,
        pynvml.NVML_AGGREGATE_ECC,
    ): pynvml.NVML_FI_DEV_ECC_SBE_AGG_TOTAL,
    (
        pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
        pynvml.NVML_AGGREGATE_ECC,
    ): pynvml.NVML_FI_DEV_ECC_DBE_AGG_TOTAL,
}
_PCIE_COUNTER_WAY = {pynvml.NVML_PCIE_UTIL_TX_BYTES: TX, pynvml.NVML_PCIE_UTIL_RX_BYTES: RX}
_NO_INSTANCE = 0xFFFFFFFF
_PYNVML_PREFIXES = (
    "NVML_",
    "NVMLError",
    "nvmlClocksEventReason",
    "nvmlClocksThrottle",
    "nvmlEventType",
)


class ReplayNvml(CapturedFacts):
    """pynvml look-alike replaying `capture` on `gpus` identical GPUs.

    `xid_events` are delivered at their `at_s` on `clock`, counted from construction.
    """

    def __init__(
        self,
        capture: Capture,
        *,
        gpus: int = 1,
        clock: Callable[[], float] = time.monotonic,
        xid_events: Sequence[ScheduledXid] = (),
    ) -> None:
        super().__init__(capture, gpus=gpus)
        self._cursor = TraceCursor(capture, clock)
        self._fields = FieldAnswers(capture, self._cursor, clock)
        self._events = ReplayEvents(
            xid_events,
            clock=clock,
            device_index=lambda handle: self._device(handle).index,
            handle_of=self.nvmlDeviceGetHandleByIndex,
            queries=capture.queries,
        )
        self.backend_name = f"replay:{capture.source}"

    def __getattr__(self, name: str) -> Any:
        """pynvml's constants and exception classes, so code written against pynvml works."""
        if name.startswith(_PYNVML_PREFIXES):
            return getattr(pynvml, name)
        raise AttributeError(name)

    # -- the replay's additions ----------------------------------------------------------------

    def advance(self) -> None:
        """Move to the next trace point; the collector calls this once per sample."""
        self._cursor.advance()

    def inject_xid(self, gpu: int, xid: int, *, at_s: float | None = None) -> None:
        """Raise XID `xid` on GPU `gpu` now (or at `at_s` since start), as a driver would."""
        self._events.inject(gpu, xid, at_s)

    # -- events (thread-safe) -------------------------------------------------------------------

    def nvmlDeviceGetSupportedEventTypes(self, handle: ReplayHandle) -> int:
        return self._events.supported_types(handle)

    def nvmlEventSetCreate(self) -> ReplayEventSet:
        self._require_init()
        return self._events.create()

    def nvmlDeviceRegisterEvents(
        self, handle: ReplayHandle, eventTypes: int, eventSet: ReplayEventSet
    ) -> None:
        self._events.register(handle, eventTypes, eventSet)

    def nvmlEventSetWait_v2(self, eventSet: ReplayEventSet, timeoutms: int) -> ReplayEventData:
        self._require_init()
        return self._events.wait(eventSet, timeoutms)

    def nvmlEventSetWait(self, eventSet: ReplayEventSet, timeoutms: int) -> ReplayEventData:
        return self.nvmlEventSetWait_v2(eventSet, timeoutms)

    def nvmlEventSetFree(self, eventSet: ReplayEventSet) -> None:
        self._require_init()
        self._events.free(eventSet)

    # -- values that follow the trace ----------------------------------------------------------

    def nvmlDeviceGetTotalEccErrors(
        self, handle: ReplayHandle, errorType: int, counterType: int
    ) -> int:
        field_id = _ECC_FIELD.get((errorType, counterType))
        if field_id is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return int(self._field_or_raise(handle, field_id))

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: ReplayHandle) -> int:
        self._static(handle, "energy_mj")  # raises what the capture recorded, if anything
        return self._cursor.energy_mj()

    def nvmlDeviceGetMemoryInfo(self, handle: ReplayHandle, version: int | None = None) -> Any:
        memory = self._live(handle, "memory")
        return pynvml.c_nvmlMemory_t(
            total=int(memory["total"]), free=int(memory["free"]), used=int(memory["used"])
        )

    def nvmlDeviceGetUtilizationRates(self, handle: ReplayHandle) -> Any:
        util = self._live(handle, "util")
        return pynvml.c_nvmlUtilization_t(gpu=int(util["gpu"]), memory=int(util["memory"]))

    def nvmlDeviceGetEncoderUtilization(self, handle: ReplayHandle) -> list[int]:
        return [int(value) for value in self._static(handle, "enc_util")]

    def nvmlDeviceGetDecoderUtilization(self, handle: ReplayHandle) -> list[int]:
        return [int(value) for value in self._static(handle, "dec_util")]

    def nvmlDeviceGetTemperature(self, handle: ReplayHandle, sensor: int) -> int:
        if sensor != pynvml.NVML_TEMPERATURE_GPU:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return int(self._live(handle, "temp_gpu"))

    def nvmlDeviceGetPowerUsage(self, handle: ReplayHandle) -> int:
        return int(self._live(handle, "power_mw"))

    def nvmlDeviceGetClockInfo(self, handle: ReplayHandle, type: int) -> int:
        return int(self._live(handle, _CLOCK_QUERY.get(type, f"clock_{type}")))

    def nvmlDeviceGetPerformanceState(self, handle: ReplayHandle) -> int:
        return int(self._live(handle, "pstate"))

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: ReplayHandle) -> int:
        return int(self._live(handle, "clock_reasons"))

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: ReplayHandle) -> int:
        return self.nvmlDeviceGetCurrentClocksEventReasons(handle)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: ReplayHandle) -> list[Any]:
        count = int(self._live(handle, "procs"))
        used = int(self._cursor.point["memory"]["used"])
        return [_process(4242 + number, used // count) for number in range(count)]

    def nvmlDeviceGetPcieThroughput(self, handle: ReplayHandle, counter: int) -> int:
        """Answers, but a collector must never call it: on real hardware it blocks ~21 ms."""
        way = _PCIE_COUNTER_WAY.get(counter)
        if way is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return int(self._live(handle, "pcie_tx_kbps" if way == TX else "pcie_rx_kbps"))

    def nvmlDeviceGetFieldValues(self, handle: ReplayHandle, fieldIds: Iterable[Any]) -> Any:
        """One `c_nvmlFieldValue_t` per id, each with its own `nvmlReturn`, as NVML answers."""
        self._device(handle)
        return self._fields.values(fieldIds)

    # -- helpers ------------------------------------------------------------------------------

    def _live(self, handle: ReplayHandle, key: str) -> Any:
        if key in self._queries:
            self._static(handle, key)  # a recorded error wins over the trace
        else:
            self._device(handle)
        if key not in self._cursor.point:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return self._cursor.point[key]

    def _field_or_raise(self, handle: ReplayHandle, field_id: int) -> int | float:
        self._device(handle)
        code, _, number = self._fields.answer(field_id)
        if code != _OK:
            raise pynvml.NVMLError(code)
        return number


__all__ = ["ReplayHandle", "ReplayNvml"]


def _process(pid: int, used_bytes: int) -> Any:
    return pynvml.nvmlFriendlyObject(
        {
            "pid": pid,
            "usedGpuMemory": used_bytes,
            "gpuInstanceId": _NO_INSTANCE,
            "computeInstanceId": _NO_INSTANCE,
        }
    )
