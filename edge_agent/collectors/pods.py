"""Pod attribution: which Kubernetes container holds each GPU, from the kubelet's pod-resources API.

On a Kubernetes node the kubelet serves `v1.PodResourcesLister` on a local unix socket (by default
`/var/lib/kubelet/pod-resources/kubelet.sock`, root-only). `List` names every pod's containers
and the devices the device plugins gave them; NVIDIA's device plugin reports resource
`nvidia.com/gpu` with the GPU UUIDs as device ids. This is how dcgm-exporter labels its metrics
with `pod`, `namespace` and `container`, and `PodAttributor` reads it the same way.

Mapping rules (GPU UUID -> `GpuAttribution(namespace, pod, container)`):
- Only `nvidia.com/gpu` devices count; every other resource is ignored.
- A device id is kept as the kubelet gives it. A MIG UUID (`MIG-...`) therefore matches no GPU
  UUID, so a GPU split into MIG instances stays unattributed.
- A shared replica (`GPU-...::N`, the device plugin's time-slicing or MPS sharing) is also
  mapped under the UUID before `::`. One GPU held by several containers is attributed to the last
  one listed, as dcgm-exporter does: `GpuAttribution` names one workload.

Invariants:
- `attributions()` is BLOCKING (one unary call, at most `timeout_s`) and is meant for the
  collector thread. It asks the kubelet at most once per `refresh_s` of the injected clock,
  failed attempts included, so a dead kubelet costs at most one timeout per refresh.
- It never raises for the kubelet's faults. A socket missing before any good answer gives {} and
  one log line; any later failure (socket gone, call failed or timed out) keeps the last good
  map. A failure is logged when it differs from the previous one, so a steady outage is one
  warning; a good answer after failures is logged once and re-arms the warnings.
- After a failure the channel is dropped and the next attempt dials afresh, so a restarted
  kubelet is seen at the next refresh rather than after gRPC's reconnect backoff.
- Not thread-safe: one caller (the collector thread) at a time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import grpc

from edge_agent.podresources.v1 import api_pb2, api_pb2_grpc
from sentinel.v1 import telemetry_pb2

log = logging.getLogger("edge_agent.collectors.pods")

DEFAULT_SOCKET = Path("/var/lib/kubelet/pod-resources/kubelet.sock")
GPU_RESOURCE = "nvidia.com/gpu"
SHARED_REPLICA_SEPARATOR = "::"

GpuAttribution = telemetry_pb2.GpuAttribution


class PodAttributor:
    """GPU UUID -> the container holding it, from the kubelet at `socket_path`, cached."""

    def __init__(
        self,
        socket_path: Path,
        *,
        refresh_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        timeout_s: float = 2.0,
    ) -> None:
        self._socket_path = socket_path
        self._refresh_s = refresh_s
        self._clock = clock
        self._timeout_s = timeout_s
        self._channel: grpc.Channel | None = None
        self._stub: Any = None
        self._last_good: dict[str, telemetry_pb2.GpuAttribution] | None = None
        self._asked_s: float | None = None
        self._logged_error: str | None = None

    def attributions(self) -> dict[str, telemetry_pb2.GpuAttribution]:
        """The current map (a fresh dict; the messages are shared, copy before changing them).

        BLOCKING: at most one `List` call, bounded by `timeout_s`, once per `refresh_s`.
        """
        now_s = self._clock()
        if self._asked_s is None or now_s - self._asked_s >= self._refresh_s:
            self._asked_s = now_s
            self._refresh()
        return dict(self._last_good or {})

    def close(self) -> None:
        """Close the channel. Idempotent; a later `attributions()` dials again."""
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            channel.close()

    def _refresh(self) -> None:
        problem = _socket_problem(self._socket_path)
        if problem is not None:
            self._failed(problem)
            return
        try:
            response = self._list()
        except grpc.RpcError as exc:
            # A sync unary call raises an RpcError that is also a grpc.Call (code, details).
            self._failed(f"List failed ({exc.code().name}: {exc.details()})")
            return
        self._last_good = attributions_from(response)
        if self._logged_error is not None:
            log.info("pod-resources answers again: %d GPU(s) attributed", len(self._last_good))
            self._logged_error = None

    def _list(self) -> api_pb2.ListPodResourcesResponse:
        if self._stub is None:
            target = "unix://" + str(self._socket_path.absolute())
            self._channel = grpc.insecure_channel(target)
            self._stub = api_pb2_grpc.PodResourcesListerStub(self._channel)
        request = api_pb2.ListPodResourcesRequest()
        response: api_pb2.ListPodResourcesResponse = self._stub.List(
            request, timeout=self._timeout_s
        )
        return response

    def _failed(self, error: str) -> None:
        self.close()
        if error == self._logged_error:
            return
        self._logged_error = error
        if self._last_good is None:
            outcome = "GPUs not attributed"
        else:
            outcome = f"keeping the last attribution of {len(self._last_good)} GPU(s)"
        # No socket before any answer is the normal bare-metal case: say so, quietly.
        level = (
            logging.INFO
            if self._last_good is None and error == "socket not found"
            else (logging.WARNING)
        )
        log.log(level, "pod-resources %s: %s (%s)", error, outcome, self._socket_path)


def attributions_from(
    response: api_pb2.ListPodResourcesResponse,
) -> dict[str, telemetry_pb2.GpuAttribution]:
    """GPU UUID -> attribution for every `nvidia.com/gpu` device in a `List` answer."""
    mapping: dict[str, telemetry_pb2.GpuAttribution] = {}
    for pod in response.pod_resources:
        for container in pod.containers:
            attribution = GpuAttribution(
                namespace=pod.namespace, pod=pod.name, container=container.name
            )
            for devices in container.devices:
                if devices.resource_name != GPU_RESOURCE:
                    continue
                for device_id in devices.device_ids:
                    mapping[device_id] = attribution
                    uuid, shared, _ = device_id.partition(SHARED_REPLICA_SEPARATOR)
                    if shared:
                        mapping[uuid] = attribution
    return mapping


def apply(
    gpus: Iterable[telemetry_pb2.GpuMetrics],
    attributions: Mapping[str, telemetry_pb2.GpuAttribution],
) -> None:
    """Set `attribution` on each GPU whose UUID is mapped; leave the others untouched."""
    for gpu in gpus:
        attribution = attributions.get(gpu.uuid)
        if attribution is not None:
            gpu.attribution.CopyFrom(attribution)


def _socket_problem(path: Path) -> str | None:
    """Why `path` cannot be dialled (not found, or not even stat-able), or None."""
    try:
        path.stat()
    except FileNotFoundError:
        return "socket not found"
    except OSError as exc:  # e.g. EACCES: the agent is not root, the directory is 0750
        return f"socket unreadable ({exc.strerror or exc})"
    return None
