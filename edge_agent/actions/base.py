"""What an executor is, and what it may use.

An executor is found in the explicit registry (`edge_agent.actions.REGISTRY`) by
an action name that is already in `sentinel.actions.CATALOGUE` — never by a name
taken from a message. Executors are synchronous and run on the agent's action
thread, one command at a time, so the event loop never blocks on the Kubernetes
API or a subprocess.

Contract, for every executor:
- `check` raises `CommandRefused` (reason `POLICY_DENIED` or `BAD_TARGET`) when the
  command must not run here; it changes nothing;
- `plan` reads the current state and returns the changes `execute` would make;
  it changes nothing (this is the whole of shadow mode);
- `execute` makes the change and returns what it changed, or raises
  `ExecutionFailed` with a message an operator can act on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sentinel.actions import ActionSpec, ParamValue
from sentinel.v1 import command_pb2

Params = Mapping[str, ParamValue]


@dataclass(frozen=True, slots=True)
class ActionSettings:
    """What this node may do, from the agent's configuration."""

    # A local allow-list on top of the policy (None: the policy alone decides), for a
    # node owner who wants to restrict this node further than the fleet's policy does.
    allowed_actions: frozenset[str] | None = None
    # node.systemd.restart: the binary (an argument list is built, never a shell line)
    # and the units it may restart.
    systemctl_path: str = "systemctl"
    systemd_units: frozenset[str] = frozenset()
    # Kubernetes: off unless configured. `kubeconfig` None with `kubernetes` on means
    # in-cluster configuration (the service account of the agent's pod).
    kubernetes: bool = False
    kubeconfig: Path | None = None
    # This node acts for the cluster: only it runs cluster-scoped actions.
    cluster_actor: bool = False
    # The Kubernetes Node object of this node (default: the node id).
    k8s_node_name: str | None = None


class LabelStore(Protocol):
    """Labels the agent reports for its node, persisted by the agent."""

    def current(self) -> dict[str, str]: ...

    def update(self, changes: Mapping[str, str]) -> None:
        """Set each label; an empty value removes it. Persisted before it returns."""


class PowerControl(Protocol):
    """NVML power management of this node's GPUs (real NVML or the replay backend)."""

    def gpu_count(self) -> int: ...

    def power_limit_constraints_w(self, gpu: int) -> tuple[float, float]: ...

    def power_limit_w(self, gpu: int) -> float: ...

    def set_power_limit_w(self, gpu: int, watts: float) -> None: ...


@dataclass
class ActionContext:
    node_id: str
    settings: ActionSettings
    labels: LabelStore
    power: PowerControl | None = None
    # Created on first use by the Kubernetes executors (the official client).
    cache: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outcome:
    changes: tuple[command_pb2.PlannedChange, ...] = ()
    message: str = ""


class Executor(Protocol):
    spec: ActionSpec

    def check(self, params: Params, ctx: ActionContext) -> None: ...

    def plan(self, params: Params, ctx: ActionContext) -> Outcome: ...

    def execute(self, params: Params, ctx: ActionContext) -> Outcome: ...
