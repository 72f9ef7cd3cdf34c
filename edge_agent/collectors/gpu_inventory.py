"""Static facts about the GPUs and the NVML stack, read once when the collector starts.

Some of these calls are not cheap (the max-clock queries cost ~1.3 ms each on an H200), which is
why they are read once and never in the sampling path. A fact the GPU does not support stays at
its proto default; any other failure is logged once (see `NvmlGuard`) and start carries on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pynvml

from edge_agent.collectors.nvml_guard import NvmlGuard
from edge_agent.nvml.values import as_text
from sentinel.v1 import telemetry_pb2

Inventory = telemetry_pb2.GpuInventory
_StaticRead = Callable[[Any, Any, Inventory], None]


@dataclass(frozen=True)
class GpuSystemInfo:
    """The NVML stack behind the GPUs: backend ("nvml", "replay:<source>") and versions."""

    backend: str
    driver_version: str
    nvml_version: str
    cuda_driver_version: int

    def fill(self, host: telemetry_pb2.HostInventory) -> None:
        """Copy these facts into the host inventory's gpu_* fields."""
        host.gpu_backend = self.backend
        host.gpu_driver_version = self.driver_version
        host.nvml_version = self.nvml_version
        host.cuda_driver_version = self.cuda_driver_version


def read_system_info(nvml: Any, guard: NvmlGuard) -> GpuSystemInfo:
    """Driver, NVML and CUDA driver versions; empty or 0 where NVML cannot say."""
    driver = guard.call(("driver_version",), nvml.nvmlSystemGetDriverVersion)
    nvml_version = guard.call(("nvml_version",), nvml.nvmlSystemGetNVMLVersion)
    cuda = guard.call(("cuda_driver_version",), nvml.nvmlSystemGetCudaDriverVersion)
    return GpuSystemInfo(
        backend=str(getattr(nvml, "backend_name", "nvml")),
        driver_version=as_text(driver) if driver is not None else "",
        nvml_version=as_text(nvml_version) if nvml_version is not None else "",
        cuda_driver_version=int(cuda or 0),
    )


def read_inventory(nvml: Any, handle: Any, index: int, guard: NvmlGuard) -> Inventory:
    """Every static fact of the GPU behind `handle`."""
    inventory = Inventory(index=index)
    for name, read in _STATIC_READS:
        guard.call((f"inventory.{name}",), read, nvml, handle, inventory)
    return inventory


def _identity(nvml: Any, handle: Any, inv: Inventory) -> None:
    inv.uuid = as_text(nvml.nvmlDeviceGetUUID(handle))


def _name(nvml: Any, handle: Any, inv: Inventory) -> None:
    inv.name = as_text(nvml.nvmlDeviceGetName(handle))


def _serial(nvml: Any, handle: Any, inv: Inventory) -> None:
    inv.serial = as_text(nvml.nvmlDeviceGetSerial(handle))


def _pci(nvml: Any, handle: Any, inv: Inventory) -> None:
    inv.pci_bus_id = as_text(nvml.nvmlDeviceGetPciInfo(handle).busId)


def _memory(nvml: Any, handle: Any, inv: Inventory) -> None:
    inv.memory_total_bytes = int(nvml.nvmlDeviceGetMemoryInfo(handle).total)


def _power_limit(nvml: Any, handle: Any, inv: Inventory) -> None:
    inv.power_limit_w = nvml.nvmlDeviceGetPowerManagementLimit(handle) / 1000.0


def _power_constraints(nvml: Any, handle: Any, inv: Inventory) -> None:
    low_mw, high_mw = nvml.nvmlDeviceGetPowerManagementLimitConstraints(handle)
    inv.power_limit_min_w, inv.power_limit_max_w = low_mw / 1000.0, high_mw / 1000.0


def _power_default(nvml: Any, handle: Any, inv: Inventory) -> None:
    inv.power_limit_default_w = nvml.nvmlDeviceGetPowerManagementDefaultLimit(handle) / 1000.0


def _max_sm_clock(nvml: Any, handle: Any, inv: Inventory) -> None:
    inv.clock_sm_max_mhz = int(nvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM))


def _max_memory_clock(nvml: Any, handle: Any, inv: Inventory) -> None:
    inv.clock_memory_max_mhz = int(nvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_MEM))


def _compute_capability(nvml: Any, handle: Any, inv: Inventory) -> None:
    major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
    inv.compute_capability = f"{major}.{minor}"


def _vbios(nvml: Any, handle: Any, inv: Inventory) -> None:
    inv.vbios_version = as_text(nvml.nvmlDeviceGetVbiosVersion(handle))


def _mig(nvml: Any, handle: Any, inv: Inventory) -> None:
    current, _pending = nvml.nvmlDeviceGetMigMode(handle)
    inv.mig_enabled = current == pynvml.NVML_DEVICE_MIG_ENABLE


def _ecc(nvml: Any, handle: Any, inv: Inventory) -> None:
    current, _pending = nvml.nvmlDeviceGetEccMode(handle)
    inv.ecc_enabled = current == pynvml.NVML_FEATURE_ENABLED


def _pcie_generation(nvml: Any, handle: Any, inv: Inventory) -> None:
    inv.pcie_generation_max = int(nvml.nvmlDeviceGetMaxPcieLinkGeneration(handle))


def _pcie_width(nvml: Any, handle: Any, inv: Inventory) -> None:
    inv.pcie_width = int(nvml.nvmlDeviceGetMaxPcieLinkWidth(handle))


_STATIC_READS: tuple[tuple[str, _StaticRead], ...] = (
    ("uuid", _identity),
    ("name", _name),
    ("serial", _serial),
    ("pci_bus_id", _pci),
    ("memory_total_bytes", _memory),
    ("power_limit_w", _power_limit),
    ("power_limit_range_w", _power_constraints),
    ("power_limit_default_w", _power_default),
    ("clock_sm_max_mhz", _max_sm_clock),
    ("clock_memory_max_mhz", _max_memory_clock),
    ("compute_capability", _compute_capability),
    ("vbios_version", _vbios),
    ("mig_enabled", _mig),
    ("ecc_enabled", _ecc),
    ("pcie_generation_max", _pcie_generation),
    ("pcie_width", _pcie_width),
)
