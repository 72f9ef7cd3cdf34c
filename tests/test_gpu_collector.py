"""The GPU collector on the replay backend: values, cadence, costs avoided, and NVML errors."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pynvml
import pytest

from edge_agent.collectors import GpuCollector, decode_clock_event_reasons
from edge_agent.collectors.gpu_fields import WrappingCounter
from edge_agent.nvml import ReplayNvml, load_capture, open_gpu_backend
from edge_agent.nvml.trace import KIB_BYTES
from sentinel.v1 import telemetry_pb2

CAPTURE = Path(__file__).resolve().parents[1] / "edge_agent" / "data" / "h200-driver580.json"
RAW = json.loads(CAPTURE.read_text())
TRACE = RAW["trace_5hz"]
ENERGY_FIELD = pynvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION
SLOW_METRICS = (
    "energy_consumed_mj",
    "ecc_corrected_volatile",
    "ecc_uncorrected_volatile",
    "ecc_corrected_aggregate",
    "ecc_uncorrected_aggregate",
    "remapped_rows_correctable",
    "remapped_rows_uncorrectable",
    "row_remap_pending",
    "row_remap_failure",
    "pcie_replay_total",
)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now_s = 500.0

    def __call__(self) -> float:
        return self.now_s


class CallRecorder:
    """Wraps an nvml-like object and records every call made through it: (name, args)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if not callable(target) or isinstance(target, type):
            return target

        def record(*args: Any) -> Any:
            self.calls.append((name, args))
            return target(*args)

        return record

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def field_requests(self) -> list[list[int]]:
        return [list(args[1]) for name, args in self.calls if name == "nvmlDeviceGetFieldValues"]


def replay(
    source: str = "builtin:h200", gpus: int = 1, clock: Callable[[], float] | None = None
) -> ReplayNvml:
    backend = ReplayNvml(load_capture(source), gpus=gpus, clock=clock or FakeClock())
    backend.nvmlInit()
    return backend


def started(
    nvml: Any, clock: FakeClock | None = None, slow_interval_s: float = 30.0
) -> tuple[GpuCollector, list[telemetry_pb2.GpuInventory]]:
    collector = GpuCollector(nvml, slow_interval_s=slow_interval_s, clock=clock or FakeClock())
    inventories = collector.start()
    return collector, inventories


def test_inventory_equals_the_capture() -> None:
    _, (inventory,) = started(replay())
    queries = RAW["queries"]
    assert inventory.index == 0
    assert inventory.name == "NVIDIA H200"
    assert inventory.uuid == queries["uuid"]
    assert inventory.serial == queries["serial"]
    assert inventory.pci_bus_id == "00000000:00:06.0"
    assert inventory.memory_total_bytes == 150754820096
    assert (inventory.power_limit_min_w, inventory.power_limit_max_w) == (200.0, 700.0)
    assert inventory.power_limit_w == inventory.power_limit_default_w == 700.0
    assert (inventory.clock_sm_max_mhz, inventory.clock_memory_max_mhz) == (1980, 3201)
    assert inventory.compute_capability == "9.0"
    assert inventory.vbios_version == queries["vbios"]
    assert inventory.ecc_enabled and not inventory.mig_enabled
    assert (inventory.pcie_generation_max, inventory.pcie_width) == (5, 16)


def test_system_info_names_the_replay_and_fills_the_host_inventory() -> None:
    collector, _ = started(replay())
    info = collector.system_info()
    assert info.backend == "replay:builtin:h200"
    assert (info.driver_version, info.nvml_version) == ("580.159.04", "13.580.159.04")
    assert info.cuda_driver_version == 13000
    host = telemetry_pb2.HostInventory()
    info.fill(host)
    assert host.gpu_backend == "replay:builtin:h200" and host.cuda_driver_version == 13000


