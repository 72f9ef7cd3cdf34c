"""The host collector on this machine's real /proc, through psutil."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import sentinel
from edge_agent.collectors import HostCollector


def test_inventory_names_the_host() -> None:
    inventory = HostCollector().inventory()
    assert inventory.hostname
    assert inventory.os
    assert inventory.kernel
    assert inventory.architecture
    assert inventory.cpu_model
    assert inventory.cpu_count > 0
    assert inventory.memory_total_bytes > 0
    assert 0 < inventory.boot_time.seconds <= time.time()
    assert inventory.agent_version == sentinel.__version__
    assert inventory.gpu_backend == ""  # the GPU side fills the gpu_* fields


def test_sample_reports_memory_load_and_uptime() -> None:
    sample = HostCollector().sample()
    assert sample.cpu_count > 0
    assert sample.memory_total_bytes > 0
    assert 0 < sample.memory_used_bytes <= sample.memory_total_bytes
    assert 0 < sample.memory_available_bytes <= sample.memory_total_bytes
    assert sample.load1 >= 0 and sample.load15 >= 0
    assert sample.uptime.ToNanoseconds() > 0
    assert sample.disk_read_bytes_total >= 0


def test_second_sample_cpu_percent_is_a_percentage() -> None:
    collector = HostCollector()
    collector.sample()
    sum(range(200_000))  # a little work between the two samples
    assert 0.0 <= collector.sample().cpu_percent <= 100.0


def test_cpu_percent_does_not_depend_on_the_calling_thread() -> None:
    collector = HostCollector()
    with ThreadPoolExecutor(max_workers=4) as pool:
        values = [pool.submit(collector.sample).result().cpu_percent for _ in range(8)]
    assert all(0.0 <= value <= 100.0 for value in values)


def test_disks_are_real_file_systems_one_per_device() -> None:
    disks = HostCollector().sample().disks
    devices = [disk.device for disk in disks]
    assert len(devices) == len(set(devices))
    for disk in disks:
        assert disk.mountpoint.startswith("/")
        assert not disk.device.startswith("/dev/loop")
        assert 0 <= disk.used_bytes <= disk.total_bytes


@pytest.mark.parametrize(
    ("cpuinfo", "model"),
    [
        ("processor\t: 0\nmodel name\t: AMD EPYC 9654 96-Core Processor\n", "AMD EPYC 9654"),
        ("processor\t: 0\nBogoMIPS\t: 2000.00\n\nModel\t: NVIDIA Grace\n", "NVIDIA Grace"),
    ],
)
def test_cpu_model_comes_from_cpuinfo(tmp_path: Path, cpuinfo: str, model: str) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo)
    assert HostCollector(cpuinfo_path=str(path)).inventory().cpu_model.startswith(model)
