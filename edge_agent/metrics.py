"""The agent's /metrics: dcgm-exporter's default GPU metrics, node metrics and agent health.

`AgentMetrics(registry, hostname=...)` registers one custom collector. The agent hands it the
latest sample (`update`) and its own counters (`set_status`); every scrape renders from those, so
a scrape costs no NVML or psutil call and never waits on the agent.

Invariants:
- dcgm-exporter compatibility: the `DCGM_FI_DEV_*` families keep dcgm-exporter's exact names,
  units, types (as its `etc/default-counters.csv` declares them: counters WITHOUT a `_total`
  suffix) and labels (`gpu`, `UUID`, `device`, `modelName`, `Hostname`, `pci_bus_id`, plus `pod`,
  `namespace`, `container` only for a GPU attributed to a workload), so its dashboards and alerts
  work unchanged. `sentinel.metrics_http` serves such bare-named counters as dcgm-exporter does.
- A value the GPU did not report (unsupported, or not yet derived) is omitted for that GPU,
  never exported as 0.
- `update` (which copies the sample) and `set_status` run on the agent's thread, `collect` on
  the HTTP server's: each swaps one immutable snapshot, so a scrape sees one consistent sample.
- Every family has HELP text; families with no samples are left out of a scrape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from edge_agent.collectors.gpu_fields import CLOCK_EVENT_REASONS
from sentinel.v1 import telemetry_pb2

GpuMetrics = telemetry_pb2.GpuMetrics
KIB_BYTES = 1024
MIB_BYTES = 1024 * 1024
_G, _C = "gauge", "counter"  # family types
_GPU_IDS = ("gpu", "UUID")
_ATTRIBUTION_LABELS = ("pod", "namespace", "container")
_HEALTH_STATES = tuple(
    (value, name.removeprefix("GPU_HEALTH_STATE_").lower())
    for name, value in telemetry_pb2.GpuHealthState.items()
    if value != telemetry_pb2.GPU_HEALTH_STATE_UNSPECIFIED
)
_KNOWN_CLOCK_EVENTS = tuple(name for _, name in CLOCK_EVENT_REASONS)


@dataclass(frozen=True)
class AgentStatus:
    """The agent's own counters and state, as of one moment."""

    spool_bytes: int = 0
    spool_batches: int = 0
    gaps_announced_total: int = 0
    batches_dropped_total: int = 0
    corrupt_records_total: int = 0
    reconnects_total: int = 0
    acks_total: int = 0
    hub_connected: bool = False
    samples_total: int = 0
    sample_cpu_seconds_total: float = 0.0


