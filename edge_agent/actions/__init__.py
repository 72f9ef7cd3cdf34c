"""The agent's action executors, found only through the explicit `REGISTRY`.

Invariants: `REGISTRY` holds exactly the names of `sentinel.actions.CATALOGUE`,
each mapped to an executor whose `spec` is that catalogue entry (a test holds both
to it); a name is looked up here only after the catalogue knew it, and never
imported or resolved dynamically. `executor_for` refuses any other name with
`UNKNOWN_ACTION`. The contract every executor keeps is in `base`.
"""

from __future__ import annotations

from collections.abc import Mapping

from edge_agent.actions.base import (
    ActionContext,
    ActionSettings,
    Executor,
    LabelStore,
    Outcome,
    Params,
    PowerControl,
)
from edge_agent.actions.gpu_power import SetPowerLimit
from edge_agent.actions.kube_client import close_api_client, read_node_labels
from edge_agent.actions.kube_nodes import Cordon, EvictPod, Uncordon
from edge_agent.actions.kube_resources import SetResources
from edge_agent.actions.kubernetes import RestartDeployment, ScaleDeployment
from edge_agent.actions.labels import SetLabels
from edge_agent.actions.nvml_power import NvmlPowerControl
from edge_agent.actions.ping import Ping
from edge_agent.actions.systemd import RestartUnit
from sentinel.refusals import CommandRefused, Reason

REGISTRY: Mapping[str, Executor] = {
    "agent.ping": Ping(),
    "k8s.deployment.scale": ScaleDeployment(),
    "k8s.deployment.restart": RestartDeployment(),
    "k8s.deployment.set_resources": SetResources(),
    "k8s.node.cordon": Cordon(),
    "k8s.node.uncordon": Uncordon(),
    "k8s.pod.evict": EvictPod(),
    "node.systemd.restart": RestartUnit(),
    "node.gpu.set_power_limit": SetPowerLimit(),
    "node.labels.set": SetLabels(),
}


def executor_for(name: str) -> Executor:
    """The executor of action `name`; CommandRefused(UNKNOWN_ACTION) for any other name."""
    executor = REGISTRY.get(name)
    if executor is None:
        raise CommandRefused(
            Reason.UNKNOWN_ACTION,
            f"this agent has no executor for action {name!r}; known: {', '.join(sorted(REGISTRY))}",
        )
    return executor


__all__ = [
    "REGISTRY",
    "ActionContext",
    "ActionSettings",
    "Executor",
    "LabelStore",
    "NvmlPowerControl",
    "Outcome",
    "Params",
    "PowerControl",
    "close_api_client",
    "executor_for",
    "read_node_labels",
]
