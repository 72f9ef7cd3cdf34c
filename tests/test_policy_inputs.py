"""The hub's fleet inputs for policy, for real: SLO series from a real Prometheus (which
scrapes an endpoint this test serves with prometheus_client) and from Sentinel's own
telemetry, and the running GPUs by model for `cost_ceiling`, through IssueCommand and
EvaluatePolicy on a real hub with a real agent."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import shutil
import socket
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from edge_agent.app import Agent
from edge_agent.settings import SamplingSettings
from hub.app import Hub
from hub.series import SeriesSource, prometheus_base
from policy import PromQLSeries, SeriesSpec, TelemetryMetric, TelemetrySeries
from sentinel.errors import ConfigError
from sentinel.rpc_errors import reason_of, violations_of
from sentinel.tls import secure_aio_channel
from sentinel.v1 import command_pb2, command_pb2_grpc, policy_pb2, policy_pb2_grpc
from tests.command_helpers import quiet_agent_settings, recording_systemctl, started
from tests.conftest import Pki, eventually, hub_settings, within
from tests.test_commands import finished, issue, node_a, restart
from tests.test_policy_enforcement import apply

S, P = command_pb2, policy_pb2
SCALE = "k8s.deployment.scale"
SCALE_PARAMS = {
    "namespace": S.ParameterValue(string_value="ml"),
    "name": S.ParameterValue(string_value="trainer"),
    "replicas": S.ParameterValue(int_value=2),
}
HEAD = "expires_at: 2100-01-01T00:00:00Z\nallow: {actions: ['*'], shadow: true}\n"
LATENCY = f"""\
version: 3
{HEAD}series:
  p95_latency_ms: {{promql: max(app_latency_p95_ms)}}
rules:
  - {{id: latency, kind: slo_guard, series: p95_latency_ms, max: 250,
     actions: [{SCALE}, agent.ping]}}
""".encode()


@dataclass
class Prometheus:
    """A real Prometheus scraping `app_latency_p95_ms` from this test every second."""

    url: str
    latency: Gauge
    process: asyncio.subprocess.Process

    def query(self, promql: str) -> float | None:
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        try:
            with urllib.request.urlopen(url, timeout=0.5) as response:
                result = json.load(response)["data"]["result"]
        except OSError:
            return None
        return float(result[0]["value"][1]) if result else None

    async def scraped(self, value: float) -> None:
        """Wait until Prometheus answers `value` for the gauge (it scrapes every second)."""
        await eventually(lambda: self.query("app_latency_p95_ms") == value, poll_s=0.1)

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            await within(self.process.wait())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def prometheus(tmp_path: Path) -> AsyncIterator[Prometheus]:
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    registry = CollectorRegistry()
    latency = Gauge("app_latency_p95_ms", "p95 request latency", registry=registry)
    latency.set(300)
    exporter, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n  - job_name: app\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{exporter.server_port}']}}]\n"
    )
    port = _free_port()
    with (tmp_path / "prometheus.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            stdout=log,
            stderr=log,
        )
    server = Prometheus(f"http://127.0.0.1:{port}", latency, process)
    try:
        await server.scraped(300)
        yield server
    finally:
        await server.stop()
        exporter.shutdown()
        exporter.server_close()


def _violations(exc: grpc.aio.AioRpcError) -> list[tuple[str, str]]:
    return [(v.kind, v.subject) for v in violations_of(exc)]


async def _rule(
    policies: policy_pb2_grpc.PolicyServiceStub,
    rule_id: str,
    action: str = SCALE,
    version: int = 0,
) -> tuple[int, str, dict[str, str]]:
    """One rule's verdict, reason and details for `action` on node-a (EvaluatePolicy)."""
    params = SCALE_PARAMS if action == SCALE else {}
    request = P.EvaluatePolicyRequest(
        node_id="node-a", action=action, parameters=params, policy_version=version
    )
    decision = (await policies.EvaluatePolicy(request)).decision
    (result,) = [r for r in decision.rules if r.rule_id == rule_id]
    return result.verdict, result.reason, dict(result.details)


def _series_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "hub.series"]


