"""Fleet-scope rule kinds: they read `FleetContext`, which only the hub has.

    - {id: ml-gpus, kind: quota, key: "gpus:ml", max: 16}
    - {id: budget, kind: cost_ceiling, ceiling_per_hour: 500,
       price_per_gpu_hour: {"NVIDIA H200": 4.5, "NVIDIA H100 80GB HBM3": 3.2}}
    - {id: latency, kind: slo_guard, series: p95_latency_ms, max: 250, when: scale_down}
    - {id: radius, kind: blast_radius, max_nodes: 10, max_percent: 25}

Invariants:
- `cost_ceiling` prices are keyed by GPU model name exactly as NVML reports it (and the
  hub's registry shows it), e.g. "NVIDIA H200": the hub counts online nodes' GPUs by
  that name, and a running model without a price is DENY NO_PRICE;
- `slo_guard` names a series the bundle defines under `series:` (see policy._series);
  a name that is not defined there is a `PolicyError`, because the hub has no other
  source of series and the rule could only ever ask for a human;
- an input a rule needs but the hub did not supply is never guessed: the rule answers
  NEEDS_APPROVAL with reason NO_INPUT, because an SRE wants a human when a guard
  cannot be checked (a missing GPU price is an error in the bundle: DENY NO_PRICE);
- `quota` and `cost_ceiling` never block an action that does not increase usage or
  cost, so the way back under a limit stays open;
- `slo_guard` with `when: scale_down` applies only to `k8s.deployment.scale` with fewer
  `replicas` than `usage["replicas:<namespace>/<name>"]`, or when that count is
  unknown (then it assumes the worst); other actions leave it out of the results;
- `blast_radius` counts `selected_nodes + affected_nodes` (this command's nodes plus
  those already being changed) against `max_nodes`, and against `max_percent` of
  `fleet_size`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from policy._model import Inputs, KindReader, Outcome, ReadContext, Scope, Verdict
from policy._model import format_number as num
from policy._node_rules import read_min_max
from policy._reader import Node

_SCALE = "k8s.deployment.scale"


@dataclass(frozen=True)
class Quota:
    kind: ClassVar[str] = "quota"
    scope: ClassVar[Scope] = Scope.FLEET
    key: str
    maximum: float

    def check(self, inputs: Inputs) -> Outcome:
        proposed = inputs.fleet.proposed_usage.get(self.key)
        current = inputs.fleet.usage.get(self.key)
        details = {"key": self.key, "max": num(self.maximum)}
        details |= {"current": num(current)} if current is not None else {}
        if proposed is None:
            return Outcome(Verdict.NEEDS_APPROVAL, "NO_INPUT", details)
        details["proposed"] = num(proposed)
        if proposed > self.maximum and (current is None or proposed > current):
            return Outcome(Verdict.DENY, "QUOTA_EXCEEDED", details)
        return Outcome(Verdict.ALLOW, "WITHIN_QUOTA", details)


@dataclass(frozen=True)
class CostCeiling:
    kind: ClassVar[str] = "cost_ceiling"
    scope: ClassVar[Scope] = Scope.FLEET
    prices: Mapping[str, float]
    ceiling: float

    def check(self, inputs: Inputs) -> Outcome:
        running, delta = inputs.fleet.gpu_hours_per_hour, inputs.fleet.proposed_gpu_delta
        current = projected = 0.0
        for model in sorted(set(running) | set(delta)):
            now_count = running.get(model, 0.0)
            after_count = max(now_count + delta.get(model, 0.0), 0.0)
            if (now_count or after_count) and model not in self.prices:
                return Outcome(Verdict.DENY, "NO_PRICE", {"model": model})
            current += now_count * self.prices.get(model, 0.0)
            projected += after_count * self.prices.get(model, 0.0)
        details = {
            "current_per_hour": num(current),
            "projected_per_hour": num(projected),
            "ceiling_per_hour": num(self.ceiling),
        }
        if projected > self.ceiling and projected > current:
            return Outcome(Verdict.DENY, "COST_CEILING", details)
        return Outcome(Verdict.ALLOW, "WITHIN_BUDGET", details)


@dataclass(frozen=True)
class SloGuard:
    kind: ClassVar[str] = "slo_guard"
    scope: ClassVar[Scope] = Scope.FLEET
    series: str
    minimum: float | None
    maximum: float | None
    scale_down_only: bool

    def check(self, inputs: Inputs) -> Outcome | None:
        if self.scale_down_only and not _reduces_capacity(inputs):
            return None
        value = inputs.fleet.series.get(self.series)
        details = {"series": self.series}
        details |= {"min": num(self.minimum)} if self.minimum is not None else {}
        details |= {"max": num(self.maximum)} if self.maximum is not None else {}
        if value is None:
            return Outcome(Verdict.NEEDS_APPROVAL, "NO_INPUT", details)
        details["value"] = num(value)
        if self.maximum is not None and value > self.maximum:
            return Outcome(Verdict.DENY, "SLO_BREACH", details | {"bound": "max"})
        if self.minimum is not None and value < self.minimum:
            return Outcome(Verdict.DENY, "SLO_BREACH", details | {"bound": "min"})
        return Outcome(Verdict.ALLOW, "WITHIN_SLO", details)


@dataclass(frozen=True)
class BlastRadius:
    kind: ClassVar[str] = "blast_radius"
    scope: ClassVar[Scope] = Scope.FLEET
    max_nodes: int | None
    max_percent: float | None

    def check(self, inputs: Inputs) -> Outcome:
        fleet = inputs.fleet
        nodes = fleet.selected_nodes + fleet.affected_nodes
        details = {
            "nodes": str(nodes),
            "selected": str(fleet.selected_nodes),
            "in_flight": str(fleet.affected_nodes),
        }
        if self.max_nodes is not None:
            details["max_nodes"] = str(self.max_nodes)
            if nodes > self.max_nodes:
                return Outcome(Verdict.DENY, "BLAST_RADIUS", details | {"bound": "max_nodes"})
        if self.max_percent is not None:
            details["max_percent"] = num(self.max_percent)
            if fleet.fleet_size <= 0:
                return Outcome(Verdict.NEEDS_APPROVAL, "NO_INPUT", details)
            percent = 100.0 * nodes / fleet.fleet_size
            details |= {"fleet_size": str(fleet.fleet_size), "percent": num(percent)}
            if percent > self.max_percent:
                return Outcome(Verdict.DENY, "BLAST_RADIUS", details | {"bound": "max_percent"})
        return Outcome(Verdict.ALLOW, "WITHIN_RADIUS", details)


def _reduces_capacity(inputs: Inputs) -> bool:
    params = inputs.proposal.params
    if inputs.proposal.action != _SCALE:
        return False
    current = inputs.fleet.usage.get(f"replicas:{params.get('namespace')}/{params.get('name')}")
    replicas = params.get("replicas")
    if current is None or isinstance(replicas, bool) or not isinstance(replicas, int | float):
        return True  # cannot tell: assume the worst
    return replicas < current


def _read_quota(fields: dict[str, Node], context: ReadContext) -> Quota:
    return Quota(fields["key"].text(), _non_negative(fields["max"]))


def _read_cost_ceiling(fields: dict[str, Node], context: ReadContext) -> CostCeiling:
    prices = {
        model: _non_negative(price)
        for model, price in fields["price_per_gpu_hour"].mapping().items()
    }
    if not prices:
        raise fields["price_per_gpu_hour"].error("must name at least one GPU model")
    return CostCeiling(prices, _non_negative(fields["ceiling_per_hour"]))


def _read_slo_guard(fields: dict[str, Node], context: ReadContext) -> SloGuard:
    low, high = read_min_max(fields, context.node)
    scale_down_only = False
    if "when" in fields:
        if fields["when"].text() != "scale_down":
            raise fields["when"].error("the only condition is scale_down")
        scale_down_only = True
    return SloGuard(_read_series_name(fields["series"], context), low, high, scale_down_only)


def _read_series_name(node: Node, context: ReadContext) -> str:
    name = node.text()
    if name not in context.series:
        known = ", ".join(sorted(context.series)) or "none"
        raise node.error(f"unknown series {name!r} (define it under series:; defined: {known})")
    return name


def _read_blast_radius(fields: dict[str, Node], context: ReadContext) -> BlastRadius:
    max_nodes = fields["max_nodes"].integer() if "max_nodes" in fields else None
    if max_nodes is not None and max_nodes < 1:
        raise fields["max_nodes"].error("must be at least 1")
    max_percent = fields["max_percent"].number() if "max_percent" in fields else None
    if max_percent is not None and not 0 < max_percent <= 100:
        raise fields["max_percent"].error("must be more than 0 and at most 100")
    if max_nodes is None and max_percent is None:
        raise context.node.error("needs max_nodes, max_percent or both")
    return BlastRadius(max_nodes, max_percent)


def _non_negative(node: Node) -> float:
    value = node.number()
    if value < 0:
        raise node.error("must not be negative")
    return value


READERS = {
    "quota": KindReader(("key", "max"), (), _read_quota),
    "cost_ceiling": KindReader(("price_per_gpu_hour", "ceiling_per_hour"), (), _read_cost_ceiling),
    "slo_guard": KindReader(("series",), ("min", "max", "when"), _read_slo_guard),
    "blast_radius": KindReader((), ("max_nodes", "max_percent"), _read_blast_radius),
}
