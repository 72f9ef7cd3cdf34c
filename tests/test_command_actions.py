"""Actions end to end through the hub: a cluster-actor agent scales a Deployment on the
Kubernetes stand-in (and in shadow mode plans it without a write), reports the labels of
its Kubernetes Node, and `node.labels.set` reaches the hub's fleet view at once."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from edge_agent.actions.base import ActionSettings
from edge_agent.app import Agent
from edge_agent.settings import CommandSettings
from hub.app import Hub
from sentinel.tls import secure_aio_channel
from sentinel.v1 import command_pb2, command_pb2_grpc
from tests.command_helpers import quiet_agent_settings, recording_systemctl, started
from tests.conftest import Pki, within
from tests.kube_standin import KubeStandIn, running_standin
from tests.test_commands import finished, issue

S = command_pb2


@pytest.fixture
def kube() -> Iterator[KubeStandIn]:
    with running_standin() as api:
        api.add_node("node-a", labels={"topology.kubernetes.io/zone": "eu-1a"})
        api.add_deployment("ml", "trainer", replicas=2)
        yield api


@pytest.fixture
async def actor(pki: Pki, hub: Hub, kube: KubeStandIn, tmp_path: Path) -> AsyncIterator[Agent]:
    script, _ = recording_systemctl(tmp_path)
    settings = quiet_agent_settings(pki, hub, tmp_path / "agent", "node-a", script, role="gpu")
    actions = ActionSettings(
        allowed_actions=frozenset({"k8s.deployment.scale", "node.labels.set"}),
        kubernetes=True,
        kubeconfig=kube.write_kubeconfig(tmp_path / "kubeconfig"),
        cluster_actor=True,
    )
    agent = await started(replace(settings, commands=CommandSettings(actions=actions)), hub)
    yield agent
    await agent.stop()


@pytest.fixture
async def operator(hub: Hub, pki: Pki) -> AsyncIterator[command_pb2_grpc.CommandServiceStub]:
    async with secure_aio_channel(hub.address, pki.user("operator")) as channel:
        yield command_pb2_grpc.CommandServiceStub(channel)


def scale(replicas: int, **fields: object) -> dict[str, object]:
    return {
        "target": S.CommandTarget(node_id="node-a"),
        "action": "k8s.deployment.scale",
        "parameters": {
            "namespace": S.ParameterValue(string_value="ml"),
            "name": S.ParameterValue(string_value="trainer"),
            "replicas": S.ParameterValue(int_value=replicas),
        },
        **fields,
    }


async def test_scale_through_the_hub_changes_the_deployment_and_shadow_does_not(
    actor: Agent, kube: KubeStandIn, operator: command_pb2_grpc.CommandServiceStub
) -> None:
    shadow = await issue(operator, **scale(5, mode=S.COMMAND_MODE_SHADOW))
    planned = (await finished(operator, shadow.command_id)).nodes[0]
    assert planned.state == S.COMMAND_STATE_PLANNED
    assert [(c.from_value, c.to_value) for c in planned.plan] == [("2", "5")]
    assert kube.writes() == []
    assert kube.deployments[("ml", "trainer")]["spec"]["replicas"] == 2

    command = await issue(operator, **scale(5))
    done = (await finished(operator, command.command_id)).nodes[0]
    assert done.state == S.COMMAND_STATE_EXECUTED
    assert [(c.from_value, c.to_value) for c in done.plan] == [("2", "5")]
    assert kube.deployments[("ml", "trainer")]["spec"]["replicas"] == 5
    assert len(kube.writes()) == 1


async def test_node_labels_come_from_kubernetes_and_from_the_labels_action(
    actor: Agent, hub: Hub, operator: command_pb2_grpc.CommandServiceStub
) -> None:
    node = hub.registry.get("node-a")
    assert node is not None
    assert node.labels["topology.kubernetes.io/zone"] == "eu-1a"
    assert node.labels["role"] == "gpu"
    command = await issue(
        operator,
        target=S.CommandTarget(node_id="node-a"),
        action="node.labels.set",
        parameters={"labels": S.ParameterValue(string_value="pool=canary,role=")},
    )
    assert (await finished(operator, command.command_id)).state == S.COMMAND_STATE_EXECUTED

    def relabelled() -> bool:
        labels = hub.registry.get("node-a").labels  # type: ignore[union-attr]
        return labels.get("pool") == "canary" and "role" not in labels

    await within(hub.registry.wait_for(relabelled))
    assert actor.labels.current()["pool"] == "canary"
