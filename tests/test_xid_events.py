"""XID events: the replay's injected events, its NVML event sets, and the XidWatcher thread.

No test sleeps to wait for something: waits are on the watcher's condition or a thread join,
each with a deadline.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pynvml
import pytest

from edge_agent.collectors.xid import XidEvent, XidWatcher
from edge_agent.nvml import (
    BAD_XID_FILE,
    ReplayHandle,
    ReplayNvml,
    ScheduledXid,
    load_capture,
    load_xid_events,
    open_gpu_backend,
)
from sentinel.errors import ConfigError

XID = pynvml.nvmlEventTypeXidCriticalError
DEADLINE_S = 5.0
WAIT_MS = 50  # short waits, so that stop() returns fast; the agent's 1 s is tested once


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def replay(
    gpus: int = 2,
    events: list[ScheduledXid] | None = None,
    clock: Callable[[], float] | None = None,
) -> ReplayNvml:
    backend = ReplayNvml(
        load_capture("builtin:h200"), gpus=gpus, clock=clock or FakeClock(), xid_events=events or []
    )
    backend.nvmlInit()
    return backend


def handles(nvml: Any, gpus: int = 2) -> dict[int, Any]:
    return {index: nvml.nvmlDeviceGetHandleByIndex(index) for index in range(gpus)}


def write_lines(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "xids.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


# -- the event file ----------------------------------------------------------------------------


def test_event_file_is_read_and_sorted_by_time(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path,
        '{"t": 2.5, "gpu": 0, "xid": 79}',
        "",
        '{"t": 0, "gpu": 1, "xid": 13}',
        '{"t": 2.5, "gpu": 1, "xid": 48}',
    )
    assert load_xid_events(path, gpus=2) == [
        ScheduledXid(0.0, 1, 13),
        ScheduledXid(2.5, 0, 79),
        ScheduledXid(2.5, 1, 48),
    ]


@pytest.mark.parametrize(
    ("bad_line", "complaint"),
    [
        ("{not json", "not JSON"),
        ('{"t": 1, "gpu": 0}', "exactly"),
        ('{"t": 1, "gpu": 0, "xid": 79, "note": "x"}', "exactly"),
        ("[1, 0, 79]", "exactly"),
        ('{"t": -1, "gpu": 0, "xid": 79}', '"t"'),
        ('{"t": NaN, "gpu": 0, "xid": 79}', '"t"'),
        ('{"t": "soon", "gpu": 0, "xid": 79}', '"t"'),
        ('{"t": 1, "gpu": true, "xid": 79}', '"gpu"'),
        ('{"t": 1, "gpu": 2, "xid": 79}', "not replayed"),
        ('{"t": 1, "gpu": 0, "xid": 0}', '"xid"'),
        ('{"t": 1, "gpu": 0, "xid": 79.5}', '"xid"'),
    ],
)
def test_bad_event_line_is_a_config_error_with_its_line_number(
    tmp_path: Path, bad_line: str, complaint: str
) -> None:
    path = write_lines(tmp_path, '{"t": 0, "gpu": 0, "xid": 13}', "", bad_line)
    with pytest.raises(ConfigError) as caught:
        load_xid_events(path, gpus=2)
    assert caught.value.reason == BAD_XID_FILE
    assert caught.value.details["line"] == "3"
    assert "line 3" in str(caught.value) and complaint in str(caught.value)


def test_unreadable_event_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_xid_events(tmp_path / "missing.jsonl", gpus=1)
    assert caught.value.reason == BAD_XID_FILE


def test_loader_refuses_a_bad_event_file_before_starting(tmp_path: Path) -> None:
    path = write_lines(tmp_path, '{"t": 0, "gpu": 0, "xid": "79"}')
    with pytest.raises(ConfigError) as caught:
        open_gpu_backend("builtin:h200", 1, xid_events=path)
    assert caught.value.reason == BAD_XID_FILE and caught.value.details["line"] == "1"


def test_event_file_without_a_replay_is_refused(tmp_path: Path) -> None:
    path = write_lines(tmp_path, '{"t": 0, "gpu": 0, "xid": 79}')
    with pytest.raises(ConfigError) as caught:
        open_gpu_backend(None, xid_events=path)
    assert caught.value.reason == BAD_XID_FILE


def test_loader_hands_the_events_to_the_replay(tmp_path: Path) -> None:
    path = write_lines(tmp_path, '{"t": 0, "gpu": 1, "xid": 79}')
    nvml, _ = open_gpu_backend("builtin:h200", 2, xid_events=path)
    assert nvml is not None
    event_set = nvml.nvmlEventSetCreate()
    nvml.nvmlDeviceRegisterEvents(nvml.nvmlDeviceGetHandleByIndex(1), XID, event_set)
    data = nvml.nvmlEventSetWait_v2(event_set, 0)
    assert (data.device, data.eventType, data.eventData) == (ReplayHandle(1), XID, 79)


# -- the replay's event sets -------------------------------------------------------------------


def test_event_is_due_at_its_time_on_the_injected_clock() -> None:
    clock = FakeClock()
    nvml = replay(events=[ScheduledXid(2.5, 0, 92)], clock=clock)
    event_set = nvml.nvmlEventSetCreate()
    nvml.nvmlDeviceRegisterEvents(nvml.nvmlDeviceGetHandleByIndex(0), XID, event_set)
    with pytest.raises(pynvml.NVMLError_Timeout):
        nvml.nvmlEventSetWait_v2(event_set, 0)
    clock.now_s += 2.5
    data = nvml.nvmlEventSetWait(event_set, 0)
    assert (data.device, data.eventData) == (ReplayHandle(0), 92)
    assert (data.gpuInstanceId, data.computeInstanceId) == (0xFFFFFFFF, 0xFFFFFFFF)
    with pytest.raises(pynvml.NVMLError_Timeout):
        nvml.nvmlEventSetWait_v2(event_set, 0)  # delivered once


def test_events_of_unregistered_gpus_are_not_delivered() -> None:
    nvml = replay(events=[ScheduledXid(0, 0, 79), ScheduledXid(0, 1, 48)])
    event_set = nvml.nvmlEventSetCreate()
    nvml.nvmlDeviceRegisterEvents(nvml.nvmlDeviceGetHandleByIndex(1), XID, event_set)
    assert nvml.nvmlEventSetWait_v2(event_set, 0).eventData == 48
    with pytest.raises(pynvml.NVMLError_Timeout):
        nvml.nvmlEventSetWait_v2(event_set, 0)


def test_event_set_calls_check_their_arguments_like_nvml() -> None:
    nvml = replay()
    event_set = nvml.nvmlEventSetCreate()
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    assert nvml.nvmlDeviceGetSupportedEventTypes(handle) == XID
    with pytest.raises(pynvml.NVMLError_NotSupported):
        nvml.nvmlDeviceRegisterEvents(handle, pynvml.nvmlEventTypePState, event_set)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        nvml.nvmlDeviceRegisterEvents(ReplayHandle(9), XID, event_set)
    nvml.nvmlEventSetFree(event_set)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        nvml.nvmlEventSetWait_v2(event_set, 0)
    nvml.nvmlShutdown()
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        nvml.nvmlEventSetCreate()


def test_a_waiting_set_wakes_when_an_event_is_injected() -> None:
    nvml = replay()
    event_set = nvml.nvmlEventSetCreate()
    nvml.nvmlDeviceRegisterEvents(nvml.nvmlDeviceGetHandleByIndex(1), XID, event_set)
    got: list[Any] = []
    waiter = threading.Thread(
        target=lambda: got.append(nvml.nvmlEventSetWait_v2(event_set, 60_000))
    )
    waiter.start()
    nvml.inject_xid(1, 94)
    waiter.join(DEADLINE_S)
    assert not waiter.is_alive()
    assert got[0].eventData == 94


def test_wait_times_out_after_its_timeout() -> None:
    nvml = replay()
    event_set = nvml.nvmlEventSetCreate()
    nvml.nvmlDeviceRegisterEvents(nvml.nvmlDeviceGetHandleByIndex(0), XID, event_set)
    started = time.monotonic()
    with pytest.raises(pynvml.NVMLError_Timeout):
        nvml.nvmlEventSetWait_v2(event_set, 50)
    assert 0.04 <= time.monotonic() - started < 1.0


# -- the watcher -------------------------------------------------------------------------------


def test_watcher_turns_replay_events_into_xid_events() -> None:
    clock = FakeClock()
    nvml = replay(events=[ScheduledXid(0, 1, 79)], clock=clock)
    watcher = XidWatcher(nvml, handles(nvml), wait_ms=WAIT_MS, clock=clock)
    try:
        assert watcher.start() and watcher.running
        assert watcher.watched_gpus == [0, 1]
        assert watcher.wait_for(1, DEADLINE_S)
        assert watcher.drain() == [XidEvent(gpu_index=1, xid=79, time_s=100.0)]
        nvml.inject_xid(0, 13)
        assert watcher.wait_for(2, DEADLINE_S)
        assert [(e.gpu_index, e.xid) for e in watcher.drain()] == [(0, 13)]
        assert watcher.drain() == []
    finally:
        watcher.stop()


def test_stop_joins_the_thread_quickly_and_frees_the_set() -> None:
    nvml = Recorder(replay())
    watcher = XidWatcher(nvml, handles(nvml))  # the agent's 1 s wait
    assert watcher.start()
    started = time.monotonic()
    watcher.stop()
    assert time.monotonic() - started < 2.0
    assert not watcher.running
    assert nvml.count("nvmlEventSetFree") == 1
    watcher.stop()  # idempotent
    assert nvml.count("nvmlEventSetFree") == 1


def test_queue_is_bounded_and_drops_the_oldest(caplog: pytest.LogCaptureFixture) -> None:
    nvml = replay(events=[ScheduledXid(0, 0, xid) for xid in (61, 62, 63, 64, 74)])
    watcher = XidWatcher(nvml, handles(nvml), wait_ms=WAIT_MS, max_events=2)
    with caplog.at_level(logging.WARNING):
        assert watcher.start()
        try:
            assert watcher.wait_for(5, DEADLINE_S)
        finally:
            watcher.stop()
    assert [event.xid for event in watcher.drain()] == [64, 74]
    assert watcher.dropped == 3
    assert len([r for r in caplog.records if "queue full" in r.getMessage()]) == 1


def test_gpu_without_xid_events_is_skipped_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    nvml = NotSupportedFor(replay(events=[ScheduledXid(0, 0, 48)]), unsupported={1})
    watcher = XidWatcher(nvml, handles(nvml), wait_ms=WAIT_MS)
    with caplog.at_level(logging.INFO, logger="edge_agent.collectors.xid"):
        assert watcher.start()
    try:
        assert watcher.watched_gpus == [0]
        assert watcher.wait_for(1, DEADLINE_S)
    finally:
        watcher.stop()
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 1 and "GPU 1" in messages[0] and "Not Supported" in messages[0]


def test_no_supported_gpu_means_no_thread() -> None:
    nvml = Recorder(NotSupportedFor(replay(), unsupported={0, 1}))
    watcher = XidWatcher(nvml, handles(nvml))
    assert not watcher.start()
    assert not watcher.running
    assert nvml.count("nvmlEventSetFree") == 1


def test_a_failed_wait_is_logged_once_and_watching_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    nvml = FailingFirstWaits(replay(), failures=2)
    watcher = XidWatcher(nvml, handles(nvml), wait_ms=WAIT_MS)
    with caplog.at_level(logging.WARNING):
        assert watcher.start()
        try:
            nvml.inner.inject_xid(1, 95)
            assert watcher.wait_for(1, DEADLINE_S)
        finally:
            watcher.stop()
    assert [(e.gpu_index, e.xid) for e in watcher.drain()] == [(1, 95)]
    assert len([r for r in caplog.records if "waiting for XID events" in r.getMessage()]) == 1


def test_watcher_falls_back_to_the_old_wait_call() -> None:
    nvml = WithoutWaitV2(replay(events=[ScheduledXid(0, 1, 31)]))
    watcher = XidWatcher(nvml, handles(nvml), wait_ms=WAIT_MS)
    assert watcher.start()
    try:
        assert watcher.wait_for(1, DEADLINE_S)
    finally:
        watcher.stop()
    assert [(e.gpu_index, e.xid) for e in watcher.drain()] == [(1, 31)]


def test_real_nvml_shapes_ctypes_handles_and_event_data() -> None:
    """pynvml's handles are ctypes pointers; the event's `device` is a new pointer object."""
    nvml = CtypesNvml()
    watcher = XidWatcher(nvml, {0: nvml.handles[0], 1: nvml.handles[1]}, wait_ms=WAIT_MS)
    assert watcher.start()
    try:
        nvml.raise_xid(1, 48, gpu_instance=2)
        assert watcher.wait_for(1, DEADLINE_S)
    finally:
        watcher.stop()
    (event,) = watcher.drain()
    assert (event.gpu_index, event.xid, event.gpu_instance_id) == (1, 48, 2)
    assert event.compute_instance_id is None


# -- test doubles ------------------------------------------------------------------------------


class Recorder:
    """Forwards to `inner` and counts calls by name."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.names: list[str] = []

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if not callable(target) or isinstance(target, type):
            return target

        def record(*args: Any) -> Any:
            self.names.append(name)
            return target(*args)

        return record

    def count(self, name: str) -> int:
        return self.names.count(name)


