"""The fleet inputs the policy cannot compute itself: SLO series and the running GPUs.

`SeriesSource.values(specs)` fetches the series a bundle's `series:` section names
(see `policy._series`), as many at once as the gate asks for:

- `promql`: an instant query, `GET {prometheus}/api/v1/query?query=...`, run in a worker
  thread with a short timeout (`QUERY_TIMEOUT_S`); the answer must be one number, a
  scalar or a vector of exactly one sample;
- `telemetry`: computed from the registry, over the online nodes' latest samples.

`gpus_by_model(registry)` counts the online nodes' GPUs by model name as NVML reports
it (e.g. "NVIDIA H200"), which is what `cost_ceiling` prices are keyed by.

Invariants: a series that cannot be had (no Prometheus configured, unreachable, an HTTP
or query error, an empty or multi-sample result, NaN, no online node reporting the
metric) is left out of the result, never raised and never guessed, so a rule that
compares it asks for a human (NEEDS_APPROVAL, NO_INPUT); each such series is logged at
most once per `LOG_EVERY_S`. ±Inf is a value (it compares as infinitely large or small).
Values are always "now", whatever instant a decision is made for.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import math
import statistics
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, assert_never

import policy
from hub.registry import ONLINE, Registry
from sentinel.errors import ConfigError
from sentinel.v1 import fleet_pb2, telemetry_pb2

log = logging.getLogger(__name__)

QUERY_TIMEOUT_S = 2.0
LOG_EVERY_S = 60.0
MAX_RESPONSE_BYTES = 1 << 20


class SeriesUnavailable(Exception):
    """Why one series has no value this time (logged, never raised to a caller)."""


class SeriesSource:
    def __init__(
        self,
        registry: Registry,
        prometheus_url: str | None = None,
        *,
        timeout_s: float = QUERY_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._base = prometheus_base(prometheus_url) if prometheus_url else None
        self._timeout_s = timeout_s
        self._clock = clock
        self._logged_at: dict[str, float] = {}

    async def values(self, specs: Mapping[str, policy.SeriesSpec]) -> dict[str, float]:
        """Every series of `specs` that could be had now, by name."""
        names = list(specs)
        found = await asyncio.gather(*(self._value(name, specs[name]) for name in names))
        return {name: value for name, value in zip(names, found, strict=True) if value is not None}

    async def _value(self, name: str, spec: policy.SeriesSpec) -> float | None:
        try:
            match spec:
                case policy.PromQLSeries(query=query):
                    return await self._promql(query)
                case policy.TelemetrySeries(metric=metric):
                    return telemetry_value(online_nodes(self._registry), metric)
                case _:
                    assert_never(spec)
        except SeriesUnavailable as exc:
            self._warn(name, str(exc))
            return None

    async def _promql(self, query: str) -> float:
        if self._base is None:
            raise SeriesUnavailable("no Prometheus is configured (sentinel hub --prometheus URL)")
        url = f"{self._base}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
        return instant_value(await asyncio.to_thread(_fetch, url, self._timeout_s))

    def _warn(self, name: str, problem: str) -> None:
        now = self._clock()
        last = self._logged_at.get(name)
        if last is not None and now - last < LOG_EVERY_S:
            return
        self._logged_at[name] = now
        log.warning(
            "series %r has no value (%s): slo_guard rules comparing it ask for approval",
            name,
            problem,
        )


def prometheus_base(url: str) -> str:
    """The Prometheus base URL, checked: http(s), a host, no query or fragment."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(
            f"Prometheus URL {url!r}: use http://HOST:PORT or https://HOST[:PORT][/PATH]",
            reason="BAD_PROMETHEUS_URL",
        )
    return url.rstrip("/")


