"""The replay's NVML event sets: injected XID events delivered through `nvmlEventSetWait`.

`ReplayEvents` implements `nvmlEventSetCreate`, `nvmlDeviceRegisterEvents`,
`nvmlEventSetWait(_v2)` and `nvmlEventSetFree` for `ReplayNvml`, so the XID watcher runs the same
code on a replay as on a real GPU. Its events come from the schedule (`edge_agent.nvml.xid_file`)
and from `inject()`; an event is due once the injected clock is `at_s` past the replay's start.

Invariants:
- Every event set sees every event, once, in time order, if the event's GPU is registered for
  XID events on that set when the event is due; otherwise that set drops it (as NVML records
  nothing for devices not registered).
- A wait returns the next due event or raises `NVMLError(NVML_ERROR_TIMEOUT)` after `timeoutms`
  of real time. It blocks on a `threading.Condition`, bounded by the timeout and the next event's
  due time; `inject()` and `free()` wake it. No busy loop: when the clock does not advance on its
  own (a test's fake clock), the wait sleeps until the timeout or a wake-up.
- Thread-safe: the watcher thread waits while the collector samples in another thread.
- Only XID events exist here. Registering any other event type raises "Not Supported"; a capture
  whose `queries["supported_event_types"]` records an error or another mask overrides that.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pynvml

from edge_agent.nvml.capture import recorded_answer
from edge_agent.nvml.xid_file import ScheduledXid

XID_EVENT = int(pynvml.nvmlEventTypeXidCriticalError)
NO_INSTANCE = 0xFFFFFFFF
# Shortest wait toward an event due "now": keeps a clock that moves in coarse steps from spinning.
_MIN_WAIT_S = 0.001


@dataclass(frozen=True)
class ReplayEventSet:
    """What `nvmlEventSetCreate` returns here."""

    id: int


@dataclass(frozen=True)
class ReplayEventData:
    """Shaped like pynvml's `c_nvmlEventData_t`; `device` is the replay's handle."""

    device: Any
    eventType: int
    eventData: int
    gpuInstanceId: int = NO_INSTANCE
    computeInstanceId: int = NO_INSTANCE


@dataclass
class _SetState:
    pending: list[tuple[float, int, ScheduledXid]]
    registered: dict[int, int] = field(default_factory=dict)  # GPU index -> event type mask


class ReplayEvents:
    """Event sets over one schedule. `device_index(handle)` validates a handle, as NVML does."""

    def __init__(
        self,
        schedule: Iterable[ScheduledXid],
        *,
        clock: Callable[[], float],
        device_index: Callable[[Any], int],
        handle_of: Callable[[int], Any],
        queries: Mapping[str, Any],
    ) -> None:
        self._clock = clock
        self._start_s = clock()
        self._device_index = device_index
        self._handle_of = handle_of
        self._queries = queries
        self._order = itertools.count()
        self._all = [(event.at_s, next(self._order), event) for event in schedule]
        self._sets: dict[int, _SetState] = {}
        self._set_ids = itertools.count(1)
        self._changed = threading.Condition()

    def supported_types(self, handle: Any) -> int:
        """nvmlDeviceGetSupportedEventTypes: XID only, unless the capture says otherwise."""
        self._device_index(handle)
        entry = self._queries.get("supported_event_types", XID_EVENT)
        return int(recorded_answer(entry))

    def create(self) -> ReplayEventSet:
        with self._changed:
            event_set = ReplayEventSet(next(self._set_ids))
            pending = list(self._all)
            heapq.heapify(pending)
            self._sets[event_set.id] = _SetState(pending)
            return event_set

    def register(self, handle: Any, event_types: int, event_set: Any) -> None:
        index = self._device_index(handle)
        if event_types & ~self.supported_types(handle):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        with self._changed:
            state = self._state(event_set)
            state.registered[index] = state.registered.get(index, 0) | event_types

    def free(self, event_set: Any) -> None:
        with self._changed:
            self._state(event_set)
            del self._sets[event_set.id]
            self._changed.notify_all()

    def inject(self, gpu: int, xid: int, at_s: float | None = None) -> None:
        """Schedule XID `xid` on GPU `gpu` at `at_s` (default: now) and wake waiting sets."""
        self._handle_of(gpu)  # raises for a GPU the replay does not have
        when_s = self._elapsed_s() if at_s is None else at_s
        with self._changed:
            entry = (when_s, next(self._order), ScheduledXid(when_s, gpu, xid))
            self._all.append(entry)
            for state in self._sets.values():
                heapq.heappush(state.pending, entry)
            self._changed.notify_all()

    def wait(self, event_set: Any, timeout_ms: int) -> ReplayEventData:
        """The next due event for `event_set`, or NVMLError(TIMEOUT) after `timeout_ms`."""
        deadline_s = time.monotonic() + max(int(timeout_ms), 0) / 1000.0
        clock_runs = True
        with self._changed:
            while True:
                state = self._state(event_set)
                now_s = self._elapsed_s()
                event = _pop_due(state, now_s)
                if event is not None:
                    return ReplayEventData(self._handle_of(event.gpu), XID_EVENT, event.xid)
                remaining_s = deadline_s - time.monotonic()
                if remaining_s <= 0:
                    raise pynvml.NVMLError(pynvml.NVML_ERROR_TIMEOUT)
                if clock_runs and state.pending:
                    remaining_s = min(remaining_s, max(state.pending[0][0] - now_s, _MIN_WAIT_S))
                self._changed.wait(remaining_s)
                clock_runs = self._elapsed_s() != now_s

    def _elapsed_s(self) -> float:
        return self._clock() - self._start_s

    def _state(self, event_set: Any) -> _SetState:
        state = self._sets.get(event_set.id) if isinstance(event_set, ReplayEventSet) else None
        if state is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return state


def _pop_due(state: _SetState, now_s: float) -> ScheduledXid | None:
    """The earliest due event whose GPU is registered for XIDs; due ones that are not, dropped."""
    while state.pending and state.pending[0][0] <= now_s:
        _, _, event = heapq.heappop(state.pending)
        if state.registered.get(event.gpu, 0) & XID_EVENT:
            return event
    return None
