"""A stand-in for the Kubernetes API server, for the agent's Kubernetes actions.

No API server can run on the development and CI machines, so this is a real HTTP
server on 127.0.0.1:0 (in a thread) that the official `kubernetes` client talks to
through a real kubeconfig (`write_kubeconfig`). It implements only what the
executors call:

    GET/PATCH  /apis/apps/v1/namespaces/{ns}/deployments/{name}[/scale]
    GET/PATCH  /api/v1/nodes/{name}
    GET        /api/v1/namespaces/{ns}/pods/{name}
    POST       /api/v1/namespaces/{ns}/pods/{name}/eviction

Faithful where the executors depend on it: every request needs the kubeconfig's
bearer token (401 otherwise); PATCH takes JSON merge patches and strategic-merge
patches (lists such as `containers` merge by their key, null deletes a field) and
refuses other patch types (415); a PATCH that names a stale `resourceVersion`
gets 409; a write bumps `resourceVersion` (and `generation` when the spec moved);
an eviction a PodDisruptionBudget forbids gets the API's 429; errors are `Status`
objects with the API's reasons and messages; `fail_next` makes the next request of a
method fail as a troubled API server would (409, 500, a rate-limiting 429). Every
request is recorded (method,
path, query, content type, parsed body) so tests can assert exactly what was sent,
and that a plan sent no write at all.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TOKEN = "standin-token"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
# Strategic merge: list fields whose items merge by this key instead of being replaced.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
}
CREATED = "2026-01-01T00:00:00Z"
Json = dict[str, Any]


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: str
    content_type: str
    body: Any


class ApiError(Exception):
    """An error answer: the HTTP status and the `Status` object sent with it."""

    def __init__(self, code: int, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.status = status_object(code, message, **details)


def status_object(code: int, message: str, **details: Any) -> Json:
    """A `Status` as the API server writes one; reason as `metav1.StatusReason`."""
    reasons = {
        400: "BadRequest",
        401: "Unauthorized",
        404: "NotFound",
        409: "Conflict",
        415: "UnsupportedMediaType",
        422: "Invalid",
        429: "TooManyRequests",
        500: "InternalError",
    }
    status: Json = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure"}
    status.update(message=message, reason=reasons.get(code, ""), code=code)
    if details:
        status["details"] = details
    return status


def success_status(code: int) -> Json:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code}


def merge_patch(target: Any, patch: Any, *, strategic: bool = False, key: str = "") -> Any:
    """RFC 7386 merge patch; with `strategic`, lists in MERGE_KEYS merge item by item."""
    if strategic and isinstance(patch, list) and key in MERGE_KEYS:
        return _merge_list(target if isinstance(target, list) else [], patch, MERGE_KEYS[key])
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if strategic and any(name.startswith("$") for name in patch):
        raise ApiError(400, "the stand-in does not implement strategic-merge directives")
    result = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = merge_patch(result.get(name), value, strategic=strategic, key=name)
    return result


def _merge_list(target: list[Any], patch: list[Any], merge_key: str) -> list[Any]:
    merged = copy.deepcopy(target)
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            raise ApiError(400, f"map: {item} does not contain declared merge key: {merge_key}")
        index = next(
            (i for i, old in enumerate(merged) if old.get(merge_key) == item[merge_key]), -1
        )
        if index < 0:
            merged.append(copy.deepcopy(item))
        else:
            merged[index] = merge_patch(merged[index], item, strategic=True)
    return merged


class KubeStandIn:
    """The server and the objects it holds; tests arrange objects and read them back."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.lock = threading.Lock()
        self.deployments: dict[tuple[str, str], Json] = {}
        self.nodes: dict[str, Json] = {}
        self.pods: dict[tuple[str, str], Json] = {}
        # (namespace, pod) -> the PodDisruptionBudget that forbids evicting it now.
        self.budgets: dict[tuple[str, str], str] = {}
        self.requests: list[Recorded] = []
        self._failures: dict[str, ApiError] = {}
        self._version = 1000
        self._routes = _routes(self)
        self._server = _Server(("127.0.0.1", 0), _handler_for(self))
        # A short poll so that close() (shutdown) returns at once: tests start one per test.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    # -- lifecycle and arrangement -------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def write_kubeconfig(self, path: Path, *, token: str | None = None) -> Path:
        """A kubeconfig (JSON is YAML) whose current context is this server."""
        document = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "standin", "cluster": {"server": self.url}}],
            "users": [{"name": "agent", "user": {"token": token or self.token}}],
            "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "agent"}}],
            "current-context": "standin",
        }
        path.write_text(json.dumps(document))
        return path

    def add_deployment(
        self,
        namespace: str,
        name: str,
        *,
        replicas: int = 1,
        containers: list[Json] | None = None,
        paused: bool = False,
    ) -> Json:
        containers = containers or [{"name": name, "image": f"registry.example/{name}:1"}]
        spec: Json = {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": containers}},
            "strategy": {"type": "RollingUpdate"},
        }
        if paused:
            spec["paused"] = True
        deployment = self._object("apps/v1", "Deployment", name, namespace, spec=spec)
        deployment["metadata"]["generation"] = 1
        deployment["status"] = {"replicas": replicas, "readyReplicas": replicas}
        self.deployments[(namespace, name)] = deployment
        return deployment

    def add_node(self, name: str, *, labels: dict[str, str] | None = None) -> Json:
        node = self._object("v1", "Node", name, None, spec={"podCIDR": "10.244.0.0/24"})
        node["metadata"]["labels"] = {"kubernetes.io/hostname": name, **(labels or {})}
        self.nodes[name] = node
        return node

    def add_pod(self, namespace: str, name: str, *, node: str) -> Json:
        spec = {"nodeName": node, "containers": [{"name": "main", "image": "registry.example/m"}]}
        pod = self._object("v1", "Pod", name, namespace, spec=spec)
        pod["status"] = {"phase": "Running"}
        self.pods[(namespace, name)] = pod
        return pod

    def fail_next(self, method: str, code: int, message: str) -> None:
        """Answer the next `method` request with this error, as a failing API server would."""
        self._failures[method] = ApiError(code, message)

    def writes(self) -> list[Recorded]:
        return [r for r in self.requests if r.method != "GET"]

    # -- serving --------------------------------------------------------------------------------

    def answer(self, request: Recorded, authorization: str) -> tuple[int, Json]:
        with self.lock:
            self.requests.append(request)
            try:
                if authorization != f"Bearer {self.token}":
                    raise ApiError(401, "Unauthorized")
                failure = self._failures.pop(request.method, None)
                if failure is not None:
                    raise failure
                return self._route(request)
            except ApiError as exc:
                return exc.code, exc.status
            except Exception as exc:  # a stand-in bug: a 500 the test will show, not a hang-up
                return 500, status_object(500, f"stand-in error: {exc!r}")

    def _route(self, request: Recorded) -> tuple[int, Json]:
        for method, pattern, serve in self._routes:
            match = pattern.fullmatch(request.path)
            if match and method == request.method:
                return serve(request, *match.groups())
        raise ApiError(404, "the server could not find the requested resource")

    def _object(self, api: str, kind: str, name: str, namespace: str | None, spec: Json) -> Json:
        metadata: Json = {"name": name, "uid": str(uuid.uuid4()), "creationTimestamp": CREATED}
        if namespace is not None:
            metadata["namespace"] = namespace
        metadata["resourceVersion"] = self.next_version()
        return {"apiVersion": api, "kind": kind, "metadata": metadata, "spec": spec}

    def next_version(self) -> str:
        self._version += 1
        return str(self._version)

    def patched(self, current: Json, request: Recorded, what: str) -> Json:
        """`current` with the request's patch applied (a new object), or an ApiError."""
        if request.content_type not in (MERGE_PATCH, STRATEGIC_MERGE_PATCH):
            raise ApiError(415, f"the stand-in does not accept {request.content_type!r} patches")
        if not isinstance(request.body, dict):
            raise ApiError(400, "the patch is not a JSON object")
        asked = (request.body.get("metadata") or {}).get("resourceVersion")
        if asked is not None and asked != current["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                f"Operation cannot be fulfilled on {what}: the object has been modified;"
                " please apply your changes to the latest version and try again",
            )
        strategic = request.content_type == STRATEGIC_MERGE_PATCH
        result: Json = merge_patch(copy.deepcopy(current), request.body, strategic=strategic)
        if result != current:
            result["metadata"]["resourceVersion"] = self.next_version()
            if "generation" in current["metadata"] and result["spec"] != current["spec"]:
                result["metadata"]["generation"] = current["metadata"]["generation"] + 1
        return result


