"""Policy engine (pure, synchronous, clock injected): bundles and their evaluation.

Used by the hub before it signs a command and by every agent before it executes
one. It imports neither grpc nor nats (enforced by import-linter).

    bundle = load_bundle(yaml_bytes)                     # PolicyError if anything is off
    decision = evaluate(bundle, proposal, now, history=log, scopes=frozenset({Scope.NODE}))
    if decision.verdict is Verdict.ALLOW:
        run(...)
        for key in rate_keys(bundle, proposal):
            log.record(key, now)                         # the same `now` it was judged at
    print("\\n".join(explain(decision)))

Modules: `_bundle` (the YAML format), `_rules` (what every rule has), `_node_rules`,
`_rate_limit` and `_fleet_rules` (the kinds), `_windows` and `_localtime` (freeze
windows, DST), `_series` (named SLO series and their sources: described here,
fetched by the hub), `_evaluate` (the pipeline), `_history` (the rate-limit log),
`_explain` (sentences), `_reader` (strict YAML with paths).
"""

from policy._bundle import DEFAULT_POLICY, Bundle, load_bundle
from policy._evaluate import evaluate, rate_keys
from policy._explain import explain
from policy._history import SlidingWindowLog, history_line
from policy._model import (
    Decision,
    FleetContext,
    History,
    Proposal,
    RuleResult,
    Scope,
    Verdict,
)
from policy._reader import PolicyError
from policy._rules import Rule
from policy._series import PromQLSeries, SeriesSpec, TelemetryMetric, TelemetrySeries

__all__ = [
    "DEFAULT_POLICY",
    "Bundle",
    "Decision",
    "FleetContext",
    "History",
    "PolicyError",
    "PromQLSeries",
    "Proposal",
    "Rule",
    "RuleResult",
    "Scope",
    "SeriesSpec",
    "SlidingWindowLog",
    "TelemetryMetric",
    "TelemetrySeries",
    "Verdict",
    "evaluate",
    "explain",
    "history_line",
    "load_bundle",
    "rate_keys",
]
