"""The replay's position in a capture's 5 Hz trace, and the counters integrated along it.

Each `advance()` moves to the next trace point, looping after the last. Counters stay monotonic
across loops, as a real GPU's do:
- PCIe byte counters are synthesised: the new point's `pcie_tx_kbps`/`pcie_rx_kbps` (KB/s, with
  NVML's KB = 1024 bytes) times the clock time elapsed since the previous advance. A collector
  that derives a rate from two counter readings therefore recovers exactly the trace's rate.
- Energy follows the trace's `energy_mj`, plus one trace span per completed loop.

The clock is injected so tests control elapsed time without sleeping.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pynvml

from edge_agent.nvml.capture import Capture

KIB_BYTES = 1024
TX = "tx"
RX = "rx"
_PCIE_FIELD = {
    TX: pynvml.NVML_FI_DEV_PCIE_COUNT_TX_BYTES,
    RX: pynvml.NVML_FI_DEV_PCIE_COUNT_RX_BYTES,
}
_PCIE_RATE_KEY = {TX: "pcie_tx_kbps", RX: "pcie_rx_kbps"}


class TraceCursor:
    """Current trace point plus synthesised PCIe and energy counters. Not thread-safe."""

    def __init__(self, capture: Capture, clock: Callable[[], float]) -> None:
        self._trace = capture.trace
        self._clock = clock
        self._position = -1
        self._loops = 0
        self._last_advance_s: float | None = None
        self._pcie_bytes = {
            way: _initial_counter(capture, field) for way, field in _PCIE_FIELD.items()
        }
        self._energy_loop_mj = _energy_span_mj(capture)

    @property
    def point(self) -> Mapping[str, Any]:
        """The current point; before the first advance, the first point."""
        return self._trace[max(self._position, 0)]

    @property
    def position(self) -> int:
        """Index of the current point in the trace (-1 before the first advance)."""
        return self._position

    def advance(self) -> None:
        """Move to the next point (looping) and integrate the PCIe counters up to now."""
        now_s = self._clock()
        self._position += 1
        if self._position == len(self._trace):
            self._position = 0
            self._loops += 1
        if self._last_advance_s is not None:
            elapsed_s = max(now_s - self._last_advance_s, 0.0)
            for way, key in _PCIE_RATE_KEY.items():
                self._pcie_bytes[way] += float(self.point[key]) * KIB_BYTES * elapsed_s
        self._last_advance_s = now_s

    def pcie_bytes(self, way: str) -> int:
        """Bytes moved in direction `way` (TX or RX) since the counter's origin, unwrapped."""
        return int(self._pcie_bytes[way])

    def energy_mj(self) -> int:
        """Total energy counter in mJ, monotonic across loops."""
        return int(self.point["energy_mj"]) + self._loops * self._energy_loop_mj


def _initial_counter(capture: Capture, field_id: int) -> float:
    entry = capture.fields.get(field_id, {})
    return float(entry.get("value", 0)) if "value" in entry else 0.0


def _energy_span_mj(capture: Capture) -> int:
    """Energy of one pass through the trace, including the step from its last point to its first."""
    first = int(capture.trace[0]["energy_mj"])
    last = int(capture.trace[-1]["energy_mj"])
    steps = len(capture.trace) - 1
    mean_step = (last - first) / steps if steps else 0.0
    return max(int(last - first + mean_step), 0)
