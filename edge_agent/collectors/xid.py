"""XID events: one daemon thread blocked in `nvmlEventSetWait`, feeding a bounded queue.

XIDs are the driver's error reports (a double-bit ECC error, a GPU that fell off the bus, an
application's MMU fault). NVML delivers them as events, and a GPU's health cannot be judged
without them. `XidWatcher` registers every GPU for `nvmlEventTypeXidCriticalError` on one event
set and waits on it with a timeout (1 s by default; "Timeout" is the normal answer when nothing
happened). Measured on an H200: such a thread costs 0.4 ms of CPU per 3 s.

Invariants:
- One thread, one event set, for the watcher's life. `start()` does the setup in the caller's
  thread, so it knows whether events can be watched: a GPU answering "Not Supported" (or any
  other error) is skipped and named in one log line; with no GPU left there is no thread.
- The queue is bounded (`max_events`): when full, the oldest event is dropped, counted in
  `dropped` and logged once. Receiving never blocks on the reader.
- `stop()` sets a flag the thread checks after every wait, so the thread ends within one
  `wait_ms`; the event set is freed only after the thread has ended (freeing a set another thread
  waits on is undefined in NVML). `stop()` is idempotent.
- The same code runs on real NVML and on a replay (`ReplayNvml` implements the event calls).
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import pynvml

log = logging.getLogger("edge_agent.collectors.xid")

XID_EVENT = int(pynvml.nvmlEventTypeXidCriticalError)
_NO_INSTANCE = 0xFFFFFFFF
_TIMEOUT = pynvml.NVML_ERROR_TIMEOUT


@dataclass(frozen=True)
class XidEvent:
    """One XID on one GPU. `gpu_index` is None when NVML named a device the watcher lacks.

    `time_s` is the watcher's clock when the event arrived; the instance ids are set on MIG
    GPUs when the event concerns one GPU or compute instance.
    """

    gpu_index: int | None
    xid: int
    time_s: float
    gpu_instance_id: int | None = None
    compute_instance_id: int | None = None


class XidSource(Protocol):
    """What the collector needs from an XID watcher."""

    def start(self) -> bool: ...

    def stop(self) -> None: ...

    def drain(self) -> list[XidEvent]: ...


class XidWatcherFactory(Protocol):
    """Builds an `XidSource` for the collector's GPUs (`XidWatcher` itself is one)."""

    def __call__(
        self, nvml: Any, handles_by_index: Mapping[int, Any], *, clock: Callable[[], float]
    ) -> XidSource: ...


