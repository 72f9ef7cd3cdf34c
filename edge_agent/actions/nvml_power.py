"""`PowerControl` over a pynvml-shaped module: the real `pynvml` or the replay backend.

NVML speaks milliwatts; this speaks watts (floats), so executors and messages never
convert. Any NVML error becomes `ExecutionFailed` naming the call and the GPU: NVML
refuses a limit outside the constraints (INVALID_ARGUMENT) and a caller without
root (NO_PERMISSION), and both are worth an operator's reading, not a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pynvml

from sentinel.refusals import ExecutionFailed

T = TypeVar("T")


class NvmlPowerControl:
    """Power limits of the GPUs that `nvml` (an initialised pynvml-like module) sees."""

    def __init__(self, nvml: Any) -> None:
        self._nvml = nvml

    def gpu_count(self) -> int:
        return int(self._call("count GPUs", self._nvml.nvmlDeviceGetCount))

    def power_limit_constraints_w(self, gpu: int) -> tuple[float, float]:
        handle = self._handle(gpu)
        low_mw, high_mw = self._call(
            f"read GPU {gpu}'s power limit constraints",
            lambda: self._nvml.nvmlDeviceGetPowerManagementLimitConstraints(handle),
        )
        return low_mw / 1000.0, high_mw / 1000.0

    def power_limit_w(self, gpu: int) -> float:
        handle = self._handle(gpu)
        limit_mw = self._call(
            f"read GPU {gpu}'s power limit",
            lambda: self._nvml.nvmlDeviceGetPowerManagementLimit(handle),
        )
        return float(limit_mw) / 1000.0

    def set_power_limit_w(self, gpu: int, watts: float) -> None:
        handle = self._handle(gpu)
        limit_mw = round(watts * 1000)
        self._call(
            f"set GPU {gpu}'s power limit to {watts:g} W",
            lambda: self._nvml.nvmlDeviceSetPowerManagementLimit(handle, limit_mw),
        )

    def _handle(self, gpu: int) -> Any:
        return self._call(f"open GPU {gpu}", lambda: self._nvml.nvmlDeviceGetHandleByIndex(gpu))

    @staticmethod
    def _call(what: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except pynvml.NVMLError as exc:
            raise ExecutionFailed(f"NVML could not {what}: {exc}") from exc
