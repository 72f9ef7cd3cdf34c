"""Decisions in plain words: one sentence per deciding result.

A result *decides* when its verdict is the decision's verdict: for a denial, each
rule that denied; for NEEDS_APPROVAL, each rule that asked for a human; for ALLOW,
each rule that let it through (the allow list, break-glass overrides, ...).

Invariants: sentences are built from `RuleResult.details` alone (strings), so a
decision that crossed the wire explains the same; a missing detail prints as `?` and
an unknown kind or reason falls back to the reason and the details, never an error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from policy._model import Decision, RuleResult, Verdict

_VERBS = {
    Verdict.DENY: "denied by",
    Verdict.NEEDS_APPROVAL: "held for approval by",
    Verdict.ALLOW: "allowed by",
}
_NOUNS = {
    "freeze": "freeze window",
    "rate_limit": "rate limit",
    "quota": "quota",
    "cost_ceiling": "cost ceiling",
    "slo_guard": "SLO guard",
    "blast_radius": "blast radius",
    "local_bounds": "bounds",
    "require_approval": "rule",
}


def explain(decision: Decision) -> list[str]:
    return [_sentence(r) for r in decision.results if r.verdict == decision.verdict]


def _sentence(result: RuleResult) -> str:
    if result.kind == "allow":
        subject = "the allow list"
    elif result.kind == "safe_mode":
        subject = "safe mode"
    else:
        subject = f"{_NOUNS.get(result.kind, result.kind)} {result.rule_id!r}"
    clause = _CLAUSES.get(result.kind, _fallback)(result.reason, _Details(result.details))
    return f"{_VERBS.get(result.verdict, str(result.verdict))} {subject}: {clause}"


class _Details:
    def __init__(self, details: Mapping[str, str]) -> None:
        self._details = details

    def __getitem__(self, key: str) -> str:
        return self._details.get(key, "?")

    def has(self, key: str) -> bool:
        return key in self._details

    def items(self) -> list[tuple[str, str]]:
        return sorted(self._details.items())


def _allow(reason: str, d: _Details) -> str:
    if reason == "ALLOWED" and d["pattern"] == "allow.shadow":
        return f"shadow runs are allowed (allow.shadow), {d['action']} included"
    if reason == "ALLOWED":
        return f"{d['action']} ({d['mode']}) matches {d['pattern']!r} in allow.actions"
    if d["mode"] == "shadow":
        return f"shadow runs are not allowed and {d['action']} is not in allow.actions"
    return f"{d['action']} is not in allow.actions ({d['allowed'] or 'none'})"


def _safe_mode(reason: str, d: _Details) -> str:
    if reason == "SAFE_ACTION":
        return f"the policy bundle has expired, and {d['action']} is a safe action"
    safe = d["safe_actions"] or "none"
    return f"the policy bundle has expired, and {d['action']} is not a safe action ({safe})"


def _freeze(reason: str, d: _Details) -> str:
    if reason == "NOT_FROZEN":
        return "no freeze window is active"
    text = f"{d['local_time']} is inside {d['window']}"
    if reason == "BREAK_GLASS":
        return f"break-glass override: {text}"
    return text + ("; this rule allows no break-glass" if d.has("break_glass") else "")


def _rate_limit(reason: str, d: _Details) -> str:
    counted = {
        "node": f"matching actions on {d['node_id']}",
        "node_action": f"{d['action']} on {d['node_id']}",
        "target": f"matching actions on {d['target']}",
        "fleet": "matching actions in the fleet",
    }.get(d["per"], "matching actions")
    return f"{d['count']} {counted} in the last {d['window']}, the limit is {d['limit']}"


def _quota(reason: str, d: _Details) -> str:
    if reason == "NO_INPUT":
        return f"no proposed usage for {d['key']}, so the quota cannot be checked"
    now = f" (now {d['current']})" if d.has("current") else ""
    return f"{d['key']} would be {d['proposed']}{now}, the maximum is {d['max']}"


def _cost_ceiling(reason: str, d: _Details) -> str:
    if reason == "NO_PRICE":
        return f"no price per GPU hour for model {d['model']!r}"
    return (
        f"{d['projected_per_hour']} per hour projected (now {d['current_per_hour']}), "
        f"the ceiling is {d['ceiling_per_hour']}"
    )


def _slo_guard(reason: str, d: _Details) -> str:
    if reason == "NO_INPUT":
        return f"no value for {d['series']}, so the objective cannot be checked"
    if reason == "SLO_BREACH" and d["bound"] == "max":
        return f"{d['series']} is {d['value']}, above the maximum {d['max']}"
    if reason == "SLO_BREACH":
        return f"{d['series']} is {d['value']}, below the minimum {d['min']}"
    return f"{d['series']} is {d['value']}, within the objective"


def _blast_radius(reason: str, d: _Details) -> str:
    nodes = f"{d['nodes']} {'node' if d['nodes'] == '1' else 'nodes'} would be changing at once"
    if reason == "NO_INPUT":
        return f"{nodes}, and the fleet size is unknown, so max_percent cannot be checked"
    if d["bound"] == "max_percent":
        return f"{nodes}, {d['percent']}% of {d['fleet_size']}; the maximum is {d['max_percent']}%"
    spread = f"{nodes} ({d['selected']} selected, {d['in_flight']} in flight)"
    if reason == "BLAST_RADIUS":
        return f"{spread}, the maximum is {d['max_nodes']}"
    return f"{spread}, within the limit"


def _local_bounds(reason: str, d: _Details) -> str:
    value = f"{d['param']}={d['value']}"
    if reason == "NOT_A_NUMBER":
        return f"{value} is not a number"
    if reason == "OUT_OF_BOUNDS" and d["bound"] == "max":
        return f"{value} is above the maximum {d['max']}"
    if reason == "OUT_OF_BOUNDS":
        return f"{value} is below the minimum {d['min']}"
    return f"{value} is within bounds"


def _require_approval(reason: str, d: _Details) -> str:
    return f"{d['action']} requires approval"


def _fallback(reason: str, d: _Details) -> str:
    return " ".join([reason, *(f"{key}={value}" for key, value in d.items())])


_CLAUSES: Mapping[str, Callable[[str, _Details], str]] = {
    "allow": _allow,
    "safe_mode": _safe_mode,
    "freeze": _freeze,
    "rate_limit": _rate_limit,
    "quota": _quota,
    "cost_ceiling": _cost_ceiling,
    "slo_guard": _slo_guard,
    "blast_radius": _blast_radius,
    "local_bounds": _local_bounds,
    "require_approval": _require_approval,
}
