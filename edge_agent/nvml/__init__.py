"""GPU data sources for the agent: the NVML library (pynvml) or a replayed capture of a real GPU.

`open_gpu_backend` picks one. Whatever it returns answers the pynvml API, so the collector has one
code path; a replay adds only `advance()`, which the collector calls once per sample, and
`inject_xid()`. XID events for a replay come from a JSON-lines file (`load_xid_events`).
"""

from edge_agent.nvml.capture import BAD_REPLAY_SOURCE, BUILTIN_CAPTURES, Capture, load_capture
from edge_agent.nvml.loader import NO_GPU_BACKEND, NVML_BACKEND, open_gpu_backend
from edge_agent.nvml.replay import ReplayHandle, ReplayNvml
from edge_agent.nvml.xid_file import BAD_XID_FILE, ScheduledXid, load_xid_events

__all__ = [
    "BAD_REPLAY_SOURCE",
    "BAD_XID_FILE",
    "BUILTIN_CAPTURES",
    "NO_GPU_BACKEND",
    "NVML_BACKEND",
    "Capture",
    "ReplayHandle",
    "ReplayNvml",
    "ScheduledXid",
    "load_capture",
    "load_xid_events",
    "open_gpu_backend",
]
