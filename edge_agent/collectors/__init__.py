"""The agent's collectors: host metrics (psutil) and GPU metrics (NVML or a replay).

Both are synchronous and blocking by design; the agent calls them in a worker thread, never on
the event loop.
"""

from edge_agent.collectors.gpu import GpuCollector
from edge_agent.collectors.gpu_fields import decode_clock_event_reasons
from edge_agent.collectors.gpu_inventory import GpuSystemInfo
from edge_agent.collectors.host import HostCollector

__all__ = ["GpuCollector", "GpuSystemInfo", "HostCollector", "decode_clock_event_reasons"]
