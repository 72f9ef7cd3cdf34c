"""The values that flow through an evaluation: what is proposed, what is known, what was decided.

Invariants: every type here is immutable (frozen dataclasses, enums); `RuleResult.details`
values are plain strings, so a decision can travel on the wire and be explained there
by `explain()`; the verdict of a decision is a pure function of its results (`combine`).
Also here: the protocol every rule kind implements (`RuleSpec`) and what a kind's reader
gets (`KindReader`, `ReadContext`), so that the kind modules depend on this one only.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Protocol

from sentinel.actions import ParamValue
from sentinel.errors import InvalidArgument

if TYPE_CHECKING:
    from policy._reader import Node


class Verdict(enum.StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    NEEDS_APPROVAL = "needs_approval"


class Scope(enum.StrEnum):
    """Where a rule can be evaluated: `node` rules need only the proposal and the node's
    own history (hub and agent both check them); `fleet` rules need the fleet's state
    (hub only)."""

    NODE = "node"
    FLEET = "fleet"


BOTH_SCOPES = frozenset({Scope.NODE, Scope.FLEET})


@dataclass(frozen=True)
class Proposal:
    """One action on one node, as the hub would sign it or the agent would run it."""

    action: str
    node_id: str
    labels: Mapping[str, str]
    params: Mapping[str, ParamValue]
    shadow: bool = False
    target: str = ""  # the resource acted on, e.g. "deployment/ml/trainer"; "" = the node
    break_glass: bool = False  # an admin's override of freeze windows, for this command only


@dataclass(frozen=True)
class FleetContext:
    """What only the hub knows; every input is optional, and a rule that needs a missing
    one asks for a human (NEEDS_APPROVAL, reason NO_INPUT) rather than guessing."""

    selected_nodes: int = 0  # nodes this command targets
    affected_nodes: int = 0  # nodes already being changed (in-flight commands) by matching actions
    fleet_size: int = 0  # nodes in the fleet (for blast_radius max_percent)
    usage: Mapping[str, float] = field(default_factory=dict)  # e.g. {"gpus:ml": 12}
    proposed_usage: Mapping[str, float] = field(default_factory=dict)  # same keys, after
    gpu_hours_per_hour: Mapping[str, float] = field(default_factory=dict)  # running, by model
    proposed_gpu_delta: Mapping[str, float] = field(default_factory=dict)  # added, by model
    series: Mapping[str, float] = field(default_factory=dict)  # by `series:` name (slo_guard)


class History(Protocol):
    """Recent permitted executions, by rate-limit key."""

    def count(self, key: str, since: datetime, until: datetime) -> int:
        """Events recorded under `key` at instants `t` with `since < t <= until`."""
        ...


@dataclass(frozen=True)
class RuleResult:
    rule_id: str
    kind: str
    scope: Scope
    verdict: Verdict
    reason: str
    details: Mapping[str, str]


@dataclass(frozen=True)
class Decision:
    """`results` lists every rule that had a say, in bundle order, after the allow-list
    check (`allow`) and safe mode (`safe-mode`)."""

    verdict: Verdict
    results: tuple[RuleResult, ...]
    policy_version: int


@dataclass(frozen=True)
class Outcome:
    """What one rule says, before evaluation labels it with the rule's id, kind and scope."""

    verdict: Verdict
    reason: str
    details: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Inputs:
    """Everything one evaluation may read; the clock is `now`, never the system's."""

    proposal: Proposal
    now: datetime
    history: History
    fleet: FleetContext


def combine(verdicts: Iterable[Verdict]) -> Verdict:
    """Any DENY denies; else any NEEDS_APPROVAL needs approval; else ALLOW."""
    seen = set(verdicts)
    if Verdict.DENY in seen:
        return Verdict.DENY
    return Verdict.NEEDS_APPROVAL if Verdict.NEEDS_APPROVAL in seen else Verdict.ALLOW


def require_aware(instant: datetime, what: str) -> None:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise InvalidArgument(
            f"{what} {instant.isoformat()} is naive: attach a time zone (e.g. UTC)",
            reason="INVALID_TIME",
        )


def format_number(value: float) -> str:
    """`16`, `4.5`, `0.25`: as a person would write it (at most 6 decimals)."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


class RuleSpec(Protocol):
    """What one kind of rule checks; `check` returns None when the rule does not apply
    to this proposal after all (e.g. the bounded parameter is absent)."""

    @property
    def kind(self) -> str: ...

    @property
    def scope(self) -> Scope: ...

    def check(self, inputs: Inputs) -> Outcome | None: ...


@dataclass(frozen=True)
class ReadContext:
    """What a kind's reader may need beyond its own keys."""

    rule_id: str
    calendars: Mapping[str, frozenset[date]]
    node: Node  # the rule itself, for errors about a combination of keys
    series: Collection[str]  # the names the bundle's `series:` defines


@dataclass(frozen=True)
class KindReader:
    """A rule kind's keys (beyond id, kind, actions, selector, description) and its reader."""

    required: tuple[str, ...]
    optional: tuple[str, ...]
    read: Callable[[dict[str, Node], ReadContext], RuleSpec]
