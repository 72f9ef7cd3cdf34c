"""`k8s.deployment.set_resources`: one container's requests and limits, as `kubectl set
resources` sets them.

Invariants: quantities are checked before anything is sent (MALFORMED otherwise);
the patch is a strategic merge whose `containers` list merges by `name`, holding
only the one container and only the values that differ, so no other container or
resource is touched. `limits_gpu` is `nvidia.com/gpu`; where the container already
requests GPUs, the request moves with the limit (the API requires them equal).
"""

from __future__ import annotations

import re
from typing import Any

from kubernetes import client

from edge_agent.actions.base import ActionContext, Outcome, Params
from edge_agent.actions.kube_client import KubeAction, Step
from edge_agent.actions.kubernetes import DeploymentRef, patch_deployment, read_deployment
from edge_agent.actions.params import change, optional_integer, optional_text, text
from sentinel.actions import CATALOGUE
from sentinel.refusals import CommandRefused, ExecutionFailed, Reason

GPU_RESOURCE = "nvidia.com/gpu"
# Parameter -> (section, resource name) in a container's `resources`.
RESOURCE_PARAMS: dict[str, tuple[str, str]] = {
    "requests_cpu": ("requests", "cpu"),
    "requests_memory": ("requests", "memory"),
    "limits_cpu": ("limits", "cpu"),
    "limits_memory": ("limits", "memory"),
    "limits_gpu": ("limits", GPU_RESOURCE),
}
# A Kubernetes quantity without a sign (requests and limits cannot be negative).
QUANTITY = re.compile(r"(\d+(\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?")


class SetResources(KubeAction):
    spec = CATALOGUE["k8s.deployment.set_resources"]

    def check_params(self, params: Params) -> None:
        _wanted_resources(params)

    def step(self, params: Params, ctx: ActionContext) -> Step:
        ref, container_name = DeploymentRef.of(params), text(params, "container")
        current = _resources(_container(read_deployment(ctx, ref), container_name, ref))
        wanted = _wanted_resources(params)
        if ("limits", GPU_RESOURCE) in wanted and ("requests", GPU_RESOURCE) in current:
            # Extended resources must request what they limit, or the API rejects the spec.
            wanted[("requests", GPU_RESOURCE)] = wanted[("limits", GPU_RESOURCE)]
        delta = {key: value for key, value in wanted.items() if current.get(key) != value}
        if not delta:
            return Step(
                Outcome((), f"container {container_name} of {ref.what} is already as asked")
            )
        body = _resources_patch(container_name, delta)

        def apply() -> Outcome:
            done = _container(patch_deployment(ctx, ref, body), container_name, ref)
            after = _resources(done)
            return _resourced(ref, container_name, current, {k: after.get(k, "") for k in delta})

        return Step(_resourced(ref, container_name, current, delta), apply)


def _wanted_resources(params: Params) -> dict[tuple[str, str], str]:
    """(section, resource) -> quantity for each resource parameter given; MALFORMED if none."""
    wanted = {
        key: quantity
        for param, key in RESOURCE_PARAMS.items()
        if (quantity := _quantity(params, param)) is not None
    }
    if not wanted:
        raise CommandRefused(Reason.MALFORMED, f"give at least one of {', '.join(RESOURCE_PARAMS)}")
    return wanted


def _quantity(params: Params, param: str) -> str | None:
    """The parameter as a Kubernetes quantity, None if absent; MALFORMED if it is not one."""
    if param == "limits_gpu":  # a count of whole GPUs, typed as an integer
        gpus = optional_integer(params, param)
        if gpus is not None and gpus < 0:
            raise CommandRefused(Reason.MALFORMED, "limits_gpu must be 0 or more")
        return None if gpus is None else str(gpus)
    quantity = optional_text(params, param)
    if quantity is not None and not QUANTITY.fullmatch(quantity):
        raise CommandRefused(Reason.MALFORMED, f"{param} {quantity!r} is not a Kubernetes quantity")
    return quantity


def _container(
    deployment: client.V1Deployment, container_name: str, ref: DeploymentRef
) -> client.V1Container:
    pod_spec = deployment.spec.template.spec
    containers = pod_spec.containers if pod_spec else []
    for container in containers:
        if container.name == container_name:
            return container
    names = ", ".join(c.name for c in containers) or "none"
    raise ExecutionFailed(
        f"{ref.what} has no container {container_name!r}; its containers: {names}"
    )


def _resources(container: client.V1Container) -> dict[tuple[str, str], str]:
    resources = container.resources
    found: dict[tuple[str, str], str] = {}
    for section in ("requests", "limits"):
        for resource, quantity in (getattr(resources, section, None) or {}).items():
            found[(section, resource)] = str(quantity)
    return found


def _resources_patch(container_name: str, delta: dict[tuple[str, str], str]) -> dict[str, Any]:
    """Strategic merge: `containers` merge by `name`, so only this container changes."""
    resources: dict[str, dict[str, str]] = {}
    for (section, resource), quantity in delta.items():
        resources.setdefault(section, {})[resource] = quantity
    container = {"name": container_name, "resources": resources}
    return {"spec": {"template": {"spec": {"containers": [container]}}}}


def _resourced(
    ref: DeploymentRef,
    container_name: str,
    before: dict[tuple[str, str], str],
    after: dict[tuple[str, str], str],
) -> Outcome:
    changes = tuple(
        change(
            ref.resource,
            f'spec.template.spec.containers["{container_name}"].resources.{section}["{name}"]',
            before.get((section, name), ""),
            quantity,
            f"set {section} {name} of container {container_name} to {quantity}",
        )
        for (section, name), quantity in sorted(after.items())
    )
    return Outcome(changes, f"set resources of container {container_name} of {ref.what}")
