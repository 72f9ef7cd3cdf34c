"""The NVML replay backend and the loader, against the real pynvml module (no NVML library here)."""

from __future__ import annotations

import ctypes
import json
import logging
from pathlib import Path
from typing import Any

import pynvml
import pytest

from edge_agent.nvml import (
    BAD_REPLAY_SOURCE,
    ReplayHandle,
    ReplayNvml,
    load_capture,
    open_gpu_backend,
)
from edge_agent.nvml.trace import KIB_BYTES
from sentinel.errors import ConfigError

CAPTURE = Path(__file__).resolve().parents[1] / "edge_agent" / "data" / "h200-driver580.json"
RAW = json.loads(CAPTURE.read_text())
TRACE = RAW["trace_5hz"]


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def replay(gpus: int = 1, clock: FakeClock | None = None) -> ReplayNvml:
    backend = ReplayNvml(load_capture("builtin:h200"), gpus=gpus, clock=clock or FakeClock())
    backend.nvmlInit()
    return backend


def fields(backend: ReplayNvml, handle: ReplayHandle, *ids: int) -> dict[int, Any]:
    return {int(v.fieldId): v for v in backend.nvmlDeviceGetFieldValues(handle, list(ids))}


def test_builtin_and_file_sources_are_the_same_capture() -> None:
    builtin = load_capture("builtin:h200")
    from_file = load_capture(str(CAPTURE))
    assert builtin.queries == from_file.queries
    assert len(builtin.trace) == 112
    assert from_file.source == str(CAPTURE)


def test_static_facts_equal_the_capture() -> None:
    nvml = replay()
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    assert nvml.nvmlDeviceGetCount() == 1
    assert nvml.nvmlSystemGetDriverVersion() == "580.159.04"
    assert nvml.nvmlSystemGetNVMLVersion() == "13.580.159.04"
    assert nvml.nvmlSystemGetCudaDriverVersion() == 13000
    assert nvml.nvmlDeviceGetName(handle) == "NVIDIA H200"
    assert nvml.nvmlDeviceGetUUID(handle) == RAW["queries"]["uuid"]
    assert nvml.nvmlDeviceGetPciInfo(handle).busId == "00000000:00:06.0"
    assert isinstance(nvml.nvmlDeviceGetPciInfo(handle), pynvml.nvmlPciInfo_t)
    assert nvml.nvmlDeviceGetMemoryInfo(handle).total == 150754820096
    assert nvml.nvmlDeviceGetPowerManagementLimitConstraints(handle) == [200000, 700000]
    assert nvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM) == 1980
    assert nvml.nvmlDeviceGetCudaComputeCapability(handle) == (9, 0)


def test_calls_before_init_raise_uninitialized_like_the_library() -> None:
    nvml = ReplayNvml(load_capture("builtin:h200"))
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        nvml.nvmlDeviceGetCount()
    nvml.nvmlInit()
    nvml.nvmlShutdown()
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        nvml.nvmlDeviceGetHandleByIndex(0)


def test_bad_handle_and_index_raise_invalid_argument() -> None:
    nvml = replay()
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        nvml.nvmlDeviceGetHandleByIndex(1)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        nvml.nvmlDeviceGetName(ReplayHandle(5))


def test_not_supported_entries_raise_pynvml_not_supported() -> None:
    nvml = replay()
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    calls = (
        lambda: nvml.nvmlDeviceGetFanSpeed(handle),
        lambda: nvml.nvmlDeviceGetRetiredPages(handle, 1),
        lambda: nvml.nvmlDeviceGetNvLinkState(handle, 0),
    )
    for call in calls:
        with pytest.raises(pynvml.NVMLError_NotSupported) as caught:
            call()
        assert caught.value.value == pynvml.NVML_ERROR_NOT_SUPPORTED
        assert isinstance(caught.value, pynvml.NVMLError)


def test_field_values_have_pynvml_shape_and_per_field_returns() -> None:
    nvml = replay()
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    nvlink_crc = pynvml.NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_L0
    values = nvml.nvmlDeviceGetFieldValues(
        handle, [pynvml.NVML_FI_DEV_MEMORY_TEMP, nvlink_crc, (9999, 0)]
    )
    assert all(isinstance(v, pynvml.c_nvmlFieldValue_t) for v in values)
    memory_temp, nvlink, unknown = values
    assert memory_temp.nvmlReturn == pynvml.NVML_SUCCESS
    assert memory_temp.valueType == pynvml.NVML_VALUE_TYPE_UNSIGNED_INT
    assert memory_temp.value.uiVal == 39
    assert nvlink.nvmlReturn == pynvml.NVML_ERROR_NOT_SUPPORTED
    assert unknown.nvmlReturn == pynvml.NVML_ERROR_INVALID_ARGUMENT


def test_each_advance_moves_one_trace_point_and_loops_after_112() -> None:
    nvml = replay()
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    seen = []
    for _ in range(len(TRACE) + 3):
        nvml.advance()
        seen.append(
            (
                nvml.nvmlDeviceGetPowerUsage(handle),
                nvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM),
                nvml.nvmlDeviceGetUtilizationRates(handle).gpu,
                nvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU),
                nvml.nvmlDeviceGetMemoryInfo(handle).used,
            )
        )
    expected = [
        (p["power_mw"], p["clock_sm"], p["util"]["gpu"], p["temp_gpu"], p["memory"]["used"])
        for p in TRACE
    ]
    assert seen[: len(TRACE)] == expected
    assert seen[len(TRACE) :] == expected[:3]