class XidWatcher:
    """Watches `handles_by_index` (GPU index -> NVML handle) for XID events on one thread."""

    def __init__(
        self,
        nvml: Any,
        handles_by_index: Mapping[int, Any],
        *,
        wait_ms: int = 1000,
        clock: Callable[[], float] = time.monotonic,
        max_events: int = 1024,
    ) -> None:
        self._nvml = nvml
        self._handles = dict(handles_by_index)
        self._wait_ms = wait_ms
        self._clock = clock
        self._events: deque[XidEvent] = deque(maxlen=max_events)
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._event_set: Any = None
        self._index_by_key: dict[Hashable, int] = {}
        self._received = 0
        self._dropped = 0
        self._thread_cpu_s = 0.0
        self._logged_errors: set[int] = set()

    @property
    def watched_gpus(self) -> list[int]:
        """Indices of the GPUs registered for XID events."""
        return sorted(self._index_by_key.values())

    @property
    def running(self) -> bool:
        """Whether the watcher thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def received(self) -> int:
        """Events received since start, drained or not (dropped ones included)."""
        return self._received

    @property
    def dropped(self) -> int:
        """Events dropped because the queue was full."""
        return self._dropped

    @property
    def thread_cpu_s(self) -> float:
        """CPU time the watcher thread has used, as of its last wake-up."""
        return self._thread_cpu_s

    def start(self) -> bool:
        """Register the GPUs and start the thread; False when no GPU can report XIDs."""
        if self._thread is not None:
            return True
        try:
            self._event_set = self._nvml.nvmlEventSetCreate()
        except pynvml.NVMLError as exc:
            log.warning("XID events unavailable (nvmlEventSetCreate: %s): XIDs not reported", exc)
            return False
        for index, handle in self._handles.items():
            self._register(index, handle)
        if not self._index_by_key:
            self._free_set()
            log.warning("no GPU reports XID events: XIDs not reported")
            return False
        self._thread = threading.Thread(target=self._run, name="sentinel-xid-watcher", daemon=True)
        self._thread.start()
        return True

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop the thread (within one `wait_ms`) and free the event set."""
        self._stopping.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
            if thread.is_alive():
                log.warning("XID watcher did not stop within %.1f s; leaving it", timeout_s)
                return
        self._free_set()

    def drain(self) -> list[XidEvent]:
        """Every queued event, oldest first; the queue is empty afterwards."""
        with self._changed:
            events = list(self._events)
            self._events.clear()
        return events

    def wait_for(self, count: int, timeout_s: float) -> bool:
        """Block until `received >= count` or `timeout_s` passes; True when reached."""
        with self._changed:
            return self._changed.wait_for(lambda: self._received >= count, timeout_s)

    def _register(self, index: int, handle: Any) -> None:
        try:
            self._nvml.nvmlDeviceRegisterEvents(handle, XID_EVENT, self._event_set)
        except pynvml.NVMLError_NotSupported:
            log.info("GPU %d does not report XID events (Not Supported): not watched", index)
        except pynvml.NVMLError as exc:
            log.warning("GPU %d: registering for XID events failed: %s: not watched", index, exc)
        else:
            self._index_by_key[_handle_key(handle)] = index

    def _run(self) -> None:
        wait = getattr(self._nvml, "nvmlEventSetWait_v2", None) or self._nvml.nvmlEventSetWait
        try:
            while not self._stopping.is_set():
                try:
                    data = wait(self._event_set, self._wait_ms)
                except pynvml.NVMLError_FunctionNotFound:
                    wait = self._nvml.nvmlEventSetWait  # a driver older than the _v2 call
                except pynvml.NVMLError as exc:
                    if exc.value != _TIMEOUT:
                        self._wait_failed(exc)
                else:
                    self._record(data)
                self._thread_cpu_s = time.thread_time()
        except Exception:
            log.exception("XID watcher failed: XIDs are no longer reported")

    def _wait_failed(self, exc: pynvml.NVMLError) -> None:
        if exc.value not in self._logged_errors:
            self._logged_errors.add(exc.value)
            log.warning("waiting for XID events failed: %s (not logged again)", exc)
        self._stopping.wait(self._wait_ms / 1000.0)  # no busy loop on a persistent error

    def _record(self, data: Any) -> None:
        if not int(data.eventType) & XID_EVENT:
            return
        event = XidEvent(
            gpu_index=self._index_of(data.device),
            xid=int(data.eventData),
            time_s=self._clock(),
            gpu_instance_id=_instance(data, "gpuInstanceId"),
            compute_instance_id=_instance(data, "computeInstanceId"),
        )
        with self._changed:
            if len(self._events) == self._events.maxlen:
                self._dropped += 1
                if self._dropped == 1:
                    log.warning("XID queue full: dropping the oldest events (counted, not logged)")
            self._events.append(event)
            self._received += 1
            self._changed.notify_all()

    def _index_of(self, device: Any) -> int | None:
        index = self._index_by_key.get(_handle_key(device))
        if index is not None:
            return index
        try:
            return int(self._nvml.nvmlDeviceGetIndex(device))
        except pynvml.NVMLError:
            return None

    def _free_set(self) -> None:
        event_set, self._event_set = self._event_set, None
        if event_set is None:
            return
        try:
            self._nvml.nvmlEventSetFree(event_set)
        except pynvml.NVMLError as exc:
            log.warning("freeing the XID event set failed: %s", exc)


def _handle_key(handle: Any) -> Hashable:
    """A device handle as a dict key: the address for NVML's ctypes pointers, else itself."""
    if isinstance(handle, ctypes._Pointer):
        return ctypes.cast(handle, ctypes.c_void_p).value
    return handle if isinstance(handle, Hashable) else id(handle)


def _instance(data: Any, name: str) -> int | None:
    value = getattr(data, name, _NO_INSTANCE)
    return None if value is None or int(value) == _NO_INSTANCE else int(value)
