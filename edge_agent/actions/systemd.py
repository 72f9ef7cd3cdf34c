"""`node.systemd.restart`: restart one allow-listed systemd unit.

Invariants: the unit must match a strict unit-name pattern and be in
`settings.systemd_units`, or the command is refused before anything runs. The
command is an argument list (`systemctl restart -- UNIT`), never a shell line, and
`--` ends options so no unit name can be read as one. `plan` runs nothing.
"""

from __future__ import annotations

import re
import shlex
import subprocess

from edge_agent.actions.base import ActionContext, Outcome, Params
from edge_agent.actions.params import change, text
from sentinel.actions import CATALOGUE, ActionSpec
from sentinel.refusals import CommandRefused, ExecutionFailed, Reason
from sentinel.v1 import command_pb2

UNIT_NAME = re.compile(r"[A-Za-z0-9:_.@-]+\.(service|socket|timer|target|path|mount)")
TIMEOUT_S = 60.0
# Enough of systemctl's stderr to say why (it is short); the message must stay one screen.
STDERR_TAIL_CHARS = 500


class RestartUnit:
    spec: ActionSpec = CATALOGUE["node.systemd.restart"]

    def __init__(self, timeout_s: float = TIMEOUT_S) -> None:
        self.timeout_s = timeout_s

    def check(self, params: Params, ctx: ActionContext) -> None:
        unit = text(params, "unit")
        if not UNIT_NAME.fullmatch(unit):
            raise CommandRefused(
                Reason.POLICY_DENIED, f"unit {unit!r} is not a valid systemd unit name"
            )
        if unit not in ctx.settings.systemd_units:
            raise CommandRefused(
                Reason.POLICY_DENIED, f"unit {unit} is not in the agent's systemd allow-list"
            )

    def plan(self, params: Params, ctx: ActionContext) -> Outcome:
        argv = _argv(ctx, text(params, "unit"))
        return Outcome((_change(argv),), f"would run: {shlex.join(argv)}")

    def execute(self, params: Params, ctx: ActionContext) -> Outcome:
        argv = _argv(ctx, text(params, "unit"))
        _run(argv, self.timeout_s)
        return Outcome((_change(argv),), f"ran: {shlex.join(argv)}")


def _argv(ctx: ActionContext, unit: str) -> list[str]:
    return [ctx.settings.systemctl_path, "restart", "--", unit]


def _change(argv: list[str]) -> command_pb2.PlannedChange:
    unit = argv[-1]
    return change(f"systemd/{unit}", "state", "", "restarted", f"systemctl restart {unit}")


def _run(argv: list[str], timeout_s: float) -> None:
    """Run `argv`; ExecutionFailed unless it exits 0."""
    command = shlex.join(argv)
    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ExecutionFailed(f"{command} did not finish within {timeout_s:g} s") from exc
    except OSError as exc:
        raise ExecutionFailed(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
    if done.returncode != 0:
        stderr = done.stderr.decode(errors="replace").strip()[-STDERR_TAIL_CHARS:]
        raise ExecutionFailed(
            f"{command} failed with exit code {done.returncode}: {stderr or '(no stderr)'}"
        )
