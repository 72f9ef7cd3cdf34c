"""Policy bundles: the YAML an operator writes, loaded strictly into an immutable `Bundle`.

    version: 7                          # integer >= 1; agents never go back to a lower one
    expires_at: 2026-12-31T00:00:00Z    # RFC 3339 with an offset; past it, agents run
                                        # in safe mode (the caller decides: `safe_mode=`)
    allow:
      actions: ["agent.*", k8s.deployment.scale]   # execute mode: deny unless listed
      shadow: true                      # shadow runs of any action
    safe_actions: [agent.ping]          # what safe mode still runs
    calendars:
      de-be: [2026-12-25, 2026-12-26]   # local dates, for `holidays` freeze windows
    series:                             # what slo_guard rules compare; see policy._series
      p95_latency_ms: {promql: "..."}   # or {telemetry: gpu_utilization_mean}
    rules: [...]                        # see policy._rules, in evaluation order

Invariants: `load_bundle` accepts only what it understands (unknown or duplicate
keys, unknown kinds, time zones, calendars and action globs that match no catalogue
action are `PolicyError`s naming the path; so is a slo_guard naming a series that
`series:` does not define); `source` is the exact bytes loaded and `sha256` their
digest, so two bundles with the same digest are the same policy. `series_for` names
only the series that rules applying to the given proposals compare, so the hub asks
Prometheus for nothing when no such rule applies.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

from policy._fleet_rules import SloGuard
from policy._globs import Globs, read_globs
from policy._model import Proposal
from policy._reader import ROOT, Node, PolicyError
from policy._rules import Rule, read_rule
from policy._series import SeriesSpec, read_series
from policy._windows import read_date, read_instant
from sentinel.actions import CATALOGUE

MAX_BUNDLE_BYTES = 1 << 20

DEFAULT_POLICY = b"""\
# The policy an agent holds until the hub sends one: it may answer pings, and run
# any action in shadow mode (which changes nothing).
version: 1
expires_at: 2100-01-01T00:00:00Z
allow:
  actions: [agent.ping]
  shadow: true
safe_actions: [agent.ping]
rules: []
"""


@dataclass(frozen=True)
class Bundle:
    version: int
    expires_at: datetime
    rules: tuple[Rule, ...]
    allow_actions: frozenset[str]
    allow_shadow: bool
    safe_actions: frozenset[str]
    calendars: Mapping[str, frozenset[date]]
    series: Mapping[str, SeriesSpec]
    source: bytes
    sha256: str
    _allow: Globs = field(init=False, repr=False, compare=False)
    _safe: Globs = field(init=False, repr=False, compare=False)
    _by_action: dict[str, tuple[Rule, ...]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_allow", Globs(sorted(self.allow_actions)))
        object.__setattr__(self, "_safe", Globs(sorted(self.safe_actions)))

    def allow_pattern(self, action: str) -> str | None:
        """The `allow.actions` pattern that lets `action` execute, if any."""
        return self._allow.first_match(action)

    def safe_pattern(self, action: str) -> str | None:
        return self._safe.first_match(action)

    def rules_for(self, action: str) -> tuple[Rule, ...]:
        """The rules whose action globs match `action`, in bundle order (memoised for
        catalogue actions; a memo that cannot change an answer)."""
        cached = self._by_action.get(action)
        if cached is None:
            cached = tuple(rule for rule in self.rules if rule.matches_action(action))
            if action in CATALOGUE:  # bounds the memo
                self._by_action[action] = cached
        return cached

    def series_for(self, proposals: Iterable[Proposal]) -> dict[str, SeriesSpec]:
        """The series that the slo_guard rules applying to any of `proposals` compare."""
        needed: dict[str, SeriesSpec] = {}
        for proposal in proposals:
            for rule in self.rules_for(proposal.action):
                if isinstance(rule.spec, SloGuard) and rule.applies(proposal):
                    needed[rule.spec.series] = self.series[rule.spec.series]
        return needed


def load_bundle(source: bytes) -> Bundle:
    """Parse and validate a bundle; raise `PolicyError` (reason POLICY_INVALID) if it is bad."""
    if len(source) > MAX_BUNDLE_BYTES:
        raise PolicyError(ROOT, f"larger than {MAX_BUNDLE_BYTES} bytes")
    root = Node.parse(source)
    fields = root.fields(
        ("version", "expires_at"), ("allow", "safe_actions", "calendars", "series", "rules")
    )
    version = fields["version"].integer()
    if version < 1:
        raise fields["version"].error("must be at least 1")
    allow_actions: tuple[str, ...] = ()
    allow_shadow = False
    if "allow" in fields:
        allow = fields["allow"].fields((), ("actions", "shadow"))
        if "actions" in allow:
            allow_actions = read_globs(allow["actions"], allow_empty=True)
        allow_shadow = allow["shadow"].boolean() if "shadow" in allow else False
    safe: tuple[str, ...] = ()
    if "safe_actions" in fields:
        safe = read_globs(fields["safe_actions"], allow_empty=True)
    calendars = _read_calendars(fields["calendars"]) if "calendars" in fields else {}
    rule_nodes = fields["rules"].sequence() if "rules" in fields else []
    series = read_series(fields["series"]) if "series" in fields else {}
    rules = tuple(read_rule(node, calendars, series.keys()) for node in rule_nodes)
    _check_unique_ids(rules, rule_nodes)
    return Bundle(
        version=version,
        expires_at=read_instant(fields["expires_at"]),
        rules=rules,
        allow_actions=frozenset(allow_actions),
        allow_shadow=allow_shadow,
        safe_actions=frozenset(safe),
        calendars=calendars,
        series=series,
        source=bytes(source),
        sha256=hashlib.sha256(source).hexdigest(),
    )


def _read_calendars(node: Node) -> dict[str, frozenset[date]]:
    return {
        name: frozenset(read_date(item) for item in dates.sequence())
        for name, dates in node.mapping().items()
    }


def _check_unique_ids(rules: tuple[Rule, ...], nodes: list[Node]) -> None:
    first_index: dict[str, int] = {}
    for index, rule in enumerate(rules):
        if rule.id in first_index:
            where = nodes[first_index[rule.id]].path
            raise (
                nodes[index]
                .mapping()["id"]
                .error(f"duplicate rule id {rule.id!r} (first at {where})")
            )
        first_index[rule.id] = index