def _fetch(url: str, timeout_s: float) -> bytes:
    """One GET (in a worker thread); every failure becomes `SeriesUnavailable`."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body: bytes = response.read(MAX_RESPONSE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        detail = _error_text(exc.read(MAX_RESPONSE_BYTES))
        raise SeriesUnavailable(f"Prometheus answered HTTP {exc.code}: {detail}") from None
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise SeriesUnavailable(f"cannot query Prometheus: {exc}") from None
    if len(body) > MAX_RESPONSE_BYTES:
        raise SeriesUnavailable(f"the answer is larger than {MAX_RESPONSE_BYTES} bytes")
    return body


def _error_text(body: bytes) -> str:
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return body[:200].decode(errors="replace") or "no details"


def instant_value(body: bytes) -> float:
    """The one number of a Prometheus instant-query response (scalar or one-sample vector)."""
    try:
        document = json.loads(body)
        if document["status"] != "success":
            raise SeriesUnavailable(f"query failed: {document.get('error', 'no details')}")
        kind, result = document["data"]["resultType"], document["data"]["result"]
        if kind == "scalar":
            return _number(result)
        if kind != "vector":
            raise SeriesUnavailable(f"a {kind} result; expected a scalar or one sample")
        if len(result) != 1:
            raise SeriesUnavailable(
                f"{len(result)} samples; expected exactly one (aggregate, e.g. max(...))"
            )
        return _number(result[0]["value"])
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise SeriesUnavailable(f"not a Prometheus query response ({exc!r})") from None


def _number(pair: Any) -> float:
    """A `[timestamp, "value"]` pair's value; NaN is no value."""
    value = float(pair[1])
    if math.isnan(value):
        raise SeriesUnavailable("the value is NaN")
    return value


def online_nodes(registry: Registry) -> list[fleet_pb2.Node]:
    nodes = (registry.get(node_id) for node_id in list(registry.node_ids()))
    return [node for node in nodes if node is not None and node.state == ONLINE]


def gpus_by_model(registry: Registry) -> dict[str, float]:
    """Online nodes' GPUs by model name (`cost_ceiling`'s GPU hours per hour)."""
    counts = Counter(gpu.name for node in online_nodes(registry) for gpu in node.gpus)
    return {model: float(count) for model, count in counts.items()}


def telemetry_value(nodes: list[fleet_pb2.Node], metric: policy.TelemetryMetric) -> float:
    """One `TelemetryMetric` over `nodes` (the online ones)."""
    match metric:
        case policy.TelemetryMetric.NODES_ONLINE:
            return float(len(nodes))
        case policy.TelemetryMetric.GPU_UTILIZATION_MEAN:
            return statistics.fmean(_readings(nodes, _utilization, "GPU utilization"))
        case policy.TelemetryMetric.GPU_UTILIZATION_MAX:
            return max(_readings(nodes, _utilization, "GPU utilization"))
        case policy.TelemetryMetric.GPU_MEMORY_USED_FRACTION_MEAN:
            return statistics.fmean(_readings(nodes, _memory_used_fraction, "GPU memory"))
        case _:
            assert_never(metric)


def _readings(
    nodes: list[fleet_pb2.Node],
    read: Callable[[telemetry_pb2.GpuMetrics], float | None],
    what: str,
) -> list[float]:
    values = [value for gpu in _latest_gpus(nodes) if (value := read(gpu)) is not None]
    if not values:
        raise SeriesUnavailable(f"no online node reports {what}")
    return values


def _latest_gpus(nodes: Iterable[fleet_pb2.Node]) -> Iterator[telemetry_pb2.GpuMetrics]:
    for node in nodes:
        if node.HasField("latest_sample"):
            yield from node.latest_sample.gpus


def _utilization(gpu: telemetry_pb2.GpuMetrics) -> float | None:
    return float(gpu.utilization_gpu_percent) if gpu.HasField("utilization_gpu_percent") else None


def _memory_used_fraction(gpu: telemetry_pb2.GpuMetrics) -> float | None:
    if not (gpu.HasField("memory_used_bytes") and gpu.HasField("memory_free_bytes")):
        return None
    total = gpu.memory_used_bytes + gpu.memory_free_bytes
    return gpu.memory_used_bytes / total if total else None