def test_first_sample_equals_the_first_trace_point() -> None:
    collector, _ = started(replay())
    (gpu,) = collector.sample()
    point = TRACE[0]
    assert gpu.uuid == RAW["queries"]["uuid"]
    assert gpu.utilization_gpu_percent == point["util"]["gpu"]
    assert gpu.utilization_memory_percent == point["util"]["memory"]
    assert gpu.power_w == pytest.approx(point["power_mw"] / 1000)
    assert gpu.power_average_w == pytest.approx(point["power_mw"] / 1000)
    assert gpu.temperature_gpu_c == point["temp_gpu"]
    assert gpu.temperature_memory_c == 39
    assert gpu.clock_sm_mhz == point["clock_sm"]
    assert gpu.clock_memory_mhz == point["clock_mem"]
    assert gpu.memory_used_bytes == point["memory"]["used"]
    assert gpu.memory_free_bytes == point["memory"]["free"]
    assert gpu.performance_state == point["pstate"]
    assert gpu.process_count == point["procs"]
    assert list(gpu.clock_event_reason_names) == ["gpu_idle"]
    assert gpu.energy_consumed_mj == point["energy_mj"]
    assert not gpu.HasField("pcie_transmit_bytes_per_second")
    assert gpu.HasField("pcie_transmit_bytes_total")
    assert list(gpu.unsupported) == []


def test_samples_advance_through_the_trace_and_loop() -> None:
    collector, _ = started(replay())
    for step in range(len(TRACE) * 2 + 5):
        (gpu,) = collector.sample()
        point = TRACE[step % len(TRACE)]
        assert (gpu.power_w, gpu.clock_sm_mhz, gpu.utilization_gpu_percent) == (
            pytest.approx(point["power_mw"] / 1000),
            point["clock_sm"],
            point["util"]["gpu"],
        )


def test_software_power_cap_decodes_to_its_name() -> None:
    collector, _ = started(replay())
    first_capped = next(i for i, p in enumerate(TRACE) if p["clock_reasons"] == 4)
    samples = [collector.sample()[0] for _ in range(first_capped + 1)]
    assert samples[-1].clock_event_reasons == 4
    assert list(samples[-1].clock_event_reason_names) == ["sw_power_cap"]


def test_clock_event_reason_decoding() -> None:
    assert decode_clock_event_reasons(0) == []
    assert decode_clock_event_reasons(4) == ["sw_power_cap"]
    assert decode_clock_event_reasons(0x1 | 0x40) == ["gpu_idle", "hw_thermal_slowdown"]
    assert decode_clock_event_reasons(0x100) == ["display_clock_setting"]
    assert decode_clock_event_reasons(0x1000) == ["unknown_0x1000"]


def test_four_clones_give_four_distinct_gpus() -> None:
    collector, inventories = started(replay(gpus=4))
    samples = collector.sample()
    assert [g.index for g in samples] == [0, 1, 2, 3]
    assert len({i.uuid for i in inventories}) == 4
    assert [g.uuid for g in samples] == [i.uuid for i in inventories]
    assert len({i.pci_bus_id for i in inventories}) == 4


def test_one_field_call_per_gpu_and_slow_fields_only_every_slow_interval() -> None:
    clock = FakeClock()
    nvml = CallRecorder(replay(gpus=2, clock=clock))
    collector, _ = started(nvml, clock, slow_interval_s=30.0)
    nvml.calls.clear()
    energy_read_at = []
    for second in range(65):
        calls_before = len(nvml.field_requests())
        samples = collector.sample()
        requests = nvml.field_requests()[calls_before:]
        assert len(requests) == 2  # one nvmlDeviceGetFieldValues per GPU per sample
        if ENERGY_FIELD in requests[0]:
            energy_read_at.append(second)
        for gpu in samples:
            assert all(gpu.HasField(name) for name in SLOW_METRICS), second
        clock.now_s += 1.0
    assert energy_read_at == [0, 30, 60]


def test_slow_values_are_carried_forward_between_slow_reads() -> None:
    clock = FakeClock()
    collector, _ = started(replay(clock=clock), clock, slow_interval_s=30.0)
    energies = []
    for _ in range(31):
        energies.append(collector.sample()[0].energy_consumed_mj)
        clock.now_s += 1.0
    assert set(energies[:30]) == {TRACE[0]["energy_mj"]}
    assert energies[30] == TRACE[30]["energy_mj"]


def test_sampling_never_calls_the_expensive_nvml_functions() -> None:
    nvml = CallRecorder(replay())
    collector, _ = started(nvml)
    start_calls = set(nvml.names())
    nvml.calls.clear()
    for _ in range(40):
        collector.sample()
    sample_calls = set(nvml.names())
    assert "nvmlDeviceGetMaxClockInfo" in start_calls
    expensive = {
        "nvmlDeviceGetPcieThroughput",
        "nvmlDeviceGetTotalEnergyConsumption",
        "nvmlDeviceGetMaxClockInfo",
    }
    assert not sample_calls & expensive
    assert all(ENERGY_FIELD not in request for request in nvml.field_requests()[1:])


