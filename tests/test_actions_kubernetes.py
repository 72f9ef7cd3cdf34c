"""The Kubernetes actions, through the official `kubernetes` client, against the stand-in
API server of `tests.kube_standin` (no API server can run on these machines).

Each action: plan sends only GETs and changes no object; execute sends exactly the
request kubectl would (asserted byte for byte as parsed JSON, with its patch type)
and the stand-in's object ends exactly as expected; every refusal and failure gives
its exact one-line message.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from edge_agent.actions import REGISTRY
from edge_agent.actions.base import ActionContext, ActionSettings, Outcome
from edge_agent.actions.kube_client import api_client, close_api_client, read_node_labels
from edge_agent.actions.kube_nodes import Cordon, EvictPod, Uncordon
from edge_agent.actions.kube_resources import SetResources
from edge_agent.actions.kubernetes import RestartDeployment, ScaleDeployment
from sentinel.actions import CATALOGUE, ParamValue, Scope
from sentinel.errors import Unavailable
from sentinel.refusals import ExecutionFailed, Reason
from tests.kube_standin import (
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    KubeStandIn,
    Recorded,
    running_standin,
)
from tests.test_actions import MemoryLabels, change, refused

DEPLOYMENT = "/apis/apps/v1/namespaces/ml/deployments/trainer"
NODE = "/api/v1/nodes/node-a"
POD = "/api/v1/namespaces/ml/pods/trainer-7f9c"
TARGET = {"namespace": "ml", "name": "trainer"}
TRAINER = {
    "name": "trainer",
    "image": "registry.example/trainer:3",
    "resources": {
        "requests": {"cpu": "4", "nvidia.com/gpu": "1"},
        "limits": {"nvidia.com/gpu": "1"},
    },
}
SIDECAR = {
    "name": "sidecar",
    "image": "registry.example/log:1",
    "resources": {"requests": {"cpu": "100m"}},
}
KUBE_ACTIONS = sorted(name for name in CATALOGUE if name.startswith("k8s."))
CLUSTER_ACTIONS = [name for name in KUBE_ACTIONS if CATALOGUE[name].scope is Scope.CLUSTER]


@pytest.fixture
def kube() -> Iterator[KubeStandIn]:
    with running_standin() as api:
        api.add_node("node-a", labels={"zone": "eu-1"})
        api.add_deployment("ml", "trainer", replicas=2, containers=[TRAINER, SIDECAR])
        api.add_pod("ml", "trainer-7f9c", node="node-a")
        yield api


def settings_for(kubeconfig: Path | None, **fields: Any) -> ActionSettings:
    fields.setdefault("cluster_actor", True)
    return ActionSettings(kubernetes=True, kubeconfig=kubeconfig, **fields)


@pytest.fixture
def kubeconfig(kube: KubeStandIn, tmp_path: Path) -> Path:
    return kube.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def ctx(kubeconfig: Path) -> Iterator[ActionContext]:
    context = ActionContext("node-a", settings_for(kubeconfig), MemoryLabels())
    yield context
    close_api_client(context)


def failure(call: Any, *args: Any) -> str:
    with pytest.raises(ExecutionFailed) as info:
        call(*args)
    return info.value.message


def gets(*paths: str) -> list[Recorded]:
    return [Recorded("GET", path, "", "", None) for path in paths]


# -- scope ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("action", KUBE_ACTIONS)
def test_a_node_without_kubernetes_refuses(action: str) -> None:
    ctx = ActionContext("node-a", ActionSettings(), MemoryLabels())
    message = f"this node does not act for Kubernetes ({action} needs Kubernetes configured)"
    with refused(Reason.BAD_TARGET, message):
        REGISTRY[action].check({}, ctx)


@pytest.mark.parametrize("action", CLUSTER_ACTIONS)
def test_cluster_actions_run_only_on_the_cluster_actor(
    action: str, kube: KubeStandIn, kubeconfig: Path
) -> None:
    ctx = ActionContext("node-a", settings_for(kubeconfig, cluster_actor=False), MemoryLabels())
    message = (
        f"{action} changes the cluster and this node is not the cluster actor;"
        " target the node that acts for the cluster"
    )
    with refused(Reason.BAD_TARGET, message):
        REGISTRY[action].check({**TARGET, "replicas": 1, "container": "trainer"}, ctx)
    assert kube.requests == []


def test_node_actions_run_on_any_kubernetes_node(kube: KubeStandIn, kubeconfig: Path) -> None:
    ctx = ActionContext("node-a", settings_for(kubeconfig, cluster_actor=False), MemoryLabels())
    Cordon().check({}, ctx)
    assert Cordon().execute({}, ctx).changes[0].to_value == "true"
    close_api_client(ctx)


# -- k8s.deployment.scale ----------------------------------------------------------------------


def test_scale_plan_reads_the_scale_and_writes_nothing(
    kube: KubeStandIn, ctx: ActionContext
) -> None:
    before = kube.deployments[("ml", "trainer")]
    ScaleDeployment().check({**TARGET, "replicas": 5}, ctx)
    outcome = ScaleDeployment().plan({**TARGET, "replicas": 5}, ctx)
    summary = "scale deployment ml/trainer from 2 to 5 replicas"
    assert outcome == Outcome(
        (change("deployment/ml/trainer", "spec.replicas", "2", "5", summary),), summary
    )
    assert kube.requests == gets(DEPLOYMENT + "/scale")
    assert kube.deployments[("ml", "trainer")] is before


def test_scale_execute_patches_the_scale_subresource(kube: KubeStandIn, ctx: ActionContext) -> None:
    outcome = ScaleDeployment().execute({**TARGET, "replicas": 5}, ctx)
    assert kube.writes() == [
        Recorded("PATCH", DEPLOYMENT + "/scale", "", MERGE_PATCH, {"spec": {"replicas": 5}})
    ]
    deployment = kube.deployments[("ml", "trainer")]
    assert (deployment["spec"]["replicas"], deployment["metadata"]["generation"]) == (5, 2)
    assert [(c.from_value, c.to_value) for c in outcome.changes] == [("2", "5")]


def test_scale_to_zero_reads_back_the_omitted_count(kube: KubeStandIn, ctx: ActionContext) -> None:
    outcome = ScaleDeployment().execute({**TARGET, "replicas": 0}, ctx)
    assert kube.deployments[("ml", "trainer")]["spec"]["replicas"] == 0
    assert [(c.from_value, c.to_value) for c in outcome.changes] == [("2", "0")]
    again = ScaleDeployment().execute({**TARGET, "replicas": 0}, ctx)
    assert again == Outcome((), "deployment ml/trainer already has 0 replicas")
    assert len(kube.writes()) == 1


def test_scale_refuses_a_negative_count(ctx: ActionContext) -> None:
    with refused(Reason.MALFORMED, "replicas must be 0 or more"):
        ScaleDeployment().check({**TARGET, "replicas": -1}, ctx)


def test_scale_of_a_missing_deployment_fails(kube: KubeStandIn, ctx: ActionContext) -> None:
    params = {"namespace": "ml", "name": "ghost", "replicas": 3}
    assert failure(ScaleDeployment().execute, params, ctx) == "deployment ml/ghost not found"
    assert kube.writes() == []


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        (409, "the object has been modified", "409 Conflict: the object has been modified"),
        (
            500,
            "etcdserver: request timed out",
            "500 Internal Server Error: etcdserver: request timed out",
        ),
    ],
)
def test_scale_api_errors_fail_with_status_and_message(
    kube: KubeStandIn, ctx: ActionContext, code: int, message: str, expected: str
) -> None:
    kube.fail_next("PATCH", code, message)
    got = failure(ScaleDeployment().execute, {**TARGET, "replicas": 5}, ctx)
    assert got == f"deployment ml/trainer: {expected}"
    assert kube.deployments[("ml", "trainer")]["spec"]["replicas"] == 2


# -- k8s.deployment.restart --------------------------------------------------------------------

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


def at(when: str, tz: timezone = UTC) -> RestartDeployment:
    """The restart executor with its clock stopped at `when` (ISO 8601, in zone `tz`)."""
    stopped = datetime.fromisoformat(when).replace(tzinfo=tz)
    return RestartDeployment(clock=lambda: stopped)


def test_restart_plan_writes_nothing(kube: KubeStandIn, ctx: ActionContext) -> None:
    outcome = at("2026-03-01T12:30:45").plan(TARGET, ctx)
    field = f'spec.template.metadata.annotations["{RESTARTED_AT}"]'
    summary = "rolling restart of deployment ml/trainer"
    assert outcome == Outcome(
        (change("deployment/ml/trainer", field, "", "2026-03-01T12:30:45Z", summary),), summary
    )
    assert kube.requests == gets(DEPLOYMENT)


def test_restart_patches_the_template_annotation_in_utc(
    kube: KubeStandIn, ctx: ActionContext
) -> None:
    # 14:30:45 at UTC+2 is 12:30:45Z: the agent writes UTC whatever its clock's zone.
    at("2026-03-01T14:30:45", tz=timezone(timedelta(hours=2))).execute(TARGET, ctx)
    stamp = "2026-03-01T12:30:45Z"
    body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
    assert kube.writes() == [Recorded("PATCH", DEPLOYMENT, "", STRATEGIC_MERGE_PATCH, body)]
    template = kube.deployments[("ml", "trainer")]["spec"]["template"]
    assert template["metadata"] == {
        "labels": {"app": "trainer"},
        "annotations": {RESTARTED_AT: stamp},
    }
    assert template["spec"]["containers"] == [TRAINER, SIDECAR]
    later = at("2026-03-02T08:00:00").execute(TARGET, ctx)
    assert (later.changes[0].from_value, later.changes[0].to_value) == (
        stamp,
        "2026-03-02T08:00:00Z",
    )


def test_restart_of_a_paused_deployment_fails(kube: KubeStandIn, ctx: ActionContext) -> None:
    kube.add_deployment("ml", "paused", paused=True)
    message = failure(at("2026-03-01T00:00:00").execute, {"namespace": "ml", "name": "paused"}, ctx)
    assert message == "deployment ml/paused is paused; resume it before restarting it"
    assert kube.writes() == []


# -- k8s.deployment.set_resources --------------------------------------------------------------

GPU_PARAMS: dict[str, ParamValue] = {
    **TARGET,
    "container": "trainer",
    "requests_memory": "64Gi",
    "limits_gpu": 2,
}


def test_set_resources_plan_writes_nothing(kube: KubeStandIn, ctx: ActionContext) -> None:
    SetResources().check(GPU_PARAMS, ctx)
    outcome = SetResources().plan(GPU_PARAMS, ctx)
    path = 'spec.template.spec.containers["trainer"].resources'
    assert [(c.field, c.from_value, c.to_value) for c in outcome.changes] == [
        (f'{path}.limits["nvidia.com/gpu"]', "1", "2"),
        (f'{path}.requests["memory"]', "", "64Gi"),
        (f'{path}.requests["nvidia.com/gpu"]', "1", "2"),
    ]
    assert outcome.changes[0].description == "set limits nvidia.com/gpu of container trainer to 2"
    assert kube.requests == gets(DEPLOYMENT)


def test_set_resources_patches_one_container_merged_by_name(
    kube: KubeStandIn, ctx: ActionContext
) -> None:
    SetResources().execute(GPU_PARAMS, ctx)
    container = {
        "name": "trainer",
        "resources": {
            "requests": {"memory": "64Gi", "nvidia.com/gpu": "2"},
            "limits": {"nvidia.com/gpu": "2"},
        },
    }
    body = {"spec": {"template": {"spec": {"containers": [container]}}}}
    assert kube.writes() == [Recorded("PATCH", DEPLOYMENT, "", STRATEGIC_MERGE_PATCH, body)]
    containers = kube.deployments[("ml", "trainer")]["spec"]["template"]["spec"]["containers"]
    assert containers == [
        {
            **TRAINER,
            "resources": {
                "requests": {"cpu": "4", "memory": "64Gi", "nvidia.com/gpu": "2"},
                "limits": {"nvidia.com/gpu": "2"},
            },
        },
        SIDECAR,
    ]


def test_set_resources_already_as_asked_writes_nothing(
    kube: KubeStandIn, ctx: ActionContext
) -> None:
    params = {**TARGET, "container": "sidecar", "requests_cpu": "100m"}
    outcome = SetResources().execute(params, ctx)
    assert outcome == Outcome((), "container sidecar of deployment ml/trainer is already as asked")
    assert kube.writes() == []


def test_set_resources_of_an_unknown_container_names_the_real_ones(
    kube: KubeStandIn, ctx: ActionContext
) -> None:
    params = {**TARGET, "container": "web", "limits_cpu": "2"}
    assert failure(SetResources().plan, params, ctx) == (
        "deployment ml/trainer has no container 'web'; its containers: trainer, sidecar"
    )
    assert kube.writes() == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {},
            "give at least one of requests_cpu, requests_memory,"
            " limits_cpu, limits_memory, limits_gpu",
        ),
        ({"requests_cpu": "lots"}, "requests_cpu 'lots' is not a Kubernetes quantity"),
        ({"limits_memory": "-1Gi"}, "limits_memory '-1Gi' is not a Kubernetes quantity"),
        ({"limits_gpu": -1}, "limits_gpu must be 0 or more"),
    ],
)
def test_set_resources_refuses_malformed_quantities(
    ctx: ActionContext, extra: dict[str, Any], message: str
) -> None:
    with refused(Reason.MALFORMED, message):
        SetResources().check({**TARGET, "container": "trainer", **extra}, ctx)


# -- k8s.node.cordon / uncordon ----------------------------------------------------------------


def test_cordon_plan_writes_nothing(kube: KubeStandIn, ctx: ActionContext) -> None:
    outcome = Cordon().plan({}, ctx)
    summary = "node node-a: schedulable -> cordoned (unschedulable)"
    assert outcome == Outcome(
        (change("node/node-a", "spec.unschedulable", "false", "true", summary),), summary
    )
    assert kube.requests == gets(NODE)


def test_cordon_then_uncordon_patch_as_kubectl_does(kube: KubeStandIn, ctx: ActionContext) -> None:
    version = kube.nodes["node-a"]["metadata"]["resourceVersion"]
    Cordon().execute({}, ctx)
    assert kube.nodes["node-a"]["spec"] == {"podCIDR": "10.244.0.0/24", "unschedulable": True}
    assert kube.nodes["node-a"]["metadata"]["resourceVersion"] != version
    assert Cordon().execute({}, ctx) == Outcome(
        (), "node node-a is already cordoned (unschedulable)"
    )
    outcome = Uncordon().execute({}, ctx)
    assert kube.nodes["node-a"]["spec"] == {"podCIDR": "10.244.0.0/24"}
    assert [(c.from_value, c.to_value) for c in outcome.changes] == [("true", "false")]
    assert kube.writes() == [
        Recorded("PATCH", NODE, "", STRATEGIC_MERGE_PATCH, {"spec": {"unschedulable": True}}),
        Recorded("PATCH", NODE, "", STRATEGIC_MERGE_PATCH, {"spec": {"unschedulable": None}}),
    ]


def test_cordon_uses_the_configured_node_name(kube: KubeStandIn, kubeconfig: Path) -> None:
    kube.add_node("gpu-node-7")
    settings = settings_for(kubeconfig, k8s_node_name="gpu-node-7")
    ctx = ActionContext("node-a", settings, MemoryLabels())
    Cordon().execute({}, ctx)
    close_api_client(ctx)
    assert [r.path for r in kube.writes()] == ["/api/v1/nodes/gpu-node-7"]
    assert "unschedulable" not in kube.nodes["node-a"]["spec"]


def test_cordon_of_a_missing_node_fails(kube: KubeStandIn, ctx: ActionContext) -> None:
    del kube.nodes["node-a"]
    assert failure(Cordon().execute, {}, ctx) == "node node-a not found"


# -- k8s.pod.evict -----------------------------------------------------------------------------

EVICTED = {"namespace": "ml", "name": "trainer-7f9c"}


def test_evict_plan_writes_nothing(kube: KubeStandIn, ctx: ActionContext) -> None:
    outcome = EvictPod().plan(EVICTED, ctx)
    assert outcome == Outcome(
        (
            change(
                "pod/ml/trainer-7f9c",
                "",
                "Running on node-a",
                "evicted",
                "evict pod ml/trainer-7f9c (honours PDBs)",
            ),
        ),
        "would evict pod ml/trainer-7f9c (Running on node-a)",
    )
    assert kube.requests == gets(POD)
    assert ("ml", "trainer-7f9c") in kube.pods


def test_evict_creates_a_policy_v1_eviction(kube: KubeStandIn, ctx: ActionContext) -> None:
    outcome = EvictPod().execute(EVICTED, ctx)
    eviction = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": "trainer-7f9c", "namespace": "ml"},
    }
    assert kube.writes() == [Recorded("POST", POD + "/eviction", "", "application/json", eviction)]
    assert ("ml", "trainer-7f9c") not in kube.pods
    assert outcome.message == "evicted pod ml/trainer-7f9c"


def test_evict_forbidden_by_a_disruption_budget_fails_clearly(
    kube: KubeStandIn, ctx: ActionContext
) -> None:
    kube.budgets[("ml", "trainer-7f9c")] = "trainer-pdb"
    assert failure(EvictPod().execute, EVICTED, ctx) == (
        "pod ml/trainer-7f9c cannot be evicted now: a PodDisruptionBudget forbids it"
        " (429 Too Many Requests: The disruption budget trainer-pdb needs 1 healthy pods"
        " and has 1 currently); nothing was changed"
    )
    assert ("ml", "trainer-7f9c") in kube.pods


def test_evict_rate_limited_by_the_api_server_is_not_blamed_on_a_budget(
    kube: KubeStandIn, ctx: ActionContext
) -> None:
    kube.fail_next("POST", 429, "Too many requests, please try again later.")
    assert failure(EvictPod().execute, EVICTED, ctx) == (
        "pod ml/trainer-7f9c: 429 Too Many Requests: Too many requests, please try again later."
    )


def test_evict_of_a_missing_pod_fails(kube: KubeStandIn, ctx: ActionContext) -> None:
    message = failure(EvictPod().plan, {"namespace": "ml", "name": "ghost"}, ctx)
    assert message == "pod ml/ghost not found"


# -- configuration, credentials, transport -------------------------------------------------------


def test_one_api_client_per_context(kube: KubeStandIn, ctx: ActionContext) -> None:
    first = api_client(ctx)
    ScaleDeployment().plan({**TARGET, "replicas": 3}, ctx)
    Cordon().plan({}, ctx)
    assert api_client(ctx) is first
    assert list(ctx.cache.values()) == [first]


def test_a_wrong_token_fails_with_401(kube: KubeStandIn, tmp_path: Path) -> None:
    kubeconfig = kube.write_kubeconfig(tmp_path / "stale", token="expired")
    ctx = ActionContext("node-a", settings_for(kubeconfig), MemoryLabels())
    message = failure(ScaleDeployment().plan, {**TARGET, "replicas": 3}, ctx)
    close_api_client(ctx)
    assert message == "deployment ml/trainer: 401 Unauthorized: Unauthorized"


def test_an_unreachable_api_server_fails_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with running_standin() as api:
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    text = kubeconfig.read_text().replace(api.url, f"http://127.0.0.1:{port}")
    kubeconfig.write_text(text)
    ctx = ActionContext("node-a", settings_for(kubeconfig), MemoryLabels())
    message = failure(Cordon().plan, {}, ctx)
    close_api_client(ctx)
    assert message.startswith("node node-a: Kubernetes API unreachable: ")
    assert "Connection refused" in message
    assert "\n" not in message


def test_an_unusable_kubeconfig_fails_in_one_line(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("clusters: [")
    ctx = ActionContext("node-a", settings_for(kubeconfig), MemoryLabels())
    message = failure(Cordon().plan, {}, ctx)
    assert message.startswith(f"cannot load Kubernetes configuration from {kubeconfig}: ")


def test_in_cluster_configuration_outside_a_pod_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    ctx = ActionContext("node-a", settings_for(None), MemoryLabels())
    assert failure(Cordon().plan, {}, ctx) == (
        "cannot load Kubernetes configuration from the in-cluster service account:"
        " Service host/port is not set."
    )


# -- read_node_labels ----------------------------------------------------------------------------


def test_read_node_labels(kube: KubeStandIn, kubeconfig: Path) -> None:
    labels = read_node_labels(settings_for(kubeconfig), "node-a")
    assert labels == {"kubernetes.io/hostname": "node-a", "zone": "eu-1"}
    kube.add_node("gpu-node-7", labels={"pool": "h200"})
    named = read_node_labels(settings_for(kubeconfig, k8s_node_name="gpu-node-7"), "node-a")
    assert named == {"kubernetes.io/hostname": "gpu-node-7", "pool": "h200"}
    assert kube.writes() == []


def test_read_node_labels_without_kubernetes_asks_nothing(kube: KubeStandIn) -> None:
    assert read_node_labels(ActionSettings(), "node-a") == {}
    assert kube.requests == []


def test_read_node_labels_of_a_missing_node_is_unavailable(
    kube: KubeStandIn, kubeconfig: Path
) -> None:
    with pytest.raises(Unavailable) as info:
        read_node_labels(settings_for(kubeconfig), "node-x")
    assert (info.value.reason, info.value.message) == (
        "KUBERNETES_UNAVAILABLE",
        "node node-x not found",
    )


# -- the stand-in keeps the API's rules the executors rely on -------------------------------------


def raw(api: KubeStandIn, method: str, path: str, content_type: str, body: Any) -> tuple[int, Any]:
    request = urllib.request.Request(
        api.url + path,
        data=json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {api.token}", "Content-Type": content_type},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_standin_refuses_a_stale_resource_version_and_unknown_patch_types(
    kube: KubeStandIn,
) -> None:
    stale = {"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 9}}
    code, status = raw(kube, "PATCH", DEPLOYMENT, MERGE_PATCH, stale)
    assert (code, status["reason"], status["kind"]) == (409, "Conflict", "Status")
    json_patch = [{"op": "replace", "path": "/spec/replicas", "value": 9}]
    code, status = raw(kube, "PATCH", DEPLOYMENT, "application/json-patch+json", json_patch)
    assert (code, status["reason"]) == (415, "UnsupportedMediaType")
    assert kube.deployments[("ml", "trainer")]["spec"]["replicas"] == 2


def test_standin_merge_patch_replaces_lists_where_strategic_merge_merges_them(
    kube: KubeStandIn,
) -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "x"}]}}}}
    code, merged = raw(kube, "PATCH", DEPLOYMENT, STRATEGIC_MERGE_PATCH, patch)
    assert code == 200
    assert [c["name"] for c in merged["spec"]["template"]["spec"]["containers"]] == [
        "trainer",
        "sidecar",
    ]
    code, replaced = raw(kube, "PATCH", DEPLOYMENT, MERGE_PATCH, patch)
    assert replaced["spec"]["template"]["spec"]["containers"] == [{"name": "sidecar", "image": "x"}]