class NotSupportedFor(Recorder):
    """Answers "Not Supported" to XID registration for the GPUs in `unsupported`."""

    def __init__(self, inner: Any, unsupported: set[int]) -> None:
        super().__init__(inner)
        self.unsupported = unsupported

    def nvmlDeviceRegisterEvents(self, handle: Any, types: int, event_set: Any) -> None:
        if handle.index in self.unsupported:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        self.inner.nvmlDeviceRegisterEvents(handle, types, event_set)


class FailingFirstWaits(Recorder):
    """The first `failures` waits fail with an unknown error."""

    def __init__(self, inner: Any, failures: int) -> None:
        super().__init__(inner)
        self.failures = failures

    def nvmlEventSetWait_v2(self, event_set: Any, timeout_ms: int) -> Any:
        if self.failures:
            self.failures -= 1
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNKNOWN)
        return self.inner.nvmlEventSetWait_v2(event_set, timeout_ms)


class WithoutWaitV2(Recorder):
    """An older binding: no nvmlEventSetWait_v2."""

    def __getattr__(self, name: str) -> Any:
        if name == "nvmlEventSetWait_v2":
            raise AttributeError(name)
        return super().__getattr__(name)


class CtypesNvml:
    """Event calls shaped exactly as pynvml's: ctypes device handles, `c_nvmlEventData_t`."""

    def __init__(self) -> None:
        self._devices = [pynvml.struct_c_nvmlDevice_t() for _ in range(2)]
        self.handles = [ctypes.pointer(device) for device in self._devices]
        self._queue: list[Any] = []
        self._changed = threading.Condition()

    def nvmlEventSetCreate(self) -> Any:
        return pynvml.c_nvmlEventSet_t()

    def nvmlDeviceRegisterEvents(self, handle: Any, types: int, event_set: Any) -> None:
        assert types == XID

    def raise_xid(self, gpu: int, xid: int, gpu_instance: int) -> None:
        data = pynvml.c_nvmlEventData_t()
        data.device = ctypes.pointer(self._devices[gpu])
        data.eventType, data.eventData = XID, xid
        data.gpuInstanceId, data.computeInstanceId = gpu_instance, 0xFFFFFFFF
        with self._changed:
            self._queue.append(data)
            self._changed.notify_all()

    def nvmlEventSetWait_v2(self, event_set: Any, timeout_ms: int) -> Any:
        with self._changed:
            if not self._changed.wait_for(lambda: self._queue, timeout_ms / 1000):
                raise pynvml.NVMLError(pynvml.NVML_ERROR_TIMEOUT)
            return self._queue.pop(0)

    def nvmlEventSetFree(self, event_set: Any) -> None:
        pass
