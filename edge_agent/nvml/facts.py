"""The static half of the NVML replay: lifecycle, handles, identities and captured facts.

`CapturedFacts` answers every pynvml call whose value does not move during a capture (names,
limits, modes, max clocks, slow counters), from the capture's `queries`; `ReplayNvml` adds the
hot values that follow the trace. Invariants, as with the library: device calls before
`nvmlInit` raise `NVMLError_Uninitialized`; a handle that is not one of ours raises
`NVMLError_InvalidArgument`; a query the capture records as failed raises that error
(`NVMLError_NotSupported` for fan speed, retired pages and NVLink on the H200), and a query the
capture lacks answers "Not Supported". The one setter, `nvmlDeviceSetPowerManagementLimit`, keeps
the new limit per GPU (the management and enforced limits then answer it) and, as NVML does,
refuses a limit outside the captured constraints with `NVMLError_InvalidArgument`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pynvml

from edge_agent.nvml.capture import Capture, recorded_answer
from edge_agent.nvml.clones import GpuIdentity, clone_identity

_MAX_CLOCK_QUERY = {
    pynvml.NVML_CLOCK_GRAPHICS: "clock_sm_max",
    pynvml.NVML_CLOCK_SM: "clock_sm_max",
    pynvml.NVML_CLOCK_MEM: "clock_mem_max",
}
_THRESHOLD_QUERY = {
    pynvml.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN: "temp_shutdown",
    pynvml.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN: "temp_slowdown",
}


@dataclass(frozen=True)
class ReplayHandle:
    """What `nvmlDeviceGetHandleByIndex` returns here: the clone's index."""

    index: int


