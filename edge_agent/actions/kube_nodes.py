"""`k8s.node.cordon`, `k8s.node.uncordon` (this node's Node object) and `k8s.pod.evict`.

Cordon and uncordon send what `kubectl cordon`/`uncordon` send: a strategic-merge
patch of `spec.unschedulable` (true, or null to remove it), to the Node named
`settings.k8s_node_name` or, by default, the node id. Eviction creates a
`policy/v1` Eviction, so the API server enforces PodDisruptionBudgets: a budget that
forbids it answers 429 and the command fails saying so, with nothing changed.
Invariants: `plan` only reads (GET); nothing is written when already as asked.
"""

from __future__ import annotations

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from edge_agent.actions.base import ActionContext, Outcome, Params
from edge_agent.actions.kube_client import (
    REQUEST_TIMEOUT_S,
    STRATEGIC_MERGE_PATCH,
    KubeAction,
    Step,
    api_client,
    api_errors,
    node_name,
    status_causes,
    status_message,
)
from edge_agent.actions.params import change, text
from sentinel.actions import CATALOGUE, ActionSpec
from sentinel.refusals import ExecutionFailed

# Status.details.causes[].reason of a 429 that a PodDisruptionBudget caused.
DISRUPTION_BUDGET = "DisruptionBudget"


class _Schedulable(KubeAction):
    """Set this node's `spec.unschedulable` to `self.unschedulable`."""

    unschedulable: bool

    def step(self, params: Params, ctx: ActionContext) -> Step:
        name = node_name(ctx)
        what, core = f"node {name}", client.CoreV1Api(api_client(ctx))
        with api_errors(what):
            node = core.read_node(name, _request_timeout=REQUEST_TIMEOUT_S)
        before = bool(node.spec and node.spec.unschedulable)
        if before == self.unschedulable:
            return Step(Outcome((), f"{what} is already {_state(before)}"))
        # kubectl's two-way merge patch removes the field (null) rather than writing false.
        body = {"spec": {"unschedulable": True if self.unschedulable else None}}

        def apply() -> Outcome:
            with api_errors(what):
                done = core.patch_node(
                    name,
                    body,
                    _content_type=STRATEGIC_MERGE_PATCH,
                    _request_timeout=REQUEST_TIMEOUT_S,
                )
            return _scheduling(name, before, bool(done.spec and done.spec.unschedulable))

        return Step(_scheduling(name, before, self.unschedulable), apply)


class Cordon(_Schedulable):
    spec: ActionSpec = CATALOGUE["k8s.node.cordon"]
    unschedulable = True


class Uncordon(_Schedulable):
    spec: ActionSpec = CATALOGUE["k8s.node.uncordon"]
    unschedulable = False


def _state(unschedulable: bool) -> str:
    return "cordoned (unschedulable)" if unschedulable else "schedulable"


def _scheduling(name: str, before: bool, after: bool) -> Outcome:
    summary = f"node {name}: {_state(before)} -> {_state(after)}"
    unschedulable = change(
        f"node/{name}", "spec.unschedulable", str(before).lower(), str(after).lower(), summary
    )
    return Outcome((unschedulable,), summary)


class EvictPod(KubeAction):
    spec: ActionSpec = CATALOGUE["k8s.pod.evict"]

    def step(self, params: Params, ctx: ActionContext) -> Step:
        namespace, name = text(params, "namespace"), text(params, "name")
        what, core = f"pod {namespace}/{name}", client.CoreV1Api(api_client(ctx))
        with api_errors(what):
            pod = core.read_namespaced_pod(name, namespace, _request_timeout=REQUEST_TIMEOUT_S)
        where = f"{pod.status.phase if pod.status else 'Unknown'} on {_node_of(pod)}"
        evicted = change(
            f"pod/{namespace}/{name}", "", where, "evicted", f"evict {what} (honours PDBs)"
        )

        def apply() -> Outcome:
            _evict(core, namespace, name, what)
            return Outcome((evicted,), f"evicted {what}")

        return Step(Outcome((evicted,), f"would evict {what} ({where})"), apply)


def _node_of(pod: client.V1Pod) -> str:
    return (pod.spec and pod.spec.node_name) or "no node"


def _evict(core: client.CoreV1Api, namespace: str, name: str, what: str) -> None:
    eviction = client.V1Eviction(
        api_version="policy/v1",
        kind="Eviction",
        metadata=client.V1ObjectMeta(name=name, namespace=namespace),
    )
    with api_errors(what):
        try:
            core.create_namespaced_pod_eviction(
                name,
                namespace,
                eviction,
                # The generated client names no content type for this call; kubectl sends JSON.
                _headers={"Content-Type": "application/json"},
                _request_timeout=REQUEST_TIMEOUT_S,
            )
        except ApiException as exc:
            budget = _budget_messages(exc) if exc.status == 429 else None
            if budget is not None:
                raise ExecutionFailed(
                    f"{what} cannot be evicted now: a PodDisruptionBudget forbids it"
                    f" ({exc.status} {exc.reason}: {budget}); nothing was changed"
                ) from exc
            raise  # api_errors words it


def _budget_messages(exc: ApiException) -> str | None:
    """What the disruption budget causes say, or None when no budget caused the error
    (a 429 may also be the API server's own rate limiting)."""
    causes = [message for reason, message in status_causes(exc) if reason == DISRUPTION_BUDGET]
    if not causes:
        return None
    return "; ".join(cause for cause in causes if cause) or status_message(exc)