@dataclass(frozen=True)
class _DcgmField:
    """A dcgm-exporter metric read from one GpuMetrics field, divided into its unit."""

    name: str
    type: str
    field: str
    divisor: int  # MIB_BYTES rounds down, as dcgm-exporter's whole MiB do
    help: str

    def read(self, metrics: GpuMetrics) -> float | None:
        """The value in dcgm-exporter's unit; None when the GPU did not report it."""
        if _HAS_PRESENCE[self.field] and not metrics.HasField(self.field):
            return None
        value = getattr(metrics, self.field)
        return float(value // self.divisor) if self.divisor == MIB_BYTES else value / self.divisor


_HAS_PRESENCE = {field.name: field.has_presence for field in GpuMetrics.DESCRIPTOR.fields}
# dcgm-exporter's default set (etc/default-counters.csv) with the types it declares there, less
# NVLINK_BANDWIDTH_TOTAL and VGPU_LICENSE_STATUS, which GpuMetrics does not carry.
# fmt: off
_DCGM_FIELDS: tuple[_DcgmField, ...] = tuple(_DcgmField(*row) for row in (
    ("DCGM_FI_DEV_SM_CLOCK", _G, "clock_sm_mhz", 1, "SM clock frequency (in MHz)."),
    ("DCGM_FI_DEV_MEM_CLOCK", _G, "clock_memory_mhz", 1, "Memory clock frequency (in MHz)."),
    ("DCGM_FI_DEV_MEMORY_TEMP", _G, "temperature_memory_c", 1, "Memory temperature (in C)."),
    ("DCGM_FI_DEV_GPU_TEMP", _G, "temperature_gpu_c", 1, "GPU temperature (in C)."),
    ("DCGM_FI_DEV_POWER_USAGE", _G, "power_w", 1, "Power draw (in W)."),
    ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", _C, "energy_consumed_mj", 1,
     "Total energy consumed since the driver loaded (in mJ)."),
    ("DCGM_FI_DEV_PCIE_TX_THROUGHPUT", _C, "pcie_transmit_bytes_total", KIB_BYTES,
     "Total bytes transmitted over PCIe (in KB)."),
    ("DCGM_FI_DEV_PCIE_RX_THROUGHPUT", _C, "pcie_receive_bytes_total", KIB_BYTES,
     "Total bytes received over PCIe (in KB)."),
    ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", _C, "pcie_replay_total", 1, "Total PCIe retries."),
    ("DCGM_FI_DEV_GPU_UTIL", _G, "utilization_gpu_percent", 1, "GPU utilization (in %)."),
    ("DCGM_FI_DEV_MEM_COPY_UTIL", _G, "utilization_memory_percent", 1,
     "Memory utilization (in %)."),
    ("DCGM_FI_DEV_ENC_UTIL", _G, "encoder_utilization_percent", 1, "Encoder utilization (in %)."),
    ("DCGM_FI_DEV_DEC_UTIL", _G, "decoder_utilization_percent", 1, "Decoder utilization (in %)."),
    ("DCGM_FI_DEV_XID_ERRORS", _G, "last_xid", 1,
     "Value of the last XID error seen (0: none); counts per code: sentinel_gpu_xid_errors_total."),
    ("DCGM_FI_DEV_FB_FREE", _G, "memory_free_bytes", MIB_BYTES, "Framebuffer free (in MiB)."),
    ("DCGM_FI_DEV_FB_USED", _G, "memory_used_bytes", MIB_BYTES, "Framebuffer used (in MiB)."),
    ("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", _C, "remapped_rows_uncorrectable", 1,
     "Rows remapped for uncorrectable errors."),
    ("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", _C, "remapped_rows_correctable", 1,
     "Rows remapped for correctable errors."),
    ("DCGM_FI_DEV_ROW_REMAP_FAILURE", _G, "row_remap_failure", 1,
     "Whether remapping of rows has failed (1: failed)."),
))
# fmt: on


@dataclass(frozen=True)
class _GpuView:
    metrics: GpuMetrics
    ids: tuple[str, str]  # values of _GPU_IDS
    dcgm_labels: Mapping[str, str]


@dataclass(frozen=True)
class _Snapshot:
    host: telemetry_pb2.HostMetrics | None = None
    gpus: tuple[_GpuView, ...] = ()


