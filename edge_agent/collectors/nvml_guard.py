"""What the GPU collector does when an NVML call fails, for one GPU.

Invariants:
- "Not Supported" (`NVMLError_NotSupported`, return code 3) is a fact about the GPU, not an
  error: the metric is named once in `unsupported`, never logged as a failure, and never asked
  for again (the answer does not change while the driver is loaded).
- Any other NVML error is logged once per (GPU, metric) and the sample carries on without that
  value; the call is tried again next sample, since such errors may be transient.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pynvml

log = logging.getLogger("edge_agent.collectors.gpu")


class NvmlGuard:
    """Error bookkeeping for one GPU: its unsupported metrics and the failures already logged.

    `label` names the GPU in log lines, e.g. "GPU 3 (GPU-8f2c...)".
    """

    def __init__(self, label: str) -> None:
        self.label = label
        self.unsupported: list[str] = []
        self._logged: set[str] = set()

    def is_unsupported(self, metric: str) -> bool:
        return metric in self.unsupported

    def mark_unsupported(self, metric: str) -> None:
        if metric not in self.unsupported:
            self.unsupported.append(metric)

    def report(self, metric: str, error: BaseException) -> None:
        """Log a failed read of `metric`, the first time only."""
        if metric in self._logged:
            return
        self._logged.add(metric)
        log.warning(
            "%s: reading %s failed: %s (further failures of it are not logged)",
            self.label,
            metric,
            error,
        )

    def call(self, metrics: tuple[str, ...], read: Callable[..., Any], *args: Any) -> Any | None:
        """`read(*args)`, or None when it fails; `metrics` are the values the read provides."""
        if self.is_unsupported(metrics[0]):
            return None
        try:
            return read(*args)
        except pynvml.NVMLError_NotSupported:
            for metric in metrics:
                self.mark_unsupported(metric)
        except pynvml.NVMLError as exc:
            self.report(metrics[0], exc)
        return None

    def field_failed(self, metric: str, code: int, *, has_fallback: bool = False) -> None:
        """Record a field whose `nvmlReturn` was not success."""
        if code == pynvml.NVML_ERROR_NOT_SUPPORTED:
            if not has_fallback:
                self.mark_unsupported(metric)
            return
        self.report(metric, pynvml.NVMLError(code))
