"""The host collector: operating-system facts and metrics from psutil.

Invariants:
- Cheap and non-blocking: no sampling intervals, only reads of /proc and statvfs (tens to
  hundreds of microseconds). Still synchronous file I/O: the agent runs it in a worker thread
  next to the GPU sample.
- `cpu_percent` is the busy share of all cores since the previous `sample()` (or construction),
  computed from `psutil.cpu_times()` deltas with psutil's own formula. `psutil.cpu_percent()` is
  not used because it keeps its baseline per calling thread, and the agent samples from a pool.
- Disks are real file systems only (psutil's physical partitions, minus loop devices and the
  read-only image types below), one entry per device; a mount that cannot be read is skipped.
- Network totals leave out the loopback interface; disk and network totals are counters since
  boot, and rates are for consumers to derive.
"""

from __future__ import annotations

import platform
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
from google.protobuf import duration_pb2, timestamp_pb2

import sentinel
from sentinel.v1 import telemetry_pb2

# File systems that psutil counts as physical but hold no data an operator would size or alert
# on: snap/container images, optical media, overlay roots of containers.
_SKIPPED_FSTYPES = frozenset({"squashfs", "iso9660", "udf", "overlay", "erofs"})
_LOOPBACK = "lo"


class HostCollector:
    """Reads the host once (`inventory`), then at the agent's rate (`sample`). Not thread-safe."""

    def __init__(self, *, cpuinfo_path: str = "/proc/cpuinfo") -> None:
        self._cpuinfo_path = Path(cpuinfo_path)
        self._boot_time_s = psutil.boot_time()
        self._cpu_count = psutil.cpu_count(logical=True) or 0
        self._last_cpu_times: Any = psutil.cpu_times()

    def inventory(self) -> telemetry_pb2.HostInventory:
        """Static facts; the gpu_* fields are the GPU collector's to fill."""
        boot_time = timestamp_pb2.Timestamp()
        boot_time.FromNanoseconds(int(self._boot_time_s * 1e9))
        return telemetry_pb2.HostInventory(
            hostname=socket.gethostname(),
            os=_os_name(),
            kernel=platform.release(),
            architecture=platform.machine(),
            cpu_model=_cpu_model(self._cpuinfo_path),
            cpu_count=self._cpu_count,
            memory_total_bytes=psutil.virtual_memory().total,
            boot_time=boot_time,
            agent_version=sentinel.__version__,
        )

    def sample(self) -> telemetry_pb2.HostMetrics:
        """Current host metrics; cpu_percent covers the time since the previous call."""
        memory = psutil.virtual_memory()
        load1, load5, load15 = psutil.getloadavg()
        metrics = telemetry_pb2.HostMetrics(
            cpu_percent=self._cpu_percent(),
            cpu_count=self._cpu_count,
            load1=load1,
            load5=load5,
            load15=load15,
            memory_total_bytes=memory.total,
            memory_used_bytes=memory.used,
            memory_available_bytes=memory.available,
            swap_used_bytes=psutil.swap_memory().used,
            disks=list(_disks()),
            uptime=_uptime(self._boot_time_s),
        )
        _add_io_totals(metrics)
        return metrics

    def _cpu_percent(self) -> float:
        now = psutil.cpu_times()
        previous, self._last_cpu_times = self._last_cpu_times, now
        deltas = {
            name: max(getattr(now, name) - getattr(previous, name), 0.0) for name in now._fields
        }
        # guest time is already counted in user time on Linux.
        total = sum(deltas.values()) - deltas.get("guest", 0.0) - deltas.get("guest_nice", 0.0)
        idle = deltas.get("idle", 0.0) + deltas.get("iowait", 0.0)
        if total <= 0:
            return 0.0
        busy_percent = float((total - idle) / total * 100.0)
        return min(max(busy_percent, 0.0), 100.0)


def _disks() -> Iterator[telemetry_pb2.DiskUsage]:
    seen: set[str] = set()
    for partition in psutil.disk_partitions(all=False):
        device = partition.device
        if device in seen or _is_skipped(device, partition.fstype):
            continue
        try:
            usage = psutil.disk_usage(partition.mountpoint)
        except OSError:
            continue
        seen.add(device)
        yield telemetry_pb2.DiskUsage(
            mountpoint=partition.mountpoint,
            device=device,
            total_bytes=usage.total,
            used_bytes=usage.used,
        )


def _is_skipped(device: str, fstype: str) -> bool:
    return fstype in _SKIPPED_FSTYPES or device.startswith("/dev/loop")


def _add_io_totals(metrics: telemetry_pb2.HostMetrics) -> None:
    disk = psutil.disk_io_counters(perdisk=False)
    if disk is not None:
        metrics.disk_read_bytes_total = disk.read_bytes
        metrics.disk_write_bytes_total = disk.write_bytes
    for name, nic in psutil.net_io_counters(pernic=True).items():
        if name != _LOOPBACK:
            metrics.network_receive_bytes_total += nic.bytes_recv
            metrics.network_transmit_bytes_total += nic.bytes_sent


def _uptime(boot_time_s: float) -> duration_pb2.Duration:
    uptime = duration_pb2.Duration()
    uptime.FromNanoseconds(int(max(time.time() - boot_time_s, 0.0) * 1e9))
    return uptime


def _os_name() -> str:
    """The distribution's pretty name ("Ubuntu 22.04.4 LTS"), else the kernel's OS name."""
    try:
        release = platform.freedesktop_os_release()
    except OSError:
        return platform.system()
    return release.get("PRETTY_NAME") or release.get("NAME") or platform.system()


def _cpu_model(cpuinfo_path: Path) -> str:
    """The first CPU model in /proc/cpuinfo (x86 "model name", Arm "Model"), else platform's."""
    try:
        text = cpuinfo_path.read_text(errors="replace")
    except OSError:
        return platform.processor()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "cpu model") and value.strip():
            return value.strip()
    return platform.processor()