def test_power_fields_follow_the_trace() -> None:
    nvml = replay()
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    for point in TRACE[:50]:
        nvml.advance()
        got = fields(nvml, handle, pynvml.NVML_FI_DEV_POWER_INSTANT)
        assert got[pynvml.NVML_FI_DEV_POWER_INSTANT].value.uiVal == point["power_mw"]


def test_pcie_counters_integrate_the_trace_rate_over_clock_time() -> None:
    clock = FakeClock()
    nvml = replay(clock=clock)
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    tx_id = pynvml.NVML_FI_DEV_PCIE_COUNT_TX_BYTES
    nvml.advance()
    before = fields(nvml, handle, tx_id)[tx_id].value.uiVal
    assert before == RAW["fields"]["NVML_FI_DEV_PCIE_COUNT_TX_BYTES"]["value"]
    clock.now_s += 2.0
    nvml.advance()
    after = fields(nvml, handle, tx_id)[tx_id].value.uiVal
    assert after - before == pytest.approx(TRACE[1]["pcie_tx_kbps"] * KIB_BYTES * 2.0, abs=1)


def test_pcie_counters_wrap_at_32_bits_like_the_hardware() -> None:
    clock = FakeClock()
    nvml = replay(clock=clock)
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    tx_id = pynvml.NVML_FI_DEV_PCIE_COUNT_TX_BYTES
    nvml.advance()
    clock.now_s += 3600.0  # ~2.5 GiB at the idle rate: past 2**32 from the captured start
    nvml.advance()
    value = fields(nvml, handle, tx_id)[tx_id].value.uiVal
    assert 0 <= value < 2**32


def test_energy_counter_stays_monotonic_across_loops() -> None:
    nvml = replay()
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    readings = []
    for _ in range(len(TRACE) * 2 + 1):
        nvml.advance()
        readings.append(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
    assert readings == sorted(readings)
    assert readings[0] == TRACE[0]["energy_mj"]


def test_clones_have_distinct_identities_and_the_same_readings() -> None:
    nvml = replay(gpus=4)
    handles = [nvml.nvmlDeviceGetHandleByIndex(index) for index in range(4)]
    nvml.advance()
    assert nvml.nvmlDeviceGetCount() == 4
    assert len({nvml.nvmlDeviceGetUUID(h) for h in handles}) == 4
    assert len({nvml.nvmlDeviceGetSerial(h) for h in handles}) == 4
    assert len({nvml.nvmlDeviceGetPciInfo(h).busId for h in handles}) == 4
    assert nvml.nvmlDeviceGetUUID(handles[0]) == RAW["queries"]["uuid"]
    assert nvml.nvmlDeviceGetUUID(handles[3]).endswith("000000000004")
    assert len({nvml.nvmlDeviceGetPowerUsage(h) for h in handles}) == 1


def test_constants_come_from_pynvml() -> None:
    nvml = replay()
    assert nvml.NVML_CLOCK_SM == pynvml.NVML_CLOCK_SM
    assert nvml.NVML_FI_DEV_POWER_INSTANT == pynvml.NVML_FI_DEV_POWER_INSTANT
    assert nvml.NVMLError_NotSupported is pynvml.NVMLError_NotSupported
    with pytest.raises(AttributeError):
        _ = nvml.nvmlDeviceGetSomethingThatDoesNotExist


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        ("{not json", "not JSON"),
        ("[]", "not a JSON object"),
        (json.dumps({**RAW, "trace_5hz": []}), "no trace_5hz"),
        (json.dumps({**RAW, "trace_5hz": [{"util": {}}]}), "trace_5hz[0] lacks"),
        (json.dumps({**RAW, "system": {}}), "'system' must hold"),
        (json.dumps({**RAW, "fields": {"X": {"id": "one"}}}), "field 'X' is malformed"),
    ],
)
def test_bad_replay_file_is_a_config_error(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "capture.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        open_gpu_backend(str(path))
    assert caught.value.reason == BAD_REPLAY_SOURCE
    assert message in str(caught.value)


def test_unknown_builtin_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="builtin:h200") as caught:
        open_gpu_backend("builtin:a100")
    assert caught.value.reason == BAD_REPLAY_SOURCE


def test_replay_gpu_count_must_be_positive() -> None:
    with pytest.raises(ConfigError) as caught:
        open_gpu_backend("builtin:h200", replay_gpus=0)
    assert caught.value.reason == BAD_REPLAY_SOURCE


def test_loader_returns_an_initialised_replay() -> None:
    nvml, description = open_gpu_backend("builtin:h200", replay_gpus=2)
    assert description == "replay:builtin:h200"
    assert nvml.nvmlDeviceGetCount() == 2


def _nvml_library_present() -> bool:
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


@pytest.mark.skipif(_nvml_library_present(), reason="this machine has the NVML library")
def test_loader_without_nvml_library_runs_host_only(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        backend, description = open_gpu_backend(None)
    assert (backend, description) == (None, "none")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == ["NVML library not found: running host-only"]