class CapturedFacts:
    """pynvml's static calls answered from `capture`, for `gpus` clones of the captured GPU."""

    def __init__(self, capture: Capture, *, gpus: int = 1) -> None:
        if gpus < 1:
            raise ValueError(f"gpus must be at least 1, got {gpus}")
        self._capture = capture
        self._queries = capture.queries
        self._identities = [clone_identity(capture.queries, index) for index in range(gpus)]
        self._init_count = 0
        self._power_limits_mw: dict[int, int] = {}  # set through the API, by GPU index

    # -- lifecycle and system ------------------------------------------------------------------

    def nvmlInit(self) -> None:
        self._init_count += 1

    def nvmlInitWithFlags(self, flags: int) -> None:
        self._init_count += 1

    def nvmlShutdown(self) -> None:
        self._require_init()
        self._init_count -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        return str(self._system("driver"))

    def nvmlSystemGetNVMLVersion(self) -> str:
        return str(self._system("nvml"))

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return int(self._system("cuda_driver"))

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        return int(self._system("cuda_driver"))

    def nvmlDeviceGetCount(self) -> int:
        self._require_init()
        return len(self._identities)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> ReplayHandle:
        self._require_init()
        if not 0 <= index < len(self._identities):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return ReplayHandle(index)

    # -- identity and static facts ------------------------------------------------------------

    def nvmlDeviceGetName(self, handle: ReplayHandle) -> str:
        return str(self._static(handle, "name"))

    def nvmlDeviceGetUUID(self, handle: ReplayHandle) -> str:
        return self._device(handle).uuid

    def nvmlDeviceGetSerial(self, handle: ReplayHandle) -> str:
        return self._device(handle).serial

    def nvmlDeviceGetPciInfo(self, handle: ReplayHandle) -> Any:
        return self._device(handle).pci_info()

    def nvmlDeviceGetIndex(self, handle: ReplayHandle) -> int:
        return self._device(handle).index

    def nvmlDeviceGetMinorNumber(self, handle: ReplayHandle) -> int:
        return int(self._static(handle, "minor")) + handle.index

    def nvmlDeviceGetArchitecture(self, handle: ReplayHandle) -> int:
        return int(self._static(handle, "arch"))

    def nvmlDeviceGetCudaComputeCapability(self, handle: ReplayHandle) -> tuple[int, int]:
        major, minor = self._static(handle, "cc")
        return int(major), int(minor)

    def nvmlDeviceGetVbiosVersion(self, handle: ReplayHandle) -> str:
        return str(self._static(handle, "vbios"))

    def nvmlDeviceGetBoardPartNumber(self, handle: ReplayHandle) -> str:
        return str(self._static(handle, "board_part"))

    def nvmlDeviceGetMemoryBusWidth(self, handle: ReplayHandle) -> int:
        return int(self._static(handle, "bus_width"))

    def nvmlDeviceGetBAR1MemoryInfo(self, handle: ReplayHandle) -> Any:
        return pynvml.c_nvmlBAR1Memory_t(**self._static(handle, "bar1"))

    def nvmlDeviceGetPowerManagementLimit(self, handle: ReplayHandle) -> int:
        captured = int(self._static(handle, "power_limit_mw"))
        return self._power_limits_mw.get(handle.index, captured)

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: ReplayHandle) -> int:
        return self.nvmlDeviceGetPowerManagementLimit(handle)

    def nvmlDeviceSetPowerManagementLimit(self, handle: ReplayHandle, limit: int) -> None:
        low_mw, high_mw = self.nvmlDeviceGetPowerManagementLimitConstraints(handle)
        if not low_mw <= limit <= high_mw:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        self._power_limits_mw[handle.index] = int(limit)

    def nvmlDeviceGetPowerManagementDefaultLimit(self, handle: ReplayHandle) -> int:
        return int(self._static(handle, "power_default_mw"))

    def nvmlDeviceGetPowerManagementLimitConstraints(self, handle: ReplayHandle) -> list[int]:
        return [int(value) for value in self._static(handle, "power_constraints_mw")]

    def nvmlDeviceGetMaxClockInfo(self, handle: ReplayHandle, type: int) -> int:
        return int(self._static(handle, _MAX_CLOCK_QUERY.get(type, f"max_clock_{type}")))

    def nvmlDeviceGetTemperatureThreshold(self, handle: ReplayHandle, threshold: int) -> int:
        return int(self._static(handle, _THRESHOLD_QUERY.get(threshold, f"threshold_{threshold}")))

    def nvmlDeviceGetEccMode(self, handle: ReplayHandle) -> list[int]:
        return [int(value) for value in self._static(handle, "ecc_mode")]

    def nvmlDeviceGetMigMode(self, handle: ReplayHandle) -> list[int]:
        return [int(value) for value in self._static(handle, "mig_mode")]

    def nvmlDeviceGetComputeMode(self, handle: ReplayHandle) -> int:
        return int(self._static(handle, "compute_mode"))

    def nvmlDeviceGetPersistenceMode(self, handle: ReplayHandle) -> int:
        return int(self._static(handle, "persistence"))

    def nvmlDeviceGetCurrPcieLinkGeneration(self, handle: ReplayHandle) -> int:
        return int(self._static(handle, "pcie_gen"))

    def nvmlDeviceGetMaxPcieLinkGeneration(self, handle: ReplayHandle) -> int:
        return int(self._static(handle, "pcie_gen_max"))

    def nvmlDeviceGetCurrPcieLinkWidth(self, handle: ReplayHandle) -> int:
        return int(self._static(handle, "pcie_width"))

    def nvmlDeviceGetMaxPcieLinkWidth(self, handle: ReplayHandle) -> int:
        return int(self._static(handle, "pcie_width"))

    # -- slow counters and what this GPU does not support -------------------------------------

    def nvmlDeviceGetRemappedRows(self, handle: ReplayHandle) -> tuple[int, int, int, int]:
        corr, unc, pending, failure = self._static(handle, "remapped_rows")
        return int(corr), int(unc), int(pending), int(failure)

    def nvmlDeviceGetPcieReplayCounter(self, handle: ReplayHandle) -> int:
        return int(self._static(handle, "pcie_replay"))

    def nvmlDeviceGetFanSpeed(self, handle: ReplayHandle) -> int:
        return int(self._static(handle, "fan"))

    def nvmlDeviceGetRetiredPages(self, handle: ReplayHandle, sourceFilter: int) -> list[int]:
        return list(self._static(handle, "retired_pages_dbe"))

    def nvmlDeviceGetNvLinkState(self, handle: ReplayHandle, link: int) -> int:
        self._device(handle)
        states = self._capture.nvlink_states
        if not 0 <= link < len(states):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return int(recorded_answer(states[link]))

    # -- helpers ------------------------------------------------------------------------------

    def _require_init(self) -> None:
        if self._init_count <= 0:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)

    def _system(self, key: str) -> Any:
        self._require_init()
        return self._capture.system[key]

    def _device(self, handle: ReplayHandle) -> GpuIdentity:
        self._require_init()
        if not isinstance(handle, ReplayHandle) or not 0 <= handle.index < len(self._identities):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self._identities[handle.index]

    def _static(self, handle: ReplayHandle, key: str) -> Any:
        self._device(handle)
        if key not in self._queries:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return recorded_answer(self._queries[key])
