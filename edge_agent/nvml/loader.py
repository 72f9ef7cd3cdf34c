"""Choose where GPU data comes from: the NVML library, a replayed capture, or nothing.

`open_gpu_backend` returns an *initialised* nvml-like object (the `pynvml` module itself, or a
`ReplayNvml`) and the description the agent reports as `HostInventory.gpu_backend`:
"nvml", "replay:<source>" or "none". A node without the NVML library is not an error: the agent
runs host-only and says so in one warning line (likewise when the driver is not loaded). Any
other NVML failure at start raises `FailedPrecondition` (reason `NVML_INIT_FAILED`). A replay
source that cannot be used is an operator's mistake and raises `ConfigError` (reason
`BAD_REPLAY_SOURCE`) before anything starts.
"""

from __future__ import annotations

import logging
from typing import Any

import pynvml

from edge_agent.nvml.capture import BAD_REPLAY_SOURCE, load_capture
from edge_agent.nvml.replay import ReplayNvml
from sentinel.errors import ConfigError, FailedPrecondition

log = logging.getLogger(__name__)

NO_GPU_BACKEND = "none"
NVML_BACKEND = "nvml"
NVML_INIT_FAILED = "NVML_INIT_FAILED"


def open_gpu_backend(replay: str | None, replay_gpus: int = 1) -> tuple[Any | None, str]:
    """(initialised nvml-like module or None, backend description)."""
    if replay is not None:
        return _open_replay(replay, replay_gpus)
    return _open_nvml()


def _open_replay(spec: str, replay_gpus: int) -> tuple[Any, str]:
    if replay_gpus < 1:
        raise ConfigError(
            f"replay GPU count must be at least 1, got {replay_gpus}",
            reason=BAD_REPLAY_SOURCE,
            source=spec,
        )
    backend = ReplayNvml(load_capture(spec), gpus=replay_gpus)
    backend.nvmlInit()
    return backend, backend.backend_name


def _open_nvml() -> tuple[Any | None, str]:
    try:
        pynvml.nvmlInit()
    except (OSError, pynvml.NVMLError_LibraryNotFound):
        log.warning("NVML library not found: running host-only")
        return None, NO_GPU_BACKEND
    except pynvml.NVMLError_DriverNotLoaded:
        log.warning("NVIDIA driver not loaded: running host-only")
        return None, NO_GPU_BACKEND
    except pynvml.NVMLError as exc:
        raise FailedPrecondition(
            f"NVML failed to initialise: {exc}", reason=NVML_INIT_FAILED
        ) from exc
    return pynvml, NVML_BACKEND
