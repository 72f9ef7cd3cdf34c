"""`node.gpu.set_power_limit`: set one GPU's power limit through NVML.

Invariants: refused (`BAD_TARGET`) on a node without NVML or without that GPU, and
(`POLICY_DENIED`) for a limit outside the constraints NVML reports for the GPU, so
NVML is only asked for limits it accepts. `plan` only reads the current limit.
"""

from __future__ import annotations

from edge_agent.actions.base import ActionContext, Outcome, Params, PowerControl
from edge_agent.actions.params import change, integer, number
from sentinel.actions import CATALOGUE, ActionSpec
from sentinel.refusals import CommandRefused, Reason


class SetPowerLimit:
    spec: ActionSpec = CATALOGUE["node.gpu.set_power_limit"]

    def check(self, params: Params, ctx: ActionContext) -> None:
        power = _power(ctx)
        gpu, watts = integer(params, "gpu"), number(params, "watts")
        count = power.gpu_count()
        if not 0 <= gpu < count:
            raise CommandRefused(
                Reason.BAD_TARGET, f"no GPU {gpu} on this node (it has {count}: 0..{count - 1})"
            )
        low_w, high_w = power.power_limit_constraints_w(gpu)
        # Written so that NaN, which compares false with everything, is refused too.
        if not low_w <= watts <= high_w:
            raise CommandRefused(
                Reason.POLICY_DENIED,
                f"{watts_text(watts)} W for GPU {gpu} is outside NVML's limits"
                f" [{watts_text(low_w)}, {watts_text(high_w)}] W",
            )

    def plan(self, params: Params, ctx: ActionContext) -> Outcome:
        gpu, watts = integer(params, "gpu"), number(params, "watts")
        return _outcome(gpu, _power(ctx).power_limit_w(gpu), watts)

    def execute(self, params: Params, ctx: ActionContext) -> Outcome:
        gpu, watts = integer(params, "gpu"), number(params, "watts")
        power = _power(ctx)
        before_w = power.power_limit_w(gpu)
        if before_w == watts:
            return _outcome(gpu, before_w, watts)
        power.set_power_limit_w(gpu, watts)
        # Report what NVML holds now, not what was asked (it stores whole milliwatts).
        return _outcome(gpu, before_w, power.power_limit_w(gpu))


def _power(ctx: ActionContext) -> PowerControl:
    if ctx.power is None:
        raise CommandRefused(Reason.BAD_TARGET, "no GPUs (NVML) on this node")
    return ctx.power


def _outcome(gpu: int, from_w: float, to_w: float) -> Outcome:
    if from_w == to_w:
        return Outcome((), f"GPU {gpu}'s power limit is already {watts_text(to_w)} W")
    was, now = watts_text(from_w), watts_text(to_w)
    what = f"set GPU {gpu}'s power limit to {now} W"
    return Outcome(
        (change(f"gpu/{gpu}", "power_limit_w", was, now, what),), f"GPU {gpu}: {was} W -> {now} W"
    )


def watts_text(watts: float) -> str:
    """Watts to the milliwatt NVML works in, without trailing zeros: 700, 450.5."""
    return f"{watts:.3f}".rstrip("0").rstrip(".")
