"""The action catalogue: every action a command may name, its scope and its parameters.

Shared by the hub (it validates a command before signing it), the agent (it validates
again after verifying, then looks the executor up in its own explicit registry) and
the CLI (it turns `--param k=v` text into typed values). A name that is not in this
catalogue is never dispatched.

Scope `node`: the action changes the node that runs it, so a selector may fan it out.
Scope `cluster`: the action changes one object of the Kubernetes cluster (a Deployment,
a pod); it must target exactly one node, the one that acts for the cluster — a
selector would run it once per matching node (reason `BAD_TARGET`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from sentinel.durations import from_proto_duration, parse_duration, to_proto_duration
from sentinel.errors import InvalidArgument
from sentinel.v1 import command_pb2

ParamValue = str | int | float | bool | timedelta


class Scope(enum.StrEnum):
    NODE = "node"
    CLUSTER = "cluster"


class Kind(enum.StrEnum):
    """The `ParameterValue` oneof a parameter must use."""

    STRING = "string_value"
    INT = "int_value"
    DOUBLE = "double_value"
    BOOL = "bool_value"
    DURATION = "duration_value"


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    kind: Kind
    required: bool = True
    help: str = ""


@dataclass(frozen=True, slots=True)
class ActionSpec:
    name: str
    scope: Scope
    params: tuple[Param, ...] = ()
    help: str = ""

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)


def _target(*extra: Param) -> tuple[Param, ...]:
    return (
        Param("namespace", Kind.STRING, help="Kubernetes namespace"),
        Param("name", Kind.STRING, help="object name"),
        *extra,
    )


CATALOGUE: Mapping[str, ActionSpec] = {
    spec.name: spec
    for spec in (
        ActionSpec("agent.ping", Scope.NODE, help="do nothing but answer (liveness check)"),
        ActionSpec(
            "k8s.deployment.scale",
            Scope.CLUSTER,
            _target(Param("replicas", Kind.INT, help="desired replica count")),
            "set a Deployment's replica count",
        ),
        ActionSpec(
            "k8s.deployment.restart",
            Scope.CLUSTER,
            _target(),
            "rolling restart (the kubectl rollout restart annotation)",
        ),
        ActionSpec(
            "k8s.deployment.set_resources",
            Scope.CLUSTER,
            _target(
                Param("container", Kind.STRING, help="container name"),
                Param("requests_cpu", Kind.STRING, required=False),
                Param("requests_memory", Kind.STRING, required=False),
                Param("limits_cpu", Kind.STRING, required=False),
                Param("limits_memory", Kind.STRING, required=False),
                Param("limits_gpu", Kind.INT, required=False, help="nvidia.com/gpu"),
            ),
            "set one container's resource requests and limits",
        ),
        ActionSpec("k8s.node.cordon", Scope.NODE, help="mark this node unschedulable"),
        ActionSpec("k8s.node.uncordon", Scope.NODE, help="mark this node schedulable"),
        ActionSpec("k8s.pod.evict", Scope.CLUSTER, _target(), "evict a pod (honours PDBs)"),
        ActionSpec(
            "node.systemd.restart",
            Scope.NODE,
            (Param("unit", Kind.STRING, help="a unit from the agent's allow-list"),),
            "restart a systemd unit",
        ),
        ActionSpec(
            "node.gpu.set_power_limit",
            Scope.NODE,
            (
                Param("gpu", Kind.INT, help="GPU index"),
                Param("watts", Kind.DOUBLE, help="within the limits NVML reports"),
            ),
            "set a GPU's power limit",
        ),
        ActionSpec(
            "node.labels.set",
            Scope.NODE,
            (Param("labels", Kind.STRING, help="k=v[,k=v]; an empty value removes the label"),),
            "set labels the agent reports for this node",
        ),
    )
}


def target_of(action: str, params: Mapping[str, ParamValue]) -> str:
    """The cluster object a Kubernetes action changes, e.g. `deployment/ml/trainer`; ""
    for an action on the node itself (per-target rate limits key on this)."""
    parts = action.split(".")
    if len(parts) < 2 or parts[0] != "k8s" or parts[1] not in ("deployment", "pod"):
        return ""
    return f"{parts[1]}/{params.get('namespace', '')}/{params.get('name', '')}"


def lookup(action: str) -> ActionSpec:
    """The action's spec, or InvalidArgument(UNKNOWN_ACTION)."""
    spec = CATALOGUE.get(action)
    if spec is None:
        raise InvalidArgument(
            f"unknown action {action!r}; known: {', '.join(sorted(CATALOGUE))}",
            reason="UNKNOWN_ACTION",
        )
    return spec


def validate_parameters(
    spec: ActionSpec, parameters: Mapping[str, command_pb2.ParameterValue]
) -> dict[str, ParamValue]:
    """Check names, kinds and presence; return plain Python values.

    Raises InvalidArgument with reason `BAD_PARAMETER` naming the first problem."""
    values: dict[str, ParamValue] = {}
    for name, value in parameters.items():
        param = spec.param(name)
        if param is None:
            raise _bad(spec, f"has no parameter {name!r}")
        kind = value.WhichOneof("kind")
        if kind != param.kind.value:
            raise _bad(spec, f"parameter {name!r} must be {_noun(param.kind)}, got {kind}")
        values[name] = _plain(value, param.kind)
    for param in spec.params:
        if param.required and param.name not in values:
            raise _bad(spec, f"needs parameter {param.name!r}")
    return values


def parse_parameter(spec: ActionSpec, assignment: str) -> tuple[str, command_pb2.ParameterValue]:
    """`k=v` as typed by a person, typed by the catalogue (CLI `--param`)."""
    name, sep, text = assignment.partition("=")
    if not sep:
        raise _bad(spec, f"--param {assignment!r} is not k=v")
    param = spec.param(name)
    if param is None:
        raise _bad(spec, f"has no parameter {name!r}")
    value = command_pb2.ParameterValue()
    try:
        if param.kind is Kind.STRING:
            value.string_value = text
        elif param.kind is Kind.INT:
            value.int_value = int(text)
        elif param.kind is Kind.DOUBLE:
            value.double_value = float(text)
        elif param.kind is Kind.BOOL:
            if text.lower() not in ("true", "false"):
                raise ValueError(text)
            value.bool_value = text.lower() == "true"
        else:
            value.duration_value.CopyFrom(to_proto_duration(parse_duration(text)))
    except ValueError as exc:
        raise _bad(spec, f"parameter {name!r} must be {_noun(param.kind)}, got {text!r}") from exc
    return name, value


def _plain(value: command_pb2.ParameterValue, kind: Kind) -> ParamValue:
    if kind is Kind.STRING:
        return value.string_value
    if kind is Kind.INT:
        return value.int_value
    if kind is Kind.DOUBLE:
        return value.double_value
    if kind is Kind.BOOL:
        return value.bool_value
    return from_proto_duration(value.duration_value)


def _noun(kind: Kind) -> str:
    """`an int`, `a string`: the kind as a person reads it."""
    name = kind.value.removesuffix("_value")
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def _bad(spec: ActionSpec, problem: str) -> InvalidArgument:
    return InvalidArgument(f"action {spec.name} {problem}", reason="BAD_PARAMETER")