class AgentMetrics:
    """The agent's metrics collector, registered on `registry` at construction."""

    def __init__(self, registry: CollectorRegistry, *, hostname: str) -> None:
        self.registry = registry
        self._hostname = hostname
        self._snapshot = _Snapshot()
        self._status: AgentStatus | Callable[[], AgentStatus] = AgentStatus()
        registry.register(self)

    def update(
        self,
        sample: telemetry_pb2.Sample,
        gpus: Sequence[telemetry_pb2.GpuInventory],
        attributions: Mapping[str, telemetry_pb2.GpuAttribution] | None = None,
    ) -> None:
        """Publish the latest sample. `gpus` names the models and PCI ids; `attributions`, by
        GPU UUID, overrides the workload a sample's GpuMetrics.attribution carries."""
        copied = telemetry_pb2.Sample()
        copied.CopyFrom(sample)
        by_uuid = {inventory.uuid: inventory for inventory in gpus}
        by_index = {inventory.index: inventory for inventory in gpus}
        views = []
        for metrics in copied.gpus:
            inventory = by_uuid.get(metrics.uuid) or by_index.get(metrics.index)
            attribution = (attributions or {}).get(metrics.uuid, metrics.attribution)
            views.append(self._view(metrics, inventory, attribution))
        host = copied.host if copied.HasField("host") else None
        self._snapshot = _Snapshot(host=host, gpus=tuple(views))

    def set_status(self, status: AgentStatus | Callable[[], AgentStatus]) -> None:
        """Publish the agent's own counters: a snapshot, or a function read at every scrape
        (on the HTTP server's thread, so it must only read)."""
        self._status = status

    def collect(self) -> Iterator[Metric]:
        """Called by prometheus_client on every scrape."""
        status = self._status() if callable(self._status) else self._status
        yield from (f for f in _families(self._snapshot, status) if f.samples)

    def describe(self) -> Iterable[Metric]:
        """The families this collector may produce, so the registry refuses a duplicate."""
        return _families(_Snapshot(host=telemetry_pb2.HostMetrics()), AgentStatus())

    def _view(
        self,
        metrics: GpuMetrics,
        inventory: telemetry_pb2.GpuInventory | None,
        attribution: telemetry_pb2.GpuAttribution,
    ) -> _GpuView:
        labels = {
            "gpu": str(metrics.index),
            "UUID": metrics.uuid,
            "device": f"nvidia{metrics.index}",
            "modelName": inventory.name if inventory else "",
            "Hostname": self._hostname,
            "pci_bus_id": inventory.pci_bus_id if inventory else "",
        }
        if attribution.pod or attribution.namespace or attribution.container:
            labels |= {name: getattr(attribution, name) for name in _ATTRIBUTION_LABELS}
        return _GpuView(metrics, (str(metrics.index), metrics.uuid), labels)


def _families(snapshot: _Snapshot, status: AgentStatus) -> list[Metric]:
    families = _gpu_families(snapshot.gpus)
    if snapshot.host is not None:
        families += _node_families(snapshot.host)
    return families + _scalars("sentinel_agent_", _AGENT_FAMILIES, status)


def _gpu_families(gpus: Sequence[_GpuView]) -> list[Metric]:
    families: list[Metric] = []
    for spec in _DCGM_FIELDS:
        family = Metric(spec.name, spec.help, spec.type)
        for gpu in gpus:
            value = spec.read(gpu.metrics)
            if value is not None:
                family.add_sample(spec.name, dict(gpu.dcgm_labels), value)
        families.append(family)
    xids = CounterMetricFamily(
        "sentinel_gpu_xid_errors", "XID errors seen, per XID code.", labels=(*_GPU_IDS, "xid")
    )
    health = GaugeMetricFamily(
        "sentinel_gpu_health_state",
        "GPU health as judged by the agent: 1 for the current state, 0 for the others.",
        labels=(*_GPU_IDS, "state"),
    )
    clock_events = GaugeMetricFamily(
        "sentinel_gpu_clock_event_active",
        "1 while this clock-event reason (throttling, idle, ...) holds the GPU's clocks down.",
        labels=(*_GPU_IDS, "reason"),
    )
    for gpu in gpus:
        metrics = gpu.metrics
        for xid, count in sorted(metrics.xid_counts.items()):
            xids.add_metric([*gpu.ids, str(xid)], count)
        if metrics.health.state != telemetry_pb2.GPU_HEALTH_STATE_UNSPECIFIED:
            for value, state in _HEALTH_STATES:
                health.add_metric([*gpu.ids, state], float(metrics.health.state == value))
        if metrics.HasField("clock_event_reasons"):
            active = set(metrics.clock_event_reason_names)
            for reason in [*_KNOWN_CLOCK_EVENTS, *sorted(active - set(_KNOWN_CLOCK_EVENTS))]:
                clock_events.add_metric([*gpu.ids, reason], float(reason in active))
    return [*families, xids, health, clock_events]