Route = tuple[str, re.Pattern[str], Callable[..., tuple[int, Json]]]
_NAME = "([a-z0-9.-]+)"


def _routes(api: KubeStandIn) -> list[Route]:
    deployment = f"/apis/apps/v1/namespaces/{_NAME}/deployments/{_NAME}"
    pod = f"/api/v1/namespaces/{_NAME}/pods/{_NAME}"
    node = f"/api/v1/nodes/{_NAME}"
    table: list[tuple[str, str, Callable[..., tuple[int, Json]]]] = [
        ("GET", deployment, lambda r, ns, n: (200, _deployment(api, ns, n))),
        ("PATCH", deployment, lambda r, ns, n: _patch_deployment(api, r, ns, n)),
        ("GET", deployment + "/scale", lambda r, ns, n: (200, _scale(_deployment(api, ns, n)))),
        ("PATCH", deployment + "/scale", lambda r, ns, n: _patch_scale(api, r, ns, n)),
        ("GET", node, lambda r, n: (200, _node(api, n))),
        ("PATCH", node, lambda r, n: _patch_node(api, r, n)),
        ("GET", pod, lambda r, ns, n: (200, _pod(api, ns, n))),
        ("POST", pod + "/eviction", lambda r, ns, n: _evict(api, r, ns, n)),
    ]
    return [(method, re.compile(path), serve) for method, path, serve in table]


