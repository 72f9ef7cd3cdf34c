"""GPU data sources for the agent: the NVML library (pynvml) or a replayed capture of a real GPU.

`open_gpu_backend` picks one. Whatever it returns answers the pynvml API, so the collector has one
code path; a replay adds only `advance()`, which the collector calls once per sample.
"""

from edge_agent.nvml.capture import BAD_REPLAY_SOURCE, BUILTIN_CAPTURES, Capture, load_capture
from edge_agent.nvml.loader import NO_GPU_BACKEND, NVML_BACKEND, open_gpu_backend
from edge_agent.nvml.replay import ReplayHandle, ReplayNvml

__all__ = [
    "BAD_REPLAY_SOURCE",
    "BUILTIN_CAPTURES",
    "NO_GPU_BACKEND",
    "NVML_BACKEND",
    "Capture",
    "ReplayHandle",
    "ReplayNvml",
    "load_capture",
    "open_gpu_backend",
]
