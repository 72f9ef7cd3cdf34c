"""Choose where GPU data comes from: the NVML library, a replayed capture, or nothing.

`open_gpu_backend` returns an *initialised* nvml-like object (the `pynvml` module itself, or a
`ReplayNvml`) and the description the agent reports as `HostInventory.gpu_backend`:
"nvml", "replay:<source>" or "none". A node without the NVML library is not an error: the agent
runs host-only and says so in one warning line (likewise when the driver is not loaded). Any
other NVML failure at start raises `FailedPrecondition` (reason `NVML_INIT_FAILED`). A replay
source that cannot be used is an operator's mistake and raises `ConfigError` (reason
`BAD_REPLAY_SOURCE`) before anything starts; so does an XID event file that cannot be used
(reason `BAD_XID_FILE`, see `edge_agent.nvml.xid_file`), or one given without a replay: events
are injected into a replay only, never into a real GPU.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pynvml

from edge_agent.nvml.capture import BAD_REPLAY_SOURCE, load_capture
from edge_agent.nvml.replay import ReplayNvml
from edge_agent.nvml.xid_file import BAD_XID_FILE, load_xid_events
from sentinel.errors import ConfigError, FailedPrecondition

log = logging.getLogger(__name__)

NO_GPU_BACKEND = "none"
NVML_BACKEND = "nvml"
NVML_INIT_FAILED = "NVML_INIT_FAILED"


def open_gpu_backend(
    replay: str | None, replay_gpus: int = 1, *, xid_events: Path | None = None
) -> tuple[Any | None, str]:
    """(initialised nvml-like module or None, backend description).

    `xid_events`: a JSON-lines file of XID events the replay raises on its clock.
    """
    if replay is not None:
        return _open_replay(replay, replay_gpus, xid_events)
    if xid_events is not None:
        raise ConfigError(
            "an XID event file needs a replay source: events cannot be injected into real GPUs",
            reason=BAD_XID_FILE,
            source=str(xid_events),
        )
    return _open_nvml()


def _open_replay(spec: str, replay_gpus: int, xid_events: Path | None) -> tuple[Any, str]:
    if replay_gpus < 1:
        raise ConfigError(
            f"replay GPU count must be at least 1, got {replay_gpus}",
            reason=BAD_REPLAY_SOURCE,
            source=spec,
        )
    capture = load_capture(spec)
    schedule = [] if xid_events is None else load_xid_events(xid_events, gpus=replay_gpus)
    backend = ReplayNvml(capture, gpus=replay_gpus, xid_events=schedule)
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