def test_pcie_rates_from_synthesised_counters_match_the_trace() -> None:
    clock = FakeClock()
    collector, _ = started(replay(clock=clock), clock)
    collector.sample()
    for step in range(1, 60):
        clock.now_s += 1.0
        (gpu,) = collector.sample()
        point = TRACE[step]
        tx_expected = point["pcie_tx_kbps"] * KIB_BYTES
        rx_expected = point["pcie_rx_kbps"] * KIB_BYTES
        assert gpu.pcie_transmit_bytes_per_second == pytest.approx(tx_expected, rel=0.01)
        assert gpu.pcie_receive_bytes_per_second == pytest.approx(rx_expected, rel=0.01)


def test_pcie_totals_stay_monotonic_when_the_32_bit_counter_wraps() -> None:
    clock = FakeClock()
    collector, _ = started(replay(clock=clock), clock)
    totals = []
    for _ in range(5):
        totals.append(collector.sample()[0].pcie_transmit_bytes_total)
        clock.now_s += 900.0  # ~0.65 GiB per step at the idle rate: wraps 2**32 on the way
    assert totals == sorted(totals)
    assert totals[-1] > 2**32


def test_wrapping_counter_absorbs_one_wrap() -> None:
    counter = WrappingCounter()
    assert counter.update(2**32 - 100, 2**32, now_s=0.0) is None
    assert counter.update(50, 2**32, now_s=2.0) == 75.0
    assert counter.total == 2**32 + 50


def unsupported_capture(tmp_path: Path) -> str:
    """The H200 capture with a GPU's typical gaps: no encoder, no memory sensor, no power
    fields, and a decoder query that fails with a real error."""
    document = json.loads(CAPTURE.read_text())
    not_supported = {"nvml_error": "Not Supported", "code": pynvml.NVML_ERROR_NOT_SUPPORTED}
    document["queries"]["enc_util"] = not_supported
    document["queries"]["dec_util"] = {"nvml_error": "Unknown Error", "code": 999}
    for name in ("MEMORY_TEMP", "POWER_AVERAGE", "POWER_INSTANT", "ECC_SBE_AGG_TOTAL"):
        entry = document["fields"][f"NVML_FI_DEV_{name}"]
        document["fields"][f"NVML_FI_DEV_{name}"] = {"id": entry["id"], "nvml_return": 3}
    path = tmp_path / "gappy.json"
    path.write_text(json.dumps(document))
    return str(path)


def test_not_supported_is_named_once_and_not_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    nvml, _ = open_gpu_backend(unsupported_capture(tmp_path))
    collector, _ = started(nvml, clock, slow_interval_s=1.0)
    with caplog.at_level(logging.WARNING):
        samples = []
        for _ in range(3):
            samples.append(collector.sample()[0])
            clock.now_s += 2.0
    last = samples[-1]
    assert list(last.unsupported) == [
        "encoder_utilization_percent",
        "power_average_w",
        "temperature_memory_c",
        "ecc_corrected_aggregate",
    ]
    for name in last.unsupported:
        assert not last.HasField(name)
    # Instant power is missing, so power_w comes from nvmlDeviceGetPowerUsage instead.
    assert last.power_w == pytest.approx(TRACE[2]["power_mw"] / 1000)
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 1 and "decoder_utilization_percent" in messages[0]
    assert not last.HasField("decoder_utilization_percent")
    assert "decoder_utilization_percent" not in last.unsupported


def test_not_supported_fields_are_not_requested_again(tmp_path: Path) -> None:
    nvml = CallRecorder(open_gpu_backend(unsupported_capture(tmp_path))[0])
    collector, _ = started(nvml)
    collector.sample()
    collector.sample()
    second = nvml.field_requests()[-1]
    assert pynvml.NVML_FI_DEV_MEMORY_TEMP not in second
    assert pynvml.NVML_FI_DEV_POWER_INSTANT not in second
    assert nvml.names().count("nvmlDeviceGetEncoderUtilization") == 1


def test_sample_before_start_is_a_programming_error() -> None:
    collector = GpuCollector(replay())
    with pytest.raises(RuntimeError):
        collector.sample()


def test_close_shuts_nvml_down() -> None:
    nvml = replay()
    collector, _ = started(nvml)
    collector.close()
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        nvml.nvmlDeviceGetCount()