_ScalarRow = tuple[str, str, str, float, str]
# (name after `sentinel_node_`, type, HostMetrics field, divisor, help)
# fmt: off
_NODE_FAMILIES: tuple[_ScalarRow, ...] = (
    ("cpu_utilization_ratio", _G, "cpu_percent", 100.0,
     "Busy share of all cores since the previous sample (0-1)."),
    ("memory_used_bytes", _G, "memory_used_bytes", 1, "Memory in use, in bytes."),
    ("memory_available_bytes", _G, "memory_available_bytes", 1,
     "Memory available to new work without swapping, in bytes."),
    ("memory_total_bytes", _G, "memory_total_bytes", 1, "Total memory, in bytes."),
    ("load1", _G, "load1", 1, "1-minute load average."),
    ("load5", _G, "load5", 1, "5-minute load average."),
    ("load15", _G, "load15", 1, "15-minute load average."),
    ("disk_read_bytes", _C, "disk_read_bytes_total", 1, "Bytes read from all disks since boot."),
    ("disk_written_bytes", _C, "disk_write_bytes_total", 1,
     "Bytes written to all disks since boot."),
    ("network_receive_bytes", _C, "network_receive_bytes_total", 1,
     "Bytes received on all interfaces but loopback since boot."),
    ("network_transmit_bytes", _C, "network_transmit_bytes_total", 1,
     "Bytes sent on all interfaces but loopback since boot."),
)
# fmt: on


def _scalars(prefix: str, table: Sequence[_ScalarRow], source: object) -> list[Metric]:
    """Unlabelled families whose values are attributes of `source`."""
    return [
        (GaugeMetricFamily if kind == _G else CounterMetricFamily)(
            prefix + name, help_text, float(getattr(source, attribute)) / divisor
        )
        for name, kind, attribute, divisor, help_text in table
    ]


def _node_families(host: telemetry_pb2.HostMetrics) -> list[Metric]:
    families = _scalars("sentinel_node_", _NODE_FAMILIES, host)
    disk_used = GaugeMetricFamily(
        "sentinel_node_disk_used_bytes", "Bytes used on a file system.", labels=["mountpoint"]
    )
    disk_total = GaugeMetricFamily(
        "sentinel_node_disk_total_bytes", "Size of a file system in bytes.", labels=["mountpoint"]
    )
    for disk in host.disks:
        disk_used.add_metric([disk.mountpoint], disk.used_bytes)
        disk_total.add_metric([disk.mountpoint], disk.total_bytes)
    return [*families, disk_used, disk_total]


# (name after `sentinel_agent_`, type, AgentStatus attribute, divisor, help)
# fmt: off
_AGENT_FAMILIES: tuple[_ScalarRow, ...] = (
    ("spool_bytes", _G, "spool_bytes", 1, "Bytes of telemetry spooled, not yet acknowledged."),
    ("spool_batches", _G, "spool_batches", 1, "Batches spooled, not yet acknowledged."),
    ("telemetry_gaps", _C, "gaps_announced_total", 1,
     "Gaps (ranges of batches the agent had to drop) announced to the hub."),
    ("batches_dropped", _C, "batches_dropped_total", 1,
     "Batches dropped because the spool reached its byte bound."),
    ("spool_corrupt_records", _C, "corrupt_records_total", 1,
     "Spool records skipped because they failed their checksum."),
    ("reconnects", _C, "reconnects_total", 1, "Reconnections to the hub."),
    ("acks", _C, "acks_total", 1, "Acknowledgements received from the hub."),
    ("hub_connected", _G, "hub_connected", 1, "1 while the telemetry stream to the hub is up."),
    ("samples", _C, "samples_total", 1, "Samples taken."),
    ("sample_cpu_seconds", _C, "sample_cpu_seconds_total", 1, "CPU time spent taking samples."),
)
# fmt: on


__all__ = ["AgentMetrics", "AgentStatus"]
