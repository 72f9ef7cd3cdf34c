"""Typed reads of a command's parameters, and the shape of the changes executors report.

The agent validated the parameters against `sentinel.actions.CATALOGUE` before an
executor sees them, so a missing or mistyped value here means a spec and an
executor disagree: it is refused as `MALFORMED` rather than crashing the action
thread. Nothing here touches the node.
"""

from __future__ import annotations

from edge_agent.actions.base import Params
from sentinel.refusals import CommandRefused, Reason
from sentinel.v1 import command_pb2


def text(params: Params, name: str) -> str:
    value = params.get(name)
    if not isinstance(value, str):
        raise _mistyped(name, "a string", value)
    return value


def optional_text(params: Params, name: str) -> str | None:
    return None if params.get(name) is None else text(params, name)


def integer(params: Params, name: str) -> int:
    value = params.get(name)
    # bool is an int in Python; the catalogue never means one by the other.
    if not isinstance(value, int) or isinstance(value, bool):
        raise _mistyped(name, "an integer", value)
    return value


def optional_integer(params: Params, name: str) -> int | None:
    return None if params.get(name) is None else integer(params, name)


def number(params: Params, name: str) -> float:
    value = params.get(name)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _mistyped(name, "a number", value)
    return float(value)


def change(
    resource: str, field: str, from_value: str, to_value: str, description: str
) -> command_pb2.PlannedChange:
    """One PlannedChange; `from_value` "" means the field was unset."""
    return command_pb2.PlannedChange(
        resource=resource,
        field=field,
        from_value=from_value,
        to_value=to_value,
        description=description,
    )


def _mistyped(name: str, expected: str, value: object) -> CommandRefused:
    got = "nothing" if value is None else type(value).__name__
    return CommandRefused(Reason.MALFORMED, f"parameter {name!r} must be {expected}, got {got}")