async def _check_answers(source: SeriesSource, caplog: pytest.LogCaptureFixture) -> None:
    """Only one number is a value: scalars and one-sample vectors (±Inf included)."""
    copy = 'label_replace(app_latency_p95_ms, "copy", "1", "", "")'
    specs: dict[str, SeriesSpec] = {
        "scalar": PromQLSeries("scalar(app_latency_p95_ms) * 2"),
        "one": PromQLSeries("max(app_latency_p95_ms)"),
        "inf": PromQLSeries("vector(1) / 0"),
        "empty": PromQLSeries("app_no_such_metric"),
        "two": PromQLSeries(f"app_latency_p95_ms or {copy}"),
        "range": PromQLSeries("app_latency_p95_ms[1m]"),
        "nan": PromQLSeries("0 / 0"),
        "syntax": PromQLSeries("sum("),
        "online": TelemetrySeries(TelemetryMetric.NODES_ONLINE),
        "busy": TelemetrySeries(TelemetryMetric.GPU_UTILIZATION_MEAN),
    }
    for _ in range(2):
        assert await source.values(specs) == {
            "scalar": 600.0,
            "one": 300.0,
            "inf": math.inf,
            "online": 1.0,
        }
    warnings = _series_warnings(caplog)
    assert len(warnings) == 6  # once each, not once per look-up
    problems = dict(w.removeprefix("series '").split("' has no value (", 1) for w in warnings)
    assert problems["empty"].startswith("0 samples; expected exactly one")
    assert problems["two"].startswith("2 samples; expected exactly one (aggregate")
    assert problems["range"].startswith("a matrix result; expected a scalar or one sample")
    assert problems["nan"].startswith("the value is NaN")
    assert problems["syntax"].startswith("Prometheus answered HTTP 400: ")
    assert problems["busy"].startswith("no online node reports GPU utilization")
    caplog.clear()


async def test_slo_guard_on_a_real_prometheus_series_denies_allows_and_waits_without_it(
    pki: Pki,
    tmp_path: Path,
    prometheus: Prometheus,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.WARNING, logger="hub.series")
    asked: list[str] = []
    promql = SeriesSource._promql

    async def spy(source: SeriesSource, query: str) -> float:
        asked.append(query)
        return await promql(source, query)

    settings = replace(hub_settings(pki, tmp_path / "hub"), prometheus_url=prometheus.url)
    hub = await Hub.start(settings)
    script, _ = recording_systemctl(tmp_path)
    agent: Agent | None = None
    try:
        agent = await started(
            quiet_agent_settings(pki, hub, tmp_path / "agent", "node-a", script), hub
        )
        await apply(hub, LATENCY, agent)
        await _check_answers(SeriesSource(hub.registry, prometheus.url + "/"), caplog)
        async with secure_aio_channel(hub.address, pki.user("operator")) as channel:
            commands = command_pb2_grpc.CommandServiceStub(channel)
            policies = policy_pb2_grpc.PolicyServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as denied:  # p95 300 ms > 250
                await issue(commands, **node_a(action=SCALE, parameters=SCALE_PARAMS))
            assert denied.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert reason_of(denied.value) == "POLICY_DENIED"
            assert _violations(denied.value) == [("slo_guard", "latency on node-a")]
            assert "p95_latency_ms is 300, above the maximum 250" in (denied.value.details() or "")

            prometheus.latency.set(120)
            await prometheus.scraped(120)
            ping = await issue(commands, **node_a(action="agent.ping"))
            assert (await finished(commands, ping.command_id)).state == S.COMMAND_STATE_EXECUTED
            assert await _rule(policies, "latency") == (
                P.VERDICT_ALLOW,
                "WITHIN_SLO",
                {"series": "p95_latency_ms", "max": "250", "value": "120"},
            )
            assert _series_warnings(caplog) == []

            monkeypatch.setattr(SeriesSource, "_promql", spy)
            await prometheus.stop()  # no value: a human decides
            for _ in range(2):
                waiting = await issue(commands, **node_a(action="agent.ping"))
                assert waiting.state == S.COMMAND_STATE_AWAITING_APPROVAL
            assert await _rule(policies, "latency") == (
                P.VERDICT_NEEDS_APPROVAL,
                "NO_INPUT",
                {"series": "p95_latency_ms", "max": "250"},
            )
            assert asked == ["max(app_latency_p95_ms)"] * 3
            unguarded = await issue(commands, **restart())  # no slo_guard: nothing to query
            assert unguarded.state != S.COMMAND_STATE_AWAITING_APPROVAL
            assert len(asked) == 3
        (warning,) = _series_warnings(caplog)  # once a minute at most, for 3 look-ups
        assert warning.startswith("series 'p95_latency_ms' has no value (cannot query Prometheus")
    finally:
        if agent is not None:
            await agent.stop()
        await hub.stop()


