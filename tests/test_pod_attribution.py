"""Pod attribution against a stand-in kubelet: a real gRPC `v1.PodResourcesLister` on a unix socket.

The GPUs are real `GpuMetrics` from the replay backend; the clock is injected, so caching and
refresh are driven by hand and nothing sleeps.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from edge_agent.collectors.gpu import GpuCollector
from edge_agent.collectors.pods import PodAttributor, apply, attributions_from
from edge_agent.nvml.loader import open_gpu_backend
from edge_agent.podresources.v1 import api_pb2, api_pb2_grpc
from sentinel.v1 import telemetry_pb2

LOGGER = "edge_agent.collectors.pods"
REFRESH_S = 10.0


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


class FakeKubelet(api_pb2_grpc.PodResourcesListerServicer):
    """Answers `List` with `pods`, or fails with `abort`; counts the calls it gets."""

    def __init__(self) -> None:
        self.pods: list[api_pb2.PodResources] = []
        self.abort: tuple[grpc.StatusCode, str] | None = None
        self.hold: threading.Event | None = None
        self.calls = 0

    def List(
        self, request: api_pb2.ListPodResourcesRequest, context: grpc.ServicerContext
    ) -> api_pb2.ListPodResourcesResponse:
        self.calls += 1
        if self.hold is not None:
            self.hold.wait(timeout=5.0)
        if self.abort is not None:
            context.abort(*self.abort)
        return api_pb2.ListPodResourcesResponse(pod_resources=self.pods)


class KubeletServer:
    """A sync grpc server serving a `FakeKubelet` on a unix socket; restartable on one path."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.servicer = FakeKubelet()
        self._server: Any = None

    def start(self) -> None:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        api_pb2_grpc.add_PodResourcesListerServicer_to_server(self.servicer, server)
        assert server.add_insecure_port("unix://" + str(self.socket_path)) == 1
        server.start()
        self._server = server

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace=None).wait()


@pytest.fixture
def kubelet(tmp_path: Path) -> Iterator[KubeletServer]:
    server = KubeletServer(tmp_path / "kubelet.sock")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def gpus() -> Iterator[list[telemetry_pb2.GpuMetrics]]:
    nvml, _ = open_gpu_backend("builtin:h200", 2)
    collector = GpuCollector(nvml, xid_watcher=None)
    collector.start()
    yield collector.sample()
    collector.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def attributor(kubelet: KubeletServer, clock: FakeClock) -> Iterator[PodAttributor]:
    attributor = PodAttributor(kubelet.socket_path, refresh_s=REFRESH_S, clock=clock)
    yield attributor
    attributor.close()


def pod(
    name: str, namespace: str, container: str, *devices: tuple[str, list[str]]
) -> api_pb2.PodResources:
    return api_pb2.PodResources(
        name=name,
        namespace=namespace,
        containers=[
            api_pb2.ContainerResources(
                name=container,
                devices=[
                    api_pb2.ContainerDevices(resource_name=resource, device_ids=ids)
                    for resource, ids in devices
                ],
            )
        ],
    )


def attribution(namespace: str, pod: str, container: str) -> telemetry_pb2.GpuAttribution:
    return telemetry_pb2.GpuAttribution(namespace=namespace, pod=pod, container=container)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= 30]


def test_wire_schema_follows_upstream_field_numbers() -> None:
    """The numbers of kubernetes' staging/src/k8s.io/kubelet/pkg/apis/podresources/v1/api.proto."""
    service = api_pb2.DESCRIPTOR.services_by_name["PodResourcesLister"]
    assert service.full_name == "v1.PodResourcesLister"
    assert service.methods_by_name["List"].input_type.full_name == "v1.ListPodResourcesRequest"
    expected = {
        "ListPodResourcesResponse": {"pod_resources": 1},
        "PodResources": {"name": 1, "namespace": 2, "containers": 3},
        "ContainerResources": {"name": 1, "devices": 2, "cpu_ids": 3},
        "ContainerDevices": {"resource_name": 1, "device_ids": 2, "topology": 3},
        "TopologyInfo": {"nodes": 1},
        "NUMANode": {"ID": 1},
    }
    for message, fields in expected.items():
        descriptor = api_pb2.DESCRIPTOR.message_types_by_name[message]
        assert {f.name: f.number for f in descriptor.fields} == fields, message


def test_gpu_devices_are_mapped_and_applied_to_the_right_gpu(
    kubelet: KubeletServer, attributor: PodAttributor, gpus: list[telemetry_pb2.GpuMetrics]
) -> None:
    first, second = gpus
    assert first.uuid != second.uuid
    mig = "MIG-4b0c6b5e-8f4e-5b8f-9e0b-000000000001"
    kubelet.servicer.pods = [
        pod("trainer-0", "ml", "worker", ("nvidia.com/gpu", [first.uuid])),
        # An unrelated device plugin, even one reusing a GPU's UUID as its id: ignored.
        pod("other", "default", "app", ("example.com/foo", [second.uuid, "foo-1"])),
        pod("sliced", "ml", "infer", ("nvidia.com/gpu", [mig])),
    ]

    mapping = attributor.attributions()

    assert mapping == {
        first.uuid: attribution("ml", "trainer-0", "worker"),
        mig: attribution("ml", "sliced", "infer"),
    }
    apply(gpus, mapping)
    assert first.attribution == attribution("ml", "trainer-0", "worker")
    assert not second.HasField("attribution")


