"""Both /metrics endpoints over real HTTP on 127.0.0.1:0, checked by the real `promtool`.

The agent's endpoint is fed by the real collectors (replayed H200 capture, this host's psutil)
and must match dcgm-exporter name for name, label for label and value for value. promtool must
find nothing, except the lints that dcgm-exporter's own names trigger (see DCGM_TOLERATED).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry

from edge_agent.collectors.gpu import GpuCollector
from edge_agent.collectors.host import HostCollector
from edge_agent.metrics import AgentMetrics, AgentStatus
from edge_agent.nvml.loader import open_gpu_backend
from hub.metrics import HubMetrics, gap_reason_label
from sentinel.errors import ConfigError, InvalidArgument
from sentinel.metrics_http import MetricsServer, serve_metrics
from sentinel.v1 import telemetry_pb2 as pb

MIB = 1024 * 1024
DCGM_LABELS = {"gpu", "UUID", "device", "modelName", "Hostname", "pci_bus_id"}
ATTRIBUTION_LABELS = {"pod", "namespace", "container"}
# etc/default-counters.csv of dcgm-exporter declares exactly these as counters.
DCGM_COUNTERS = {
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
    "DCGM_FI_DEV_PCIE_TX_THROUGHPUT",
    "DCGM_FI_DEV_PCIE_RX_THROUGHPUT",
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
}
# promtool lints that dcgm-exporter's exact names trigger, tolerated on DCGM_FI_* series only:
# `modelName` is camelCase (`UUID` and `Hostname` do not match promtool's [a-z][A-Z] rule), its
# counters have no `_total` suffix, and DCGM_FI_DEV_PCIE_REPLAY_COUNTER names its type.
DCGM_TOLERATED = (
    "label names should be written in 'snake_case' not 'camelCase'",
    'counter metrics should have "_total" suffix',
    "metric name should not include type 'counter'",
)
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Scrape:
    """One parsed text-format exposition."""

    text: str
    content_type: str
    types: dict[str, str]
    helps: dict[str, str]
    samples: list[tuple[str, dict[str, str], float]]

    def series(self, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
        return [
            (found, value)
            for sample_name, found, value in self.samples
            if sample_name == name and labels.items() <= found.items()
        ]

    def value(self, name: str, **labels: str) -> float:
        matches = self.series(name, **labels)
        assert len(matches) == 1, f"{name}{labels}: {len(matches)} series\n{self.text}"
        return matches[0][1]


def scrape(url: str, accept: str | None = None) -> Scrape:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
        content_type = response.headers["Content-Type"]
    types, helps, samples = {}, {}, []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line[7:].split(" ")
            types[name] = kind
        elif line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            helps[name] = help_text
        elif line:
            match = _SAMPLE.match(line)
            assert match, f"unparsable line: {line!r}"
            labels = dict(_LABEL.findall(match.group(2) or ""))
            samples.append((match.group(1), labels, float(match.group(3))))
    return Scrape(text, content_type, types, helps, samples)


def promtool_findings(text: str, *, tolerate_dcgm: bool) -> list[str]:
    """What `promtool check metrics` reports, less the tolerated dcgm-exporter lints."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail(
            "promtool not found: .ci/run (scripts/test.sh) installs Debian's prometheus package; "
            "locally run `apt-get install prometheus`"
        )
    result = subprocess.run(
        [promtool, "check", "metrics"],
        check=False,
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode in (0, 3), f"promtool failed ({result.returncode}): {lines}"

    def tolerated(line: str) -> bool:
        name, _, message = line.partition(" ")
        return tolerate_dcgm and name.startswith("DCGM_FI_") and message in DCGM_TOLERATED

    findings = [line for line in lines if not tolerated(line)]
    print("\n".join(findings))
    return findings


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def served(registry: CollectorRegistry) -> Iterator[MetricsServer]:
    server = serve_metrics(registry, "127.0.0.1:0")
    yield server
    server.close()


@dataclass(frozen=True)
class Observed:
    sample: pb.Sample
    gpus: list[pb.GpuInventory]
    hostname: str


@pytest.fixture(scope="module")
def observed() -> Observed:
    """Two replayed H200s and this host, sampled twice (so PCIe rates exist), plus the
    attribution, XIDs and health the collectors do not produce by themselves."""
    nvml, _ = open_gpu_backend("builtin:h200", replay_gpus=2)
    gpu_collector, host_collector = GpuCollector(nvml), HostCollector()
    inventories = gpu_collector.start()
    gpu_collector.sample()
    host_collector.sample()
    sample = pb.Sample(host=host_collector.sample(), gpus=gpu_collector.sample())
    gpu_collector.close()
    first, second = sample.gpus
    assert first.HasField("pcie_transmit_bytes_per_second")
    second.attribution.CopyFrom(pb.GpuAttribution(namespace="ml", pod="train-0", container="main"))
    first.last_xid = 79
    first.xid_counts[79] = 2
    first.xid_counts[13] = 1
    first.health.state = pb.GPU_HEALTH_STATE_FAILED
    second.health.state = pb.GPU_HEALTH_STATE_HEALTHY
    sample.host.disks.add(
        mountpoint="/srv/scratch", device="/dev/test", total_bytes=9, used_bytes=4
    )
    return Observed(sample, inventories, host_collector.inventory().hostname)


def expected_dcgm(gpu: pb.GpuMetrics) -> dict[str, float]:
    return {
        "DCGM_FI_DEV_SM_CLOCK": gpu.clock_sm_mhz,
        "DCGM_FI_DEV_MEM_CLOCK": gpu.clock_memory_mhz,
        "DCGM_FI_DEV_MEMORY_TEMP": gpu.temperature_memory_c,
        "DCGM_FI_DEV_GPU_TEMP": gpu.temperature_gpu_c,
        "DCGM_FI_DEV_POWER_USAGE": gpu.power_w,
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": gpu.energy_consumed_mj,
        "DCGM_FI_DEV_PCIE_TX_THROUGHPUT": gpu.pcie_transmit_bytes_total / 1024,
        "DCGM_FI_DEV_PCIE_RX_THROUGHPUT": gpu.pcie_receive_bytes_total / 1024,
        "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": gpu.pcie_replay_total,
        "DCGM_FI_DEV_GPU_UTIL": gpu.utilization_gpu_percent,
        "DCGM_FI_DEV_MEM_COPY_UTIL": gpu.utilization_memory_percent,
        "DCGM_FI_DEV_ENC_UTIL": gpu.encoder_utilization_percent,
        "DCGM_FI_DEV_DEC_UTIL": gpu.decoder_utilization_percent,
        "DCGM_FI_DEV_XID_ERRORS": gpu.last_xid,
        "DCGM_FI_DEV_FB_FREE": gpu.memory_free_bytes // MIB,
        "DCGM_FI_DEV_FB_USED": gpu.memory_used_bytes // MIB,
        "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": gpu.remapped_rows_uncorrectable,
        "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS": gpu.remapped_rows_correctable,
        "DCGM_FI_DEV_ROW_REMAP_FAILURE": int(gpu.row_remap_failure),
    }


def agent_endpoint(
    registry: CollectorRegistry,
    served: MetricsServer,
    observed: Observed,
    attributions: dict[str, pb.GpuAttribution] | None = None,
) -> Scrape:
    metrics = AgentMetrics(registry, hostname=observed.hostname)
    metrics.update(observed.sample, observed.gpus, attributions)
    metrics.set_status(
        AgentStatus(
            spool_bytes=4096,
            spool_batches=3,
            gaps_announced_total=1,
            batches_dropped_total=5,
            corrupt_records_total=2,
            reconnects_total=7,
            acks_total=11,
            hub_connected=True,
            samples_total=13,
            sample_cpu_seconds_total=0.25,
        )
    )
    return scrape(served.url)


def test_agent_exports_dcgm_exporter_metrics_equal_to_the_sample(
    registry: CollectorRegistry, served: MetricsServer, observed: Observed
) -> None:
    result = agent_endpoint(registry, served, observed)
    assert result.content_type.startswith("text/plain; version=0.0.4")
    for gpu, inventory in zip(observed.sample.gpus, observed.gpus, strict=True):
        labels = {
            "gpu": str(gpu.index),
            "UUID": gpu.uuid,
            "device": f"nvidia{gpu.index}",
            "modelName": "NVIDIA H200",
            "Hostname": observed.hostname,
            "pci_bus_id": inventory.pci_bus_id,
        }
        for name, expected in expected_dcgm(gpu).items():
            assert result.value(name, **labels) == float(expected), name
    first_uuid = observed.sample.gpus[0].uuid
    assert result.value("DCGM_FI_DEV_GPU_TEMP", UUID=first_uuid) == 36.0  # the capture's idle
    dcgm_types = {name: kind for name, kind in result.types.items() if name.startswith("DCGM_")}
    assert {name for name, kind in dcgm_types.items() if kind == "counter"} == DCGM_COUNTERS
    assert set(dcgm_types) == set(expected_dcgm(observed.sample.gpus[0]))
    assert not [
        name for name, _, _ in result.samples if name.startswith("DCGM_") and "_total" in name
    ]
    assert set(result.helps) == set(result.types)
    assert all(result.helps.values())


def test_attribution_labels_appear_only_on_attributed_gpus(
    registry: CollectorRegistry, served: MetricsServer, observed: Observed
) -> None:
    first, second = observed.sample.gpus
    override = pb.GpuAttribution(namespace="batch", pod="etl-7", container="worker")
    result = agent_endpoint(registry, served, observed, attributions={first.uuid: override})
    for labels, _ in result.series("DCGM_FI_DEV_POWER_USAGE"):
        assert set(labels) >= DCGM_LABELS
    attributed = {"ml": second.uuid, "batch": first.uuid}
    for namespace, uuid in attributed.items():
        labels, _ = result.series("DCGM_FI_DEV_POWER_USAGE", UUID=uuid)[0]
        assert set(labels) == DCGM_LABELS | ATTRIBUTION_LABELS
        assert labels["namespace"] == namespace

    plain = CollectorRegistry()
    with serve_metrics(plain, "127.0.0.1:0") as server:
        result = agent_endpoint(plain, server, observed)
    labels, _ = result.series("DCGM_FI_DEV_POWER_USAGE", UUID=first.uuid)[0]
    assert set(labels) == DCGM_LABELS
    labels, _ = result.series("DCGM_FI_DEV_POWER_USAGE", UUID=second.uuid)[0]
    assert (labels["pod"], labels["namespace"], labels["container"]) == ("train-0", "ml", "main")


def test_unreported_values_are_omitted_per_gpu(
    registry: CollectorRegistry, served: MetricsServer, observed: Observed
) -> None:
    sample = pb.Sample()
    sample.CopyFrom(observed.sample)
    first, second = sample.gpus
    first.ClearField("temperature_memory_c")
    first.unsupported.append("temperature_memory_c")
    first.ClearField("clock_event_reasons")
    sample.ClearField("host")
    result = agent_endpoint(registry, served, Observed(sample, observed.gpus, observed.hostname))
    assert result.series("DCGM_FI_DEV_MEMORY_TEMP", UUID=first.uuid) == []
    assert result.value("DCGM_FI_DEV_MEMORY_TEMP", UUID=second.uuid) == second.temperature_memory_c
    assert result.series("sentinel_gpu_clock_event_active", UUID=first.uuid) == []
    assert not [name for name in result.types if name.startswith("sentinel_node_")]


def test_sentinel_gpu_node_and_agent_metrics(
    registry: CollectorRegistry, served: MetricsServer, observed: Observed
) -> None:
    result = agent_endpoint(registry, served, observed)
    first, second = observed.sample.gpus
    ids = {"gpu": "0", "UUID": first.uuid}
    assert result.value("sentinel_gpu_xid_errors_total", **ids, xid="79") == 2
    assert result.value("sentinel_gpu_xid_errors_total", **ids, xid="13") == 1
    assert result.series("sentinel_gpu_xid_errors_total", UUID=second.uuid) == []
    health = result.series("sentinel_gpu_health_state", **ids)
    states = {labels["state"]: value for labels, value in health}
    assert states == {"healthy": 0, "degraded": 0, "failed": 1}
    assert result.value("sentinel_gpu_health_state", UUID=second.uuid, state="healthy") == 1
    active = {
        labels["reason"]
        for labels, value in result.series("sentinel_gpu_clock_event_active", **ids)
        if value == 1
    }
    assert active == set(first.clock_event_reason_names) == {"gpu_idle"}
    assert result.value("sentinel_gpu_clock_event_active", **ids, reason="sw_power_cap") == 0

    host = observed.sample.host
    assert result.value("sentinel_node_cpu_utilization_ratio") == host.cpu_percent / 100
    assert result.value("sentinel_node_memory_used_bytes") == host.memory_used_bytes
    assert result.value("sentinel_node_memory_total_bytes") == host.memory_total_bytes
    assert result.value("sentinel_node_load1") == host.load1
    assert result.value("sentinel_node_load5") == host.load5
    assert result.value("sentinel_node_load15") == host.load15
    assert result.value("sentinel_node_disk_used_bytes", mountpoint="/srv/scratch") == 4
    assert result.value("sentinel_node_disk_total_bytes", mountpoint="/srv/scratch") == 9
    assert result.value("sentinel_node_network_receive_bytes_total") == (
        host.network_receive_bytes_total
    )
    assert result.value("sentinel_node_network_transmit_bytes_total") == (
        host.network_transmit_bytes_total
    )
    assert result.value("sentinel_node_disk_read_bytes_total") == host.disk_read_bytes_total
    assert result.value("sentinel_node_disk_written_bytes_total") == host.disk_write_bytes_total

    agent = {
        "sentinel_agent_spool_bytes": 4096,
        "sentinel_agent_spool_batches": 3,
        "sentinel_agent_telemetry_gaps_total": 1,
        "sentinel_agent_batches_dropped_total": 5,
        "sentinel_agent_spool_corrupt_records_total": 2,
        "sentinel_agent_reconnects_total": 7,
        "sentinel_agent_acks_total": 11,
        "sentinel_agent_hub_connected": 1,
        "sentinel_agent_samples_total": 13,
        "sentinel_agent_sample_cpu_seconds_total": 0.25,
    }
    assert {name: result.value(name) for name in agent} == agent
    assert result.types["sentinel_agent_acks_total"] == "counter"


def test_agent_endpoint_passes_promtool_but_for_dcgm_names(
    registry: CollectorRegistry, served: MetricsServer, observed: Observed
) -> None:
    result = agent_endpoint(registry, served, observed)
    assert promtool_findings(result.text, tolerate_dcgm=True) == []
    # The tolerance is not vacuous: promtool does flag dcgm-exporter's names.
    assert promtool_findings(result.text, tolerate_dcgm=False) != []


def test_agent_before_first_sample_exports_only_its_own_health(
    registry: CollectorRegistry, served: MetricsServer
) -> None:
    AgentMetrics(registry, hostname="node-a")
    result = scrape(served.url)
    assert {name for name, _, _ in result.samples} == {
        name for name in result.types if name.startswith("sentinel_agent_")
    }
    assert result.value("sentinel_agent_hub_connected") == 0
    assert promtool_findings(result.text, tolerate_dcgm=False) == []
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        AgentMetrics(registry, hostname="node-a")


def test_hub_metrics_served_and_promtool_clean(
    registry: CollectorRegistry, served: MetricsServer
) -> None:
    hub = HubMetrics(registry)
    for _ in range(3):
        hub.agent_connected()
    hub.agent_disconnected()
    for latency_s in (0.0004, 0.003, 0.003, 7.0):
        hub.batch_accepted(latency_s)
    hub.duplicate_dropped()
    hub.gap_recorded(5, gap_reason_label(pb.GAP_REASON_OVERFLOW))
    hub.gap_recorded(1, gap_reason_label(pb.GAP_REASON_CORRUPT))
    hub.gap_recorded(2, "overflow")
    hub.batch_refused("BAD_BATCH")
    hub.event_publish_failed()
    hub.set_nodes_by_state(lambda: {"online": 2, "offline": 1})

    result = scrape(served.url)
    assert result.value("sentinel_hub_agents_connected") == 2
    assert result.value("sentinel_hub_telemetry_batches_total") == 4
    assert "rate()" in result.helps["sentinel_hub_telemetry_batches_total"]
    assert result.value("sentinel_hub_ack_latency_seconds_bucket", le="0.0005") == 1
    assert result.value("sentinel_hub_ack_latency_seconds_bucket", le="5.0") == 3
    assert result.value("sentinel_hub_ack_latency_seconds_bucket", le="+Inf") == 4
    assert result.value("sentinel_hub_ack_latency_seconds_count") == 4
    assert result.value("sentinel_hub_telemetry_duplicates_total") == 1
    assert result.value("sentinel_hub_telemetry_gaps_total", reason="overflow") == 2
    assert result.value("sentinel_hub_telemetry_gaps_total", reason="corrupt") == 1
    assert result.value("sentinel_hub_telemetry_gap_batches_total", reason="overflow") == 7
    assert result.value("sentinel_hub_telemetry_refused_total", reason="BAD_BATCH") == 1
    assert result.value("sentinel_hub_event_publish_failures_total") == 1
    assert result.value("sentinel_hub_nodes", state="online") == 2
    assert result.value("sentinel_hub_nodes", state="offline") == 1
    assert set(result.helps) == set(result.types)
    assert promtool_findings(result.text, tolerate_dcgm=False) == []


def test_hub_known_gap_reasons_start_at_zero_and_a_failing_callback_is_left_out(
    registry: CollectorRegistry, served: MetricsServer
) -> None:
    hub = HubMetrics(registry)
    result = scrape(served.url)
    assert result.value("sentinel_hub_telemetry_gaps_total", reason="overflow") == 0
    assert result.value("sentinel_hub_telemetry_gap_batches_total", reason="corrupt") == 0
    assert "sentinel_hub_nodes" not in result.types

    def broken() -> dict[str, int]:
        raise RuntimeError("registry unavailable")

    hub.set_nodes_by_state(broken)
    result = scrape(served.url)
    assert "sentinel_hub_nodes" not in result.types
    assert result.value("sentinel_hub_agents_connected") == 0


def test_server_speaks_text_format_only_at_metrics(
    registry: CollectorRegistry, served: MetricsServer
) -> None:
    HubMetrics(registry)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/metrics", served.url)
    openmetrics = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    assert scrape(served.url, accept=openmetrics).content_type.startswith(
        "text/plain; version=0.0.4"
    )
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(served.url.removesuffix("/metrics") + "/other", timeout=10)
    assert raised.value.code == 404
    head = urllib.request.Request(served.url, method="HEAD")
    with urllib.request.urlopen(head, timeout=10) as response:
        assert response.status == 200
        assert response.read() == b""


async def test_scrapes_do_not_need_the_event_loop(registry: CollectorRegistry) -> None:
    HubMetrics(registry).agent_connected()
    with serve_metrics(registry, "127.0.0.1:0") as server:
        result = await asyncio.to_thread(scrape, server.url)
    assert result.value("sentinel_hub_agents_connected") == 1


@pytest.mark.parametrize(
    "listen", ["", "9400", ":9400", "127.0.0.1", "127.0.0.1:http", "127.0.0.1:70000", "a b:1"]
)
def test_bad_listen_string_is_invalid_argument(registry: CollectorRegistry, listen: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        serve_metrics(registry, listen)
    assert raised.value.reason == "INVALID_LISTEN"


def test_busy_port_is_one_clear_config_error(
    registry: CollectorRegistry, served: MetricsServer
) -> None:
    with pytest.raises(ConfigError) as raised:
        serve_metrics(registry, f"127.0.0.1:{served.port}")
    assert raised.value.reason == "LISTEN_FAILED"
    assert f"127.0.0.1:{served.port}" in str(raised.value)
    assert "already in use" in str(raised.value)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("listen", ["192.0.2.1:0", "no-such-host.invalid:0"])
def test_address_not_local_is_listen_failed(registry: CollectorRegistry, listen: str) -> None:
    with pytest.raises(ConfigError) as raised:
        serve_metrics(registry, listen)
    assert raised.value.reason == "LISTEN_FAILED"


def test_close_releases_the_port_and_is_idempotent(registry: CollectorRegistry) -> None:
    server = serve_metrics(registry, "127.0.0.1:0")
    server.close()
    server.close()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", server.port), timeout=2):
        pass
    again = serve_metrics(registry, f"127.0.0.1:{server.port}")
    again.close()


def test_ipv6_loopback_url_is_bracketed(registry: CollectorRegistry) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this host")
    try:
        server = serve_metrics(registry, "[::1]:0")
    except ConfigError as exc:
        pytest.skip(f"IPv6 loopback unavailable here: {exc}")
    with server:
        assert re.fullmatch(r"http://\[::1\]:\d+/metrics", server.url)
        scrape(server.url)
