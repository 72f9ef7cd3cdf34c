"""Node-scope rule kinds that need nothing but the proposal and the clock.

    - {id: change-freeze, kind: freeze, windows: [...], effect: deny, break_glass: true}
    - {id: power, kind: local_bounds, actions: [node.gpu.set_power_limit],
       param: watts, min: 100, max: 700}
    - {id: manual-scale, kind: require_approval, actions: [k8s.deployment.scale]}

Invariants:
- `freeze`: the first window (in bundle order) that contains `now` decides; `effect`
  is its verdict (default deny). With `break_glass: true` (the default) a proposal
  marked break-glass passes, but the rule still reports the window it overrode
  (verdict ALLOW, reason BREAK_GLASS), so every override is in the audit trail;
- `local_bounds`: a proposal without the parameter is not this rule's business (the
  rule is left out of the results); a value that is not a number is denied;
- `require_approval`: always NEEDS_APPROVAL for the actions it matches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from policy._model import Inputs, KindReader, Outcome, ReadContext, Scope, Verdict, format_number
from policy._reader import Node
from policy._windows import Window, read_window
from sentinel.durations import format_time

_EFFECTS = {"deny": Verdict.DENY, "needs_approval": Verdict.NEEDS_APPROVAL}


@dataclass(frozen=True)
class Freeze:
    kind: ClassVar[str] = "freeze"
    scope: ClassVar[Scope] = Scope.NODE
    windows: tuple[Window, ...]
    effect: Verdict = Verdict.DENY
    break_glass: bool = True

    def check(self, inputs: Inputs) -> Outcome:
        for index, window in enumerate(self.windows):
            hit = window.hit(inputs.now)
            if hit is None:
                continue
            details = {
                "window": hit.window,
                "window_index": str(index),
                "local_time": hit.local_time,
                "start": format_time(hit.start),
                "end": format_time(hit.end),
                "effect": self.effect.value,
            }
            if inputs.proposal.break_glass:
                if self.break_glass:
                    return Outcome(Verdict.ALLOW, "BREAK_GLASS", details)
                details["break_glass"] = "refused: this rule does not allow break-glass"
            return Outcome(self.effect, "FROZEN", details)
        return Outcome(Verdict.ALLOW, "NOT_FROZEN", {"windows": str(len(self.windows))})


@dataclass(frozen=True)
class LocalBounds:
    kind: ClassVar[str] = "local_bounds"
    scope: ClassVar[Scope] = Scope.NODE
    param: str
    minimum: float | None
    maximum: float | None

    def check(self, inputs: Inputs) -> Outcome | None:
        value = inputs.proposal.params.get(self.param)
        if value is None:
            return None
        details = {"param": self.param, "value": str(value)}
        details |= {"min": format_number(self.minimum)} if self.minimum is not None else {}
        details |= {"max": format_number(self.maximum)} if self.maximum is not None else {}
        if isinstance(value, bool) or not isinstance(value, int | float):
            return Outcome(Verdict.DENY, "NOT_A_NUMBER", details)
        details["value"] = format_number(value)
        if self.minimum is not None and value < self.minimum:
            return Outcome(Verdict.DENY, "OUT_OF_BOUNDS", details | {"bound": "min"})
        if self.maximum is not None and value > self.maximum:
            return Outcome(Verdict.DENY, "OUT_OF_BOUNDS", details | {"bound": "max"})
        return Outcome(Verdict.ALLOW, "IN_BOUNDS", details)


@dataclass(frozen=True)
class RequireApproval:
    kind: ClassVar[str] = "require_approval"
    scope: ClassVar[Scope] = Scope.NODE

    def check(self, inputs: Inputs) -> Outcome:
        details = {"action": inputs.proposal.action}
        return Outcome(Verdict.NEEDS_APPROVAL, "APPROVAL_REQUIRED", details)


def read_min_max(fields: dict[str, Node], rule: Node) -> tuple[float | None, float | None]:
    """`min` and/or `max` (at least one; min <= max)."""
    low = fields["min"].number() if "min" in fields else None
    high = fields["max"].number() if "max" in fields else None
    if low is None and high is None:
        raise rule.error("needs min, max or both")
    if low is not None and high is not None and low > high:
        raise fields["max"].error("must not be less than min")
    return low, high


def _read_freeze(fields: dict[str, Node], context: ReadContext) -> Freeze:
    items = fields["windows"].sequence()
    if not items:
        raise fields["windows"].error("must not be empty")
    windows = tuple(read_window(item, context.calendars) for item in items)
    effect = Verdict.DENY
    if "effect" in fields:
        text = fields["effect"].text()
        if text not in _EFFECTS:
            raise fields["effect"].error(
                f"unknown effect {text!r} (expected deny or needs_approval)"
            )
        effect = _EFFECTS[text]
    break_glass = fields["break_glass"].boolean() if "break_glass" in fields else True
    return Freeze(windows, effect, break_glass)


def _read_local_bounds(fields: dict[str, Node], context: ReadContext) -> LocalBounds:
    low, high = read_min_max(fields, context.node)
    return LocalBounds(fields["param"].text(), low, high)


def _read_require_approval(fields: dict[str, Node], context: ReadContext) -> RequireApproval:
    return RequireApproval()


READERS = {
    "freeze": KindReader(("windows",), ("effect", "break_glass"), _read_freeze),
    "local_bounds": KindReader(("param",), ("min", "max"), _read_local_bounds),
    "require_approval": KindReader((), (), _read_require_approval),
}