def test_shared_replicas_attribute_the_gpu_they_share() -> None:
    uuid = "GPU-00000000-0000-4000-8000-000000000001"
    response = api_pb2.ListPodResourcesResponse(
        pod_resources=[
            pod("a", "ns", "c", ("nvidia.com/gpu", [f"{uuid}::0"])),
            pod("b", "ns", "c", ("nvidia.com/gpu", [f"{uuid}::1"])),
        ]
    )
    mapping = attributions_from(response)
    assert mapping[uuid] == attribution("ns", "b", "c")  # last listed, as in dcgm-exporter
    assert mapping[f"{uuid}::0"] == attribution("ns", "a", "c")


def test_answers_are_cached_for_refresh_s(
    kubelet: KubeletServer, attributor: PodAttributor, clock: FakeClock
) -> None:
    uuid = "GPU-00000000-0000-4000-8000-000000000001"
    kubelet.servicer.pods = [pod("p1", "ns", "c", ("nvidia.com/gpu", [uuid]))]
    assert attributor.attributions()[uuid].pod == "p1"
    kubelet.servicer.pods = [pod("p2", "ns", "c", ("nvidia.com/gpu", [uuid]))]

    clock.now_s += REFRESH_S - 0.001
    assert attributor.attributions()[uuid].pod == "p1"
    assert kubelet.servicer.calls == 1

    clock.now_s += 0.001
    assert attributor.attributions()[uuid].pod == "p2"
    assert kubelet.servicer.calls == 2


def test_missing_socket_gives_nothing_and_logs_once(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    attributor = PodAttributor(tmp_path / "absent.sock", refresh_s=REFRESH_S, clock=clock)
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        for _ in range(3):
            assert attributor.attributions() == {}
            clock.now_s += REFRESH_S
    attributor.close()

    records = [r for r in caplog.records if r.name == LOGGER]
    assert len(records) == 1
    assert records[0].getMessage().startswith("pod-resources socket not found: GPUs not attributed")


def test_stopped_kubelet_keeps_the_last_good_map_until_it_is_back(
    kubelet: KubeletServer,
    attributor: PodAttributor,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    uuid = "GPU-00000000-0000-4000-8000-000000000001"
    kubelet.servicer.pods = [pod("p1", "ns", "c", ("nvidia.com/gpu", [uuid]))]
    good = attributor.attributions()
    kubelet.stop()

    with caplog.at_level(logging.INFO, logger=LOGGER):
        for _ in range(3):
            clock.now_s += REFRESH_S
            assert attributor.attributions() == good
        assert len(warnings(caplog)) == 1

        kubelet.servicer.pods = [pod("p2", "ns", "c", ("nvidia.com/gpu", [uuid]))]
        kubelet.start()
        clock.now_s += REFRESH_S
        assert attributor.attributions()[uuid].pod == "p2"
    assert len(warnings(caplog)) == 1


def test_failed_calls_keep_the_last_good_map_and_log_each_new_error_once(
    kubelet: KubeletServer,
    attributor: PodAttributor,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    uuid = "GPU-00000000-0000-4000-8000-000000000001"
    kubelet.servicer.pods = [pod("p1", "ns", "c", ("nvidia.com/gpu", [uuid]))]
    good = attributor.attributions()

    with caplog.at_level(logging.INFO, logger=LOGGER):
        kubelet.servicer.abort = (grpc.StatusCode.UNAVAILABLE, "kubelet busy")
        for _ in range(2):
            clock.now_s += REFRESH_S
            assert attributor.attributions() == good
        kubelet.servicer.abort = (grpc.StatusCode.INTERNAL, "boom")
        clock.now_s += REFRESH_S
        assert attributor.attributions() == good
        assert kubelet.servicer.calls == 4

        kubelet.servicer.abort = None
        clock.now_s += REFRESH_S
        assert attributor.attributions() == good

    logged = warnings(caplog)
    assert len(logged) == 2
    assert "UNAVAILABLE: kubelet busy" in logged[0]
    assert "keeping the last attribution of 1 GPU(s)" in logged[0]
    assert "INTERNAL: boom" in logged[1]
    assert any("answers again" in r.getMessage() for r in caplog.records if r.levelno == 20)


def test_a_hung_kubelet_costs_at_most_timeout_s(
    kubelet: KubeletServer, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    hold = threading.Event()
    kubelet.servicer.hold = hold
    attributor = PodAttributor(kubelet.socket_path, clock=clock, timeout_s=0.2)
    try:
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            assert attributor.attributions() == {}
    finally:
        hold.set()
        attributor.close()
    (message,) = warnings(caplog)
    assert "DEADLINE_EXCEEDED" in message
    assert "GPUs not attributed" in message
