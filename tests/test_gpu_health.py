"""GPU health: the XID table, the tracker's rules in time, and the collector filling
`last_xid`, `xid_counts` and `health` from replayed XID events and counters.

Time is a fake clock; the real XidWatcher thread runs on the replay and the tests wait on its
condition with a deadline, never by sleeping.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from edge_agent.collectors import GpuCollector
from edge_agent.collectors.health import (
    DEGRADED,
    FAILED,
    HEALTHY,
    XID_RULES,
    GpuHealthTracker,
    xid_rule,
)
from edge_agent.collectors.xid import XidEvent, XidWatcher
from edge_agent.nvml import ReplayNvml, ScheduledXid, load_capture
from sentinel.v1 import telemetry_pb2

CAPTURE = Path(__file__).resolve().parents[1] / "edge_agent" / "data" / "h200-driver580.json"
DEADLINE_S = 5.0
WAIT_MS = 50
HOUR_S = 3600.0
Metrics = telemetry_pb2.GpuMetrics


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


class Watchers:
    """An XidWatcher factory for the collector that keeps what it made, with short waits."""

    def __init__(self) -> None:
        self.made: list[XidWatcher] = []

    def __call__(
        self, nvml: Any, handles_by_index: Mapping[int, Any], *, clock: Callable[[], float]
    ) -> XidWatcher:
        watcher = XidWatcher(nvml, handles_by_index, wait_ms=WAIT_MS, clock=clock)
        self.made.append(watcher)
        return watcher

    def wait_for(self, count: int) -> None:
        (watcher,) = self.made
        assert watcher.wait_for(count, DEADLINE_S), f"{count} XID events did not arrive"


class Rig:
    """A started collector on a replay, its clock, its replay and its watcher."""

    def __init__(
        self,
        *,
        gpus: int = 2,
        events: list[ScheduledXid] | None = None,
        capture: str = "builtin:h200",
        quiet_period_s: float = HOUR_S,
    ) -> None:
        self.clock = FakeClock()
        self.nvml = ReplayNvml(
            load_capture(capture), gpus=gpus, clock=self.clock, xid_events=events or []
        )
        self.nvml.nvmlInit()
        self.watchers = Watchers()
        self.collector = GpuCollector(
            self.nvml,
            clock=self.clock,
            xid_watcher=self.watchers,
            health=GpuHealthTracker(quiet_period_s=quiet_period_s),
        )
        self.collector.start()

    def inject(self, gpu: int, xid: int) -> None:
        before = self.watchers.made[0].received
        self.nvml.inject_xid(gpu, xid)
        self.watchers.wait_for(before + 1)

    def sample(self) -> list[Metrics]:
        return self.collector.sample()


@pytest.fixture
def rigs() -> Iterator[Callable[..., Rig]]:
    made: list[Rig] = []

    def make(**kwargs: Any) -> Rig:
        rig = Rig(**kwargs)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        rig.collector.close()


def reasons(gpu: Metrics) -> list[tuple[str, int, int]]:
    return [(r.source, r.xid, r.implies) for r in gpu.health.reasons]


# -- the collector, end to end on the replay ---------------------------------------------------


def test_xid_79_fails_its_gpu_and_only_that_gpu(rigs: Callable[..., Rig]) -> None:
    rig = rigs(events=[ScheduledXid(0, 1, 79)])
    rig.watchers.wait_for(1)
    gpu0, gpu1 = rig.sample()
    assert gpu1.last_xid == 79
    assert dict(gpu1.xid_counts) == {79: 1}
    assert gpu1.health.state == FAILED
    (reason,) = gpu1.health.reasons
    assert (reason.source, reason.xid, reason.implies) == ("xid", 79, FAILED)
    assert "fallen off the bus" in reason.detail
    assert gpu0.health.state == HEALTHY and list(gpu0.health.reasons) == []
    assert gpu0.last_xid == 0 and dict(gpu0.xid_counts) == {}


def test_a_failed_xid_is_sticky_for_the_agents_life(rigs: Callable[..., Rig]) -> None:
    rig = rigs(events=[ScheduledXid(0, 0, 48)])
    rig.watchers.wait_for(1)
    assert rig.sample()[0].health.state == FAILED
    rig.clock.now_s += 30 * 24 * HOUR_S
    assert rig.sample()[0].health.state == FAILED


def test_xid_13_is_recorded_but_healthy(rigs: Callable[..., Rig]) -> None:
    rig = rigs(gpus=1)
    rig.inject(0, 13)
    rig.inject(0, 13)
    (gpu,) = rig.sample()
    assert gpu.last_xid == 13 and dict(gpu.xid_counts) == {13: 2}
    assert gpu.health.state == HEALTHY and list(gpu.health.reasons) == []


def test_xid_92_degrades_until_the_quiet_period_passes(rigs: Callable[..., Rig]) -> None:
    rig = rigs(gpus=1, quiet_period_s=HOUR_S)
    rig.inject(0, 92)
    (gpu,) = rig.sample()
    assert gpu.health.state == DEGRADED
    assert reasons(gpu) == [("xid", 92, DEGRADED)]
    rig.clock.now_s += HOUR_S - 1
    assert rig.sample()[0].health.state == DEGRADED
    rig.clock.now_s += 1
    (gpu,) = rig.sample()
    assert gpu.health.state == HEALTHY and list(gpu.health.reasons) == []
    assert gpu.last_xid == 92 and dict(gpu.xid_counts) == {92: 1}  # counts stay cumulative


def test_a_repeated_degrading_xid_restarts_the_quiet_period(rigs: Callable[..., Rig]) -> None:
    rig = rigs(gpus=1, quiet_period_s=60.0)
    rig.inject(0, 94)
    rig.clock.now_s += 50
    rig.inject(0, 94)
    rig.clock.now_s += 50
    (gpu,) = rig.sample()
    assert gpu.health.state == DEGRADED
    assert gpu.health.reasons[0].detail == "contained ECC error (2 times)"
    rig.clock.now_s += 10
    assert rig.sample()[0].health.state == HEALTHY


def test_unknown_xid_degrades(rigs: Callable[..., Rig]) -> None:
    rig = rigs(gpus=1)
    rig.inject(0, 999)
    (gpu,) = rig.sample()
    assert gpu.health.state == DEGRADED
    assert reasons(gpu) == [("xid", 999, DEGRADED)]
    assert gpu.health.reasons[0].detail == "unknown xid"


def test_counters_from_the_capture_drive_health(rigs: Callable[..., Rig], tmp_path: Path) -> None:
    document = json.loads(CAPTURE.read_text())
    document["fields"]["NVML_FI_DEV_REMAPPED_FAILURE"]["value"] = 1
    document["fields"]["NVML_FI_DEV_REMAPPED_PENDING"]["value"] = 1
    for point in document["trace_5hz"]:
        point["ecc_uncorrected_volatile"] = 3
    path = tmp_path / "faulty.json"
    path.write_text(json.dumps(document))
    rig = rigs(gpus=1, capture=str(path))
    (gpu,) = rig.sample()
    assert gpu.health.state == FAILED
    assert [(source, implies) for source, _, implies in reasons(gpu)] == [
        ("ecc_dbe_volatile", DEGRADED),
        ("row_remap_pending", DEGRADED),
        ("row_remap_failure", FAILED),
    ]
    assert gpu.health.reasons[0].detail.startswith("3 uncorrected ECC errors")


def test_the_healthy_h200_capture_is_healthy_on_every_sample(rigs: Callable[..., Rig]) -> None:
    rig = rigs(gpus=2)
    for _ in range(120):  # a whole trace, through its software power cap
        assert {gpu.health.state for gpu in rig.sample()} == {HEALTHY}
        rig.clock.now_s += 1


def test_events_for_gpus_outside_the_inventory_are_counted_and_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    nvml = ReplayNvml(load_capture("builtin:h200"), gpus=2, clock=FakeClock())
    nvml.nvmlInit()
    source = StubSource([XidEvent(7, 79, 0.0), XidEvent(None, 48, 0.0), XidEvent(1, 13, 0.0)])
    collector = GpuCollector(nvml, clock=FakeClock(), xid_watcher=lambda *_a, **_k: source)
    collector.start()
    with caplog.at_level(logging.WARNING):
        gpu0, gpu1 = collector.sample()
    assert collector.xid_events_ignored == 2
    assert (gpu0.health.state, gpu1.health.state) == (HEALTHY, HEALTHY)
    assert dict(gpu1.xid_counts) == {13: 1} and dict(gpu0.xid_counts) == {}
    assert len([r for r in caplog.records if "not in the inventory" in r.getMessage()]) == 1
    collector.close()
    assert source.stopped and collector.xid_watcher is None


def test_close_stops_the_watcher(rigs: Callable[..., Rig]) -> None:
    rig = rigs(gpus=1)
    (watcher,) = rig.watchers.made
    assert rig.collector.xid_watcher is watcher and watcher.running
    rig.collector.close()
    assert not watcher.running and rig.collector.xid_watcher is None


def test_without_a_watcher_health_still_comes_from_counters() -> None:
    nvml = ReplayNvml(load_capture("builtin:h200"), gpus=1, clock=FakeClock())
    nvml.nvmlInit()
    collector = GpuCollector(nvml, clock=FakeClock(), xid_watcher=None)
    collector.start()
    (gpu,) = collector.sample()
    assert collector.xid_watcher is None
    assert gpu.health.state == HEALTHY and gpu.last_xid == 0


# -- the table and the tracker's rules ---------------------------------------------------------


@pytest.mark.parametrize(
    ("xid", "state"),
    [
        (13, HEALTHY),
        (31, HEALTHY),
        (43, HEALTHY),
        (45, HEALTHY),
        (48, FAILED),
        (61, DEGRADED),
        (62, DEGRADED),
        (63, DEGRADED),
        (64, FAILED),
        (74, DEGRADED),
        (79, FAILED),
        (92, DEGRADED),
        (94, DEGRADED),
        (95, FAILED),
        (119, FAILED),
        (120, FAILED),
        (140, FAILED),
        (12345, DEGRADED),
    ],
)
def test_xid_table(xid: int, state: int) -> None:
    tracker = GpuHealthTracker()
    tracker.observe_xid(XidEvent(0, xid, 0.0))
    health = tracker.evaluate(Metrics(index=0), now_s=1.0)
    assert xid_rule(xid).implies == state == health.state
    assert len(health.reasons) == (0 if state == HEALTHY else 1)


def test_every_table_entry_is_tested() -> None:
    assert set(XID_RULES) == {13, 31, 43, 45, 48, 61, 62, 63, 64, 74, 79, 92, 94, 95, 119, 120, 140}


@pytest.mark.parametrize(
    ("fields", "source", "state"),
    [
        ({"ecc_uncorrected_volatile": 1}, "ecc_dbe_volatile", DEGRADED),
        ({"remapped_rows_uncorrectable": 2}, "remapped_rows_uncorrectable", DEGRADED),
        ({"row_remap_pending": True}, "row_remap_pending", DEGRADED),
        ({"row_remap_failure": True}, "row_remap_failure", FAILED),
    ],
)
def test_counter_rules(fields: dict[str, Any], source: str, state: int) -> None:
    health = GpuHealthTracker().evaluate(Metrics(index=0, **fields), now_s=0.0)
    assert health.state == state
    assert [(r.source, r.implies) for r in health.reasons] == [(source, state)]


@pytest.mark.parametrize("name", ["hw_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown"])
def test_hardware_slowdowns_degrade_and_name_the_throttle(name: str) -> None:
    metrics = Metrics(index=0, clock_event_reason_names=["gpu_idle", name])
    health = GpuHealthTracker().evaluate(metrics, now_s=0.0)
    assert health.state == DEGRADED
    (reason,) = health.reasons
    assert reason.source == "clock_event" and reason.detail.startswith(f"{name}: ")


def test_software_throttles_and_zero_counters_are_healthy() -> None:
    metrics = Metrics(
        index=0,
        clock_event_reason_names=["sw_power_cap", "sw_thermal_slowdown"],
        ecc_uncorrected_volatile=0,
        remapped_rows_uncorrectable=0,
        row_remap_pending=False,
        row_remap_failure=False,
    )
    health = GpuHealthTracker().evaluate(metrics, now_s=0.0)
    assert health.state == HEALTHY and list(health.reasons) == []


def test_counter_reasons_follow_the_current_sample() -> None:
    tracker = GpuHealthTracker()
    assert tracker.evaluate(Metrics(index=0, row_remap_pending=True), 0.0).state == DEGRADED
    assert tracker.evaluate(Metrics(index=0, row_remap_pending=False), 1.0).state == HEALTHY


def test_the_worst_reason_wins_and_every_reason_is_kept() -> None:
    tracker = GpuHealthTracker()
    tracker.observe_xid(XidEvent(0, 92, 0.0))
    tracker.observe_xid(XidEvent(0, 13, 0.0))
    health = tracker.evaluate(Metrics(index=0, row_remap_failure=True), now_s=1.0)
    assert health.state == FAILED
    assert [(r.source, r.xid) for r in health.reasons] == [("xid", 92), ("row_remap_failure", 0)]


def test_xids_of_one_gpu_do_not_touch_another() -> None:
    tracker = GpuHealthTracker()
    tracker.observe_xid(XidEvent(3, 95, 0.0))
    assert tracker.evaluate(Metrics(index=2), 1.0).state == HEALTHY
    assert tracker.evaluate(Metrics(index=3), 1.0).state == FAILED
    assert (tracker.last_xid(2), tracker.xid_counts(2)) == (0, {})


class StubSource:
    """An XidSource that hands out fixed events once."""

    def __init__(self, events: list[XidEvent]) -> None:
        self.events = events
        self.stopped = False

    def start(self) -> bool:
        return True

    def stop(self) -> None:
        self.stopped = True

    def drain(self) -> list[XidEvent]:
        events, self.events = self.events, []
        return events