def _deployment(api: KubeStandIn, namespace: str, name: str) -> Json:
    found = api.deployments.get((namespace, name))
    if found is None:
        raise ApiError(404, f'deployments.apps "{name}" not found', name=name, group="apps")
    return found


def _node(api: KubeStandIn, name: str) -> Json:
    if name not in api.nodes:
        raise ApiError(404, f'nodes "{name}" not found', name=name, kind="nodes")
    return api.nodes[name]


def _pod(api: KubeStandIn, namespace: str, name: str) -> Json:
    if (namespace, name) not in api.pods:
        raise ApiError(404, f'pods "{name}" not found', name=name, kind="pods")
    return api.pods[(namespace, name)]


def _patch_deployment(api: KubeStandIn, r: Recorded, ns: str, name: str) -> tuple[int, Json]:
    current = _deployment(api, ns, name)
    result = api.patched(current, r, f'deployments.apps "{name}"')
    api.deployments[(ns, name)] = result
    return 200, result


def _scale(deployment: Json) -> Json:
    """The autoscaling/v1 Scale view; like the API, a replica count of 0 is omitted."""
    meta = deployment["metadata"]
    replicas = deployment["spec"].get("replicas", 1)
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion")},
        "spec": {"replicas": replicas} if replicas else {},
        "status": {"replicas": deployment["status"]["replicas"], "selector": f"app={meta['name']}"},
    }


def _patch_scale(api: KubeStandIn, r: Recorded, ns: str, name: str) -> tuple[int, Json]:
    current = _deployment(api, ns, name)
    scale = api.patched(_scale(current), r, f'deployments.apps "{name}"')
    replicas = scale.get("spec", {}).get("replicas", 0)
    if not isinstance(replicas, int) or replicas < 0:
        raise ApiError(422, f'Scale.autoscaling "{name}" is invalid: spec.replicas: Invalid value')
    updated = copy.deepcopy(current)
    updated["spec"]["replicas"] = replicas
    if updated != current:
        updated["metadata"]["resourceVersion"] = api.next_version()
        updated["metadata"]["generation"] += 1
    api.deployments[(ns, name)] = updated
    return 200, _scale(updated)


def _patch_node(api: KubeStandIn, r: Recorded, name: str) -> tuple[int, Json]:
    api.nodes[name] = api.patched(_node(api, name), r, f'nodes "{name}"')
    return 200, api.nodes[name]


def _evict(api: KubeStandIn, r: Recorded, ns: str, name: str) -> tuple[int, Json]:
    if r.content_type not in ("application/json", ""):  # the API server reads "" as JSON
        raise ApiError(415, f"the stand-in does not accept {r.content_type!r} bodies")
    body = r.body if isinstance(r.body, dict) else {}
    if (body.get("apiVersion"), body.get("kind")) != ("policy/v1", "Eviction"):
        raise ApiError(400, "the body is not a policy/v1 Eviction")
    if (body.get("metadata") or {}).get("name") != name:
        raise ApiError(400, "name in URL does not match name in Eviction object")
    _pod(api, ns, name)
    budget = api.budgets.get((ns, name))
    if budget is not None:
        cause = f"The disruption budget {budget} needs 1 healthy pods and has 1 currently"
        raise ApiError(
            429,
            "Cannot evict pod as it would violate the pod's disruption budget.",
            causes=[{"reason": "DisruptionBudget", "message": cause}],
        )
    del api.pods[(ns, name)]
    return 201, success_status(201)


class _Server(ThreadingHTTPServer):
    # The client keeps connections alive; closing must not wait for it to hang up.
    block_on_close = False


def _handler_for(api: KubeStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 10

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            path, _, query = self.path.partition("?")
            content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")  # not JSON: every route answers 400
            request = Recorded(self.command, path, query, content_type, body)
            code, answer = api.answer(request, self.headers.get("Authorization") or "")
            payload = json.dumps(answer).encode()
            self.send_response(code, HTTPStatus(code).phrase)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_PATCH = do_POST = _serve

        def log_message(self, format: str, *args: Any) -> None:
            return None  # the request log is `api.requests`

    return Handler


@contextmanager
def running_standin() -> Iterator[KubeStandIn]:
    """A started stand-in, closed on exit. A test module's fixture wraps it, e.g.

    @pytest.fixture
    def kube() -> Iterator[KubeStandIn]:
        with running_standin() as api:
            api.add_node("node-a")
            yield api
    """
    api = KubeStandIn()
    api.start()
    try:
        yield api
    finally:
        api.close()
