"""The agent's way into the Kubernetes API: one official-client `ApiClient` per context,
the checks every Kubernetes action shares, and API errors as one-line messages.

Invariants:
- Configuration comes from `settings.kubeconfig` when set, else the pod's service
  account (in-cluster); it is loaded into a private `Configuration`, never the
  client library's process-wide default, and the `ApiClient` is built once per
  `ActionContext` (kept in `ctx.cache`).
- Every request has a timeout, so a dead API server fails the command instead of
  holding the action thread.
- Nothing raised from here carries a traceback to the operator: API errors become
  `ExecutionFailed` with the HTTP status, its reason and the API's own message.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from edge_agent.actions.base import ActionContext, ActionSettings, Outcome, Params
from sentinel.actions import ActionSpec, Scope
from sentinel.errors import Unavailable
from sentinel.refusals import CommandRefused, ExecutionFailed, Reason

# (connect, read) seconds for every request.
REQUEST_TIMEOUT_S = (5.0, 30.0)
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
KUBERNETES_UNAVAILABLE = "KUBERNETES_UNAVAILABLE"
_CACHE_KEY = "kubernetes.api_client"
_BODY_CHARS = 200


def check_scope(spec: ActionSpec, settings: ActionSettings) -> None:
    """Refuse (BAD_TARGET) where Kubernetes is off, or a cluster action off the cluster actor."""
    if not settings.kubernetes:
        raise CommandRefused(
            Reason.BAD_TARGET,
            f"this node does not act for Kubernetes ({spec.name} needs Kubernetes configured)",
        )
    if spec.scope is Scope.CLUSTER and not settings.cluster_actor:
        raise CommandRefused(
            Reason.BAD_TARGET,
            f"{spec.name} changes the cluster and this node is not the cluster actor;"
            " target the node that acts for the cluster",
        )


def node_name(ctx: ActionContext) -> str:
    """This node's Kubernetes Node object."""
    return ctx.settings.k8s_node_name or ctx.node_id


def api_client(ctx: ActionContext) -> client.ApiClient:
    """The context's `ApiClient`, built on first use."""
    cached = ctx.cache.get(_CACHE_KEY)
    if not isinstance(cached, client.ApiClient):
        cached = ctx.cache[_CACHE_KEY] = new_api_client(ctx.settings)
    return cached


def close_api_client(ctx: ActionContext) -> None:
    """Close the context's `ApiClient` (its connection pool), if one was built."""
    cached = ctx.cache.pop(_CACHE_KEY, None)
    if isinstance(cached, client.ApiClient):
        cached.close()  # type: ignore[no-untyped-call]


def new_api_client(settings: ActionSettings) -> client.ApiClient:
    """An `ApiClient` for `settings`; ExecutionFailed if the configuration cannot be loaded."""
    configuration = client.Configuration()
    try:
        if settings.kubeconfig is not None:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=str(settings.kubeconfig),
                client_configuration=configuration,
                persist_config=False,  # the agent never rewrites an operator's kubeconfig
            )
        else:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except Exception as exc:
        # Loading parses an operator's file or the pod's service account files with several
        # libraries (YAML, base64, the loader's ConfigException): any failure is the same
        # one-line "cannot load" for the operator, never a traceback.
        where = settings.kubeconfig or "the in-cluster service account"
        raise ExecutionFailed(f"cannot load Kubernetes configuration from {where}: {exc}") from exc
    return client.ApiClient(configuration)


@contextmanager
def api_errors(what: str) -> Iterator[None]:
    """Turn API and transport errors in the block into ExecutionFailed; `what` names the object."""
    try:
        yield
    except ApiException as exc:
        if exc.status == 404:
            raise ExecutionFailed(f"{what} not found") from exc
        raise ExecutionFailed(f"{what}: {describe(exc)}") from exc
    except urllib3.exceptions.HTTPError as exc:
        raise ExecutionFailed(f"{what}: Kubernetes API unreachable: {exc}") from exc
    except ValueError as exc:  # pydantic's ValidationError: an answer the client cannot read
        raise ExecutionFailed(f"{what}: unexpected answer from the Kubernetes API: {exc}") from exc


def describe(exc: ApiException) -> str:
    """`429 Too Many Requests: <the API's message> (<causes>)`, from the Status in the body."""
    causes = [cause for _, cause in status_causes(exc) if cause]
    detail = f" ({'; '.join(causes)})" if causes else ""
    return f"{exc.status} {exc.reason}: {status_message(exc)}{detail}"


def status_message(exc: ApiException) -> str:
    """The API's own message in the error's `Status`."""
    return str(_status_object(exc.body).get("message") or "").strip() or "(no message)"


def status_causes(exc: ApiException) -> list[tuple[str, str]]:
    """(reason, message) of each cause in the error's `Status.details.causes`."""
    details = _status_object(exc.body).get("details")
    causes = details.get("causes") if isinstance(details, dict) else None
    return [
        (str(cause.get("reason") or ""), str(cause.get("message") or ""))
        for cause in causes or ()
        if isinstance(cause, dict)
    ]


def read_node_labels(settings: ActionSettings, node_id: str) -> dict[str, str]:
    """The labels of this node's Node object; {} where Kubernetes is not configured.

    Called once at agent start. Raises `Unavailable` (reason `KUBERNETES_UNAVAILABLE`)
    when the configuration or the API fails, with the same one-line message as the
    executors give.
    """
    if not settings.kubernetes:
        return {}
    name = settings.k8s_node_name or node_id
    try:
        with new_api_client(settings) as api, api_errors(f"node {name}"):
            node = client.CoreV1Api(api).read_node(name, _request_timeout=REQUEST_TIMEOUT_S)
    except ExecutionFailed as exc:
        raise Unavailable(exc.message, reason=KUBERNETES_UNAVAILABLE, node=name) from exc
    return dict((node.metadata and node.metadata.labels) or {})


def _status_object(body: str | bytes | None) -> dict[str, Any]:
    """The `Status` an API server sends with an error; a body that is not one (a proxy's
    page, say) stands as the message, cut short."""
    text = body.decode(errors="replace") if isinstance(body, bytes) else body or ""
    try:
        parsed = json.loads(text or "{}")
    except ValueError:
        return {"message": text[:_BODY_CHARS]}
    return parsed if isinstance(parsed, dict) else {"message": text[:_BODY_CHARS]}


@dataclass(frozen=True, slots=True)
class Step:
    """What one Kubernetes action found: the outcome `plan` reports, and the write that
    `execute` makes (None when the object is already as asked, so nothing is written)."""

    outcome: Outcome
    apply: Callable[[], Outcome] | None = None


class KubeAction:
    """Base of the Kubernetes executors. `step` reads (GET only) and returns the write as
    a closure, so plan and execute share one computation and plan cannot write."""

    spec: ActionSpec

    def check(self, params: Params, ctx: ActionContext) -> None:
        check_scope(self.spec, ctx.settings)
        self.check_params(params)

    def check_params(self, params: Params) -> None:
        """Refuse parameters the API would reject (MALFORMED); nothing by default."""

    def plan(self, params: Params, ctx: ActionContext) -> Outcome:
        return self.step(params, ctx).outcome

    def execute(self, params: Params, ctx: ActionContext) -> Outcome:
        step = self.step(params, ctx)
        return step.outcome if step.apply is None else step.apply()

    def step(self, params: Params, ctx: ActionContext) -> Step:
        raise NotImplementedError
