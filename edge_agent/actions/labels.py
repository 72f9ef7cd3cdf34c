"""`node.labels.set`: set or remove labels the agent reports for its node.

The `labels` parameter is `k=v[,k=v]`; each assignment must be a label
Kubernetes would accept (`sentinel.selectors`), an empty value removes the label,
and a key may appear once. Only labels whose value actually changes are reported
and written; the `LabelStore` persists them before `execute` returns.
"""

from __future__ import annotations

from edge_agent.actions.base import ActionContext, Outcome, Params
from edge_agent.actions.params import change, text
from sentinel.actions import CATALOGUE, ActionSpec
from sentinel.errors import InvalidArgument
from sentinel.refusals import CommandRefused, Reason
from sentinel.selectors import parse_label_assignment
from sentinel.v1 import command_pb2


def parse_labels(assignments: str) -> dict[str, str]:
    """`k=v,k2=` as {k: v, k2: ""}; CommandRefused(MALFORMED) naming the first problem."""
    if not assignments.strip():
        raise CommandRefused(Reason.MALFORMED, "parameter 'labels' names no label (k=v[,k=v])")
    parsed: dict[str, str] = {}
    for assignment in assignments.split(","):
        try:
            key, value = parse_label_assignment(assignment.strip())
        except InvalidArgument as exc:
            raise CommandRefused(Reason.MALFORMED, exc.message) from exc
        if key in parsed:
            raise CommandRefused(Reason.MALFORMED, f"label {key!r} is given more than once")
        parsed[key] = value
    return parsed


class SetLabels:
    spec: ActionSpec = CATALOGUE["node.labels.set"]

    def check(self, params: Params, ctx: ActionContext) -> None:
        parse_labels(text(params, "labels"))

    def plan(self, params: Params, ctx: ActionContext) -> Outcome:
        return self._outcome(params, ctx)[0]

    def execute(self, params: Params, ctx: ActionContext) -> Outcome:
        outcome, delta = self._outcome(params, ctx)
        if delta:
            ctx.labels.update(delta)
        return outcome

    def _outcome(self, params: Params, ctx: ActionContext) -> tuple[Outcome, dict[str, str]]:
        """The outcome and the labels that differ from what the store holds now."""
        current = ctx.labels.current()
        wanted = parse_labels(text(params, "labels"))
        delta = {k: v for k, v in sorted(wanted.items()) if current.get(k, "") != v}
        changes = tuple(_change(ctx.node_id, k, current.get(k, ""), v) for k, v in delta.items())
        return Outcome(changes, _summary(changes)), delta


def _change(node_id: str, key: str, was: str, value: str) -> command_pb2.PlannedChange:
    what = f"remove label {key}" if not value else f"set label {key}={value}"
    return change(f"node/{node_id}", f"labels.{key}", was, value, what)


def _summary(changes: tuple[command_pb2.PlannedChange, ...]) -> str:
    return f"{len(changes)} label(s) changed" if changes else "labels already as asked"
