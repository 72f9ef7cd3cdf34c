"""The Deployment actions `k8s.deployment.scale` and `k8s.deployment.restart`, and the
Deployment reads and writes they share with `kube_resources` (`set_resources`).

Each sends exactly what kubectl sends for the same intent, through the official
client: `kubectl scale` (a merge patch of the `scale` subresource) and `kubectl
rollout restart` (a strategic-merge patch of the template's `restartedAt`
annotation, RFC 3339, here always UTC). Invariants: `plan` only reads (GET);
`execute` writes only what differs from what it read, and reports the values the
API answered with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes import client

from edge_agent.actions.base import ActionContext, Outcome, Params
from edge_agent.actions.kube_client import (
    MERGE_PATCH,
    REQUEST_TIMEOUT_S,
    STRATEGIC_MERGE_PATCH,
    KubeAction,
    Step,
    api_client,
    api_errors,
)
from edge_agent.actions.params import change, integer, text
from sentinel.actions import CATALOGUE
from sentinel.refusals import CommandRefused, ExecutionFailed, Reason

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


@dataclass(frozen=True, slots=True)
class DeploymentRef:
    namespace: str
    name: str

    @classmethod
    def of(cls, params: Params) -> DeploymentRef:
        return cls(text(params, "namespace"), text(params, "name"))

    @property
    def what(self) -> str:
        """How messages name it: `deployment ns/name`."""
        return f"deployment {self.namespace}/{self.name}"

    @property
    def resource(self) -> str:
        """How a PlannedChange names it: `deployment/ns/name`."""
        return f"deployment/{self.namespace}/{self.name}"


def _apps(ctx: ActionContext) -> client.AppsV1Api:
    return client.AppsV1Api(api_client(ctx))


def read_deployment(ctx: ActionContext, ref: DeploymentRef) -> client.V1Deployment:
    with api_errors(ref.what):
        return _apps(ctx).read_namespaced_deployment(
            ref.name, ref.namespace, _request_timeout=REQUEST_TIMEOUT_S
        )


def patch_deployment(
    ctx: ActionContext, ref: DeploymentRef, body: dict[str, Any]
) -> client.V1Deployment:
    """A strategic-merge patch, as kubectl sends for Deployments."""
    with api_errors(ref.what):
        return _apps(ctx).patch_namespaced_deployment(
            ref.name,
            ref.namespace,
            body,
            _content_type=STRATEGIC_MERGE_PATCH,
            _request_timeout=REQUEST_TIMEOUT_S,
        )


class ScaleDeployment(KubeAction):
    spec = CATALOGUE["k8s.deployment.scale"]

    def check_params(self, params: Params) -> None:
        if integer(params, "replicas") < 0:
            raise CommandRefused(Reason.MALFORMED, "replicas must be 0 or more")

    def step(self, params: Params, ctx: ActionContext) -> Step:
        ref, replicas, apps = DeploymentRef.of(params), integer(params, "replicas"), _apps(ctx)
        with api_errors(ref.what):
            scale = apps.read_namespaced_deployment_scale(
                ref.name, ref.namespace, _request_timeout=REQUEST_TIMEOUT_S
            )
        current = _replicas(scale)
        if current == replicas:
            return Step(Outcome((), f"{ref.what} already has {replicas} replicas"))

        def apply() -> Outcome:
            with api_errors(ref.what):
                done = apps.patch_namespaced_deployment_scale(
                    ref.name,
                    ref.namespace,
                    {"spec": {"replicas": replicas}},
                    _content_type=MERGE_PATCH,  # as `kubectl scale` sends it
                    _request_timeout=REQUEST_TIMEOUT_S,
                )
            return _scaled(ref, current, _replicas(done))

        return Step(_scaled(ref, current, replicas), apply)


def _replicas(scale: client.V1Scale) -> int:
    # The API omits a replica count of 0 (omitempty).
    return int((scale.spec and scale.spec.replicas) or 0)


def _scaled(ref: DeploymentRef, from_replicas: int, to_replicas: int) -> Outcome:
    summary = f"scale {ref.what} from {from_replicas} to {to_replicas} replicas"
    replicas = change(ref.resource, "spec.replicas", str(from_replicas), str(to_replicas), summary)
    return Outcome((replicas,), summary)


class RestartDeployment(KubeAction):
    spec = CATALOGUE["k8s.deployment.restart"]

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._clock = clock

    def step(self, params: Params, ctx: ActionContext) -> Step:
        ref = DeploymentRef.of(params)
        deployment = read_deployment(ctx, ref)
        if deployment.spec.paused:
            # kubectl refuses too: a paused Deployment would not roll.
            raise ExecutionFailed(f"{ref.what} is paused; resume it before restarting it")
        before = _restarted_at(deployment)
        # kubectl writes time.RFC3339 of the local clock; the agent always writes UTC.
        stamp = self._clock().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}

        def apply() -> Outcome:
            return _restarted(ref, before, _restarted_at(patch_deployment(ctx, ref, body)))

        return Step(_restarted(ref, before, stamp), apply)


def _restarted_at(deployment: client.V1Deployment) -> str:
    """The template's restartedAt annotation; "" if it has none."""
    meta = deployment.spec.template.metadata
    return str(((meta and meta.annotations) or {}).get(RESTARTED_AT, ""))


def _restarted(ref: DeploymentRef, before: str, stamp: str) -> Outcome:
    field = f'spec.template.metadata.annotations["{RESTARTED_AT}"]'
    summary = f"rolling restart of {ref.what}"
    return Outcome((change(ref.resource, field, before, stamp, summary),), summary)