async def test_telemetry_series_and_the_cost_of_the_running_gpus(
    pki: Pki, hub: Hub, tmp_path: Path
) -> None:
    script, _ = recording_systemctl(tmp_path)
    settings = quiet_agent_settings(pki, hub, tmp_path / "agent", "node-a", script)
    sampling = SamplingSettings(
        batch_interval=timedelta(seconds=0.2),
        sample_interval=timedelta(seconds=0.05),
        nvml_replay="builtin:h200",
        replay_gpus=2,
    )
    agent = await started(replace(settings, sampling=sampling), hub)
    try:
        node = hub.registry.get("node-a")
        assert node is not None
        await eventually(lambda: len(node.latest_sample.gpus) == 2)
        assert [gpu.name for gpu in node.gpus] == ["NVIDIA H200"] * 2  # the price key
        fleet = (
            "series:\n  online: {telemetry: nodes_online}\n"
            "  memory: {telemetry: gpu_memory_used_fraction_mean}\n"
            "rules:\n  - {id: fleet-up, kind: slo_guard, series: online, min: %s}\n"
            "  - {id: memory, kind: slo_guard, series: memory, max: 1}\n"
            "  - {id: budget, kind: cost_ceiling, ceiling_per_hour: 5,"
            " price_per_gpu_hour: {%s: 4.5}}\n"
        )
        for version, nodes, model in ((3, 1, "'NVIDIA H200'"), (4, 2, "H200")):
            source = f"version: {version}\n{HEAD}" + fleet % (nodes, model)
            await hub.policies.put(source.encode(), "test")
        async with secure_aio_channel(hub.address, pki.user("operator")) as channel:
            policies = policy_pb2_grpc.PolicyServiceStub(channel)
            ping = "agent.ping"
            assert await _rule(policies, "fleet-up", ping, 3) == (
                P.VERDICT_ALLOW,
                "WITHIN_SLO",
                {"series": "online", "min": "1", "value": "1"},
            )
            _, reason, memory = await _rule(policies, "memory", ping, 3)
            assert reason == "WITHIN_SLO"
            assert 0 <= float(memory["value"]) <= 1
            assert await _rule(policies, "budget", ping, 3) == (
                P.VERDICT_ALLOW,
                "WITHIN_BUDGET",  # 2 x 4.5 > 5, but nothing is added: the way back stays open
                {"current_per_hour": "9", "projected_per_hour": "9", "ceiling_per_hour": "5"},
            )
            assert (await _rule(policies, "fleet-up", ping, 4))[:2] == (
                P.VERDICT_DENY,
                "SLO_BREACH",
            )
            assert await _rule(policies, "budget", ping, 4) == (
                P.VERDICT_DENY,
                "NO_PRICE",
                {"model": "NVIDIA H200"},
            )
            commands = command_pb2_grpc.CommandServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                await issue(commands, **node_a(action=ping))
            assert _violations(denied.value) == [
                ("slo_guard", "fleet-up on node-a"),
                ("cost_ceiling", "budget on node-a"),
            ]
    finally:
        await agent.stop()


@pytest.mark.parametrize(
    "url", ["ftp://prom:9090", "prom:9090", "http://", "http://prom:9090/?x=1", "http://p#f"]
)
def test_the_prometheus_url_must_be_http(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        prometheus_base(url)
    assert caught.value.reason == "BAD_PROMETHEUS_URL"


def test_a_prometheus_url_keeps_its_path() -> None:
    assert prometheus_base("https://mon.example:443/prom/") == "https://mon.example:443/prom"
