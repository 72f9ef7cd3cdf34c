"""Every rule kind, table-driven, with exact verdicts, reasons and details; the allow list,
shadow runs, safe mode, scopes, rate keys and explain(). Freeze windows: test_policy_windows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from policy import (
    Bundle,
    Decision,
    FleetContext,
    Proposal,
    RuleResult,
    Scope,
    SlidingWindowLog,
    Verdict,
    evaluate,
    explain,
    load_bundle,
    rate_keys,
)
from sentinel.actions import ParamValue
from sentinel.errors import InvalidArgument

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # a Wednesday
SCALE = "k8s.deployment.scale"
ALLOW, DENY, APPROVAL = Verdict.ALLOW, Verdict.DENY, Verdict.NEEDS_APPROVAL


# The series the slo_guard cases compare (values come from each case's FleetContext).
SERIES = "series: {p95_latency_ms: {promql: p95}, availability: {promql: a}, burn: {promql: b}}\n"


def _bundle(
    *rules: str, head: str = "allow: {actions: ['*'], shadow: true}\nsafe_actions: [agent.ping]\n"
) -> Bundle:
    body = "".join(f"  - {rule}\n" for rule in rules) or "  []\n"
    return load_bundle(
        f"version: 4\nexpires_at: 2100-01-01T00:00:00Z\n{head}{SERIES}rules:\n{body}".encode()
    )


@dataclass
class Case:
    rule: str
    action: str = SCALE
    params: Mapping[str, ParamValue] = field(default_factory=dict)
    fleet: FleetContext = field(default_factory=FleetContext)
    verdict: Verdict | None = ALLOW  # None: the rule must not appear in the results
    reason: str = ""
    details: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=lambda: {"zone": "eu-1"})


def _only(decision: Decision, rule_id: str = "r") -> RuleResult | None:
    found = [result for result in decision.results if result.rule_id == rule_id]
    assert len(found) <= 1
    return found[0] if found else None


SCALE_ML = {"namespace": "ml", "name": "trainer"}
CASES = {
    # quota: proposed usage against max; never blocks a reduction; no input -> a human.
    "quota over": Case(
        "{id: r, kind: quota, key: 'gpus:ml', max: 16}",
        fleet=FleetContext(usage={"gpus:ml": 12}, proposed_usage={"gpus:ml": 20}),
        verdict=DENY,
        reason="QUOTA_EXCEEDED",
        details={"key": "gpus:ml", "max": "16", "current": "12", "proposed": "20"},
    ),
    "quota at max": Case(
        "{id: r, kind: quota, key: 'gpus:ml', max: 16}",
        fleet=FleetContext(proposed_usage={"gpus:ml": 16}),
        reason="WITHIN_QUOTA",
        details={"key": "gpus:ml", "max": "16", "proposed": "16"},
    ),
    "quota reduction while over": Case(
        "{id: r, kind: quota, key: 'gpus:ml', max: 16}",
        fleet=FleetContext(usage={"gpus:ml": 24}, proposed_usage={"gpus:ml": 20}),
        reason="WITHIN_QUOTA",
        details={"key": "gpus:ml", "max": "16", "current": "24", "proposed": "20"},
    ),
    "quota no input": Case(
        "{id: r, kind: quota, key: 'gpus:ml', max: 16}",
        fleet=FleetContext(usage={"gpus:ml": 3}),
        verdict=APPROVAL,
        reason="NO_INPUT",
        details={"key": "gpus:ml", "max": "16", "current": "3"},
    ),
    # cost_ceiling: sum((running + delta) * price) per hour.
    "cost over": Case(
        "{id: r, kind: cost_ceiling, price_per_gpu_hour: {H200: 4.5, H100: 3.2}, "
        "ceiling_per_hour: 500}",
        fleet=FleetContext(gpu_hours_per_hour={"H200": 100}, proposed_gpu_delta={"H200": 16}),
        verdict=DENY,
        reason="COST_CEILING",
        details={"current_per_hour": "450", "projected_per_hour": "522", "ceiling_per_hour": "500"},
    ),
    "cost within": Case(
        "{id: r, kind: cost_ceiling, price_per_gpu_hour: {H200: 4.5, H100: 3.2}, "
        "ceiling_per_hour: 500}",
        fleet=FleetContext(gpu_hours_per_hour={"H200": 100}, proposed_gpu_delta={"H100": 10}),
        reason="WITHIN_BUDGET",
        details={"current_per_hour": "450", "projected_per_hour": "482", "ceiling_per_hour": "500"},
    ),
    "cost reduction while over": Case(
        "{id: r, kind: cost_ceiling, price_per_gpu_hour: {H200: 4.5}, ceiling_per_hour: 100}",
        fleet=FleetContext(gpu_hours_per_hour={"H200": 64}, proposed_gpu_delta={"H200": -8}),
        reason="WITHIN_BUDGET",
        details={"current_per_hour": "288", "projected_per_hour": "252", "ceiling_per_hour": "100"},
    ),
    "cost unknown model": Case(
        "{id: r, kind: cost_ceiling, price_per_gpu_hour: {H200: 4.5}, ceiling_per_hour: 500}",
        fleet=FleetContext(proposed_gpu_delta={"A100": 8}),
        verdict=DENY,
        reason="NO_PRICE",
        details={"model": "A100"},
    ),
    # slo_guard: series against min/max; `when: scale_down` only for fewer replicas.
    "slo breach": Case(
        "{id: r, kind: slo_guard, series: p95_latency_ms, max: 250}",
        fleet=FleetContext(series={"p95_latency_ms": 310}),
        verdict=DENY,
        reason="SLO_BREACH",
        details={"series": "p95_latency_ms", "max": "250", "value": "310", "bound": "max"},
    ),
    "slo below min": Case(
        "{id: r, kind: slo_guard, series: availability, min: 0.99}",
        fleet=FleetContext(series={"availability": 0.985}),
        verdict=DENY,
        reason="SLO_BREACH",
        details={"series": "availability", "min": "0.99", "value": "0.985", "bound": "min"},
    ),
    "slo within": Case(
        "{id: r, kind: slo_guard, series: p95_latency_ms, max: 250}",
        fleet=FleetContext(series={"p95_latency_ms": 250}),
        reason="WITHIN_SLO",
        details={"series": "p95_latency_ms", "max": "250", "value": "250"},
    ),
    "slo no input": Case(
        "{id: r, kind: slo_guard, series: p95_latency_ms, max: 250}",
        verdict=APPROVAL,
        reason="NO_INPUT",
        details={"series": "p95_latency_ms", "max": "250"},
    ),
    "slo scale down": Case(
        "{id: r, kind: slo_guard, series: burn, max: 2, when: scale_down}",
        params={**SCALE_ML, "replicas": 2},
        fleet=FleetContext(usage={"replicas:ml/trainer": 4}, series={"burn": 2.1}),
        verdict=DENY,
        reason="SLO_BREACH",
        details={"series": "burn", "max": "2", "value": "2.1", "bound": "max"},
    ),
    "slo scale up is not its business": Case(
        "{id: r, kind: slo_guard, series: burn, max: 2, when: scale_down}",
        params={**SCALE_ML, "replicas": 6},
        fleet=FleetContext(usage={"replicas:ml/trainer": 4}, series={"burn": 9}),
        verdict=None,
    ),
    "slo scale with unknown replicas assumes down": Case(
        "{id: r, kind: slo_guard, series: burn, max: 2, when: scale_down}",
        params={**SCALE_ML, "replicas": 6},
        fleet=FleetContext(series={"burn": 9}),
        verdict=DENY,
        reason="SLO_BREACH",
        details={"series": "burn", "max": "2", "value": "9", "bound": "max"},
    ),
    "slo other action": Case(
        "{id: r, kind: slo_guard, series: burn, max: 2, when: scale_down}",
        action="k8s.deployment.restart",
        fleet=FleetContext(series={"burn": 9}),
        verdict=None,
    ),
    # blast_radius: selected + in flight against max_nodes and max_percent of fleet_size.
    "blast nodes over": Case(
        "{id: r, kind: blast_radius, max_nodes: 5}",
        fleet=FleetContext(selected_nodes=4, affected_nodes=2),
        verdict=DENY,
        reason="BLAST_RADIUS",
        details={
            "nodes": "6",
            "selected": "4",
            "in_flight": "2",
            "max_nodes": "5",
            "bound": "max_nodes",
        },
    ),
    "blast nodes at max": Case(
        "{id: r, kind: blast_radius, max_nodes: 5}",
        fleet=FleetContext(selected_nodes=3, affected_nodes=2),
        reason="WITHIN_RADIUS",
        details={"nodes": "5", "selected": "3", "in_flight": "2", "max_nodes": "5"},
    ),
    "blast percent over": Case(
        "{id: r, kind: blast_radius, max_percent: 10}",
        fleet=FleetContext(selected_nodes=5, fleet_size=40),
        verdict=DENY,
        reason="BLAST_RADIUS",
        details={
            "nodes": "5",
            "selected": "5",
            "in_flight": "0",
            "max_percent": "10",
            "fleet_size": "40",
            "percent": "12.5",
            "bound": "max_percent",
        },
    ),
    "blast percent at max": Case(
        "{id: r, kind: blast_radius, max_percent: 10}",
        fleet=FleetContext(selected_nodes=4, fleet_size=40),
        reason="WITHIN_RADIUS",
        details={
            "nodes": "4",
            "selected": "4",
            "in_flight": "0",
            "max_percent": "10",
            "fleet_size": "40",
            "percent": "10",
        },
    ),
    "blast percent no fleet size": Case(
        "{id: r, kind: blast_radius, max_percent: 10}",
        fleet=FleetContext(selected_nodes=1),
        verdict=APPROVAL,
        reason="NO_INPUT",
        details={"nodes": "1", "selected": "1", "in_flight": "0", "max_percent": "10"},
    ),
    # local_bounds: a number within [min, max]; absent -> not its business.
    "bounds above": Case(
        "{id: r, kind: local_bounds, param: watts, min: 100, max: 700}",
        action="node.gpu.set_power_limit",
        params={"gpu": 0, "watts": 900.0},
        verdict=DENY,
        reason="OUT_OF_BOUNDS",
        details={"param": "watts", "value": "900", "min": "100", "max": "700", "bound": "max"},
    ),
    "bounds below": Case(
        "{id: r, kind: local_bounds, param: watts, min: 100, max: 700}",
        action="node.gpu.set_power_limit",
        params={"watts": 99.5},
        verdict=DENY,
        reason="OUT_OF_BOUNDS",
        details={"param": "watts", "value": "99.5", "min": "100", "max": "700", "bound": "min"},
    ),
    "bounds within": Case(
        "{id: r, kind: local_bounds, param: watts, max: 700}",
        action="node.gpu.set_power_limit",
        params={"watts": 700},
        reason="IN_BOUNDS",
        details={"param": "watts", "value": "700", "max": "700"},
    ),
    "bounds not a number": Case(
        "{id: r, kind: local_bounds, param: watts, max: 700}",
        action="node.gpu.set_power_limit",
        params={"watts": True},
        verdict=DENY,
        reason="NOT_A_NUMBER",
        details={"param": "watts", "value": "True", "max": "700"},
    ),
    "bounds absent param": Case(
        "{id: r, kind: local_bounds, param: watts, max: 700}", verdict=None
    ),
    # require_approval, and the common filters: actions and selector.
    "approval": Case(
        "{id: r, kind: require_approval}",
        verdict=APPROVAL,
        reason="APPROVAL_REQUIRED",
        details={"action": SCALE},
    ),
    "action glob misses": Case(
        "{id: r, kind: require_approval, actions: ['node.*']}", verdict=None
    ),
    "selector misses": Case("{id: r, kind: require_approval, selector: 'zone=us-1'}", verdict=None),
    "selector matches": Case(
        "{id: r, kind: require_approval, selector: 'zone in (eu-1,eu-2),!canary'}",
        verdict=APPROVAL,
        reason="APPROVAL_REQUIRED",
        details={"action": SCALE},
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_rule_kinds(case: Case) -> None:
    bundle = _bundle(case.rule)
    proposal = Proposal(case.action, "node-a", case.labels, case.params)
    decision = evaluate(bundle, proposal, NOW, history=SlidingWindowLog(), fleet=case.fleet)
    result = _only(decision)
    if case.verdict is None:
        assert result is None
        assert decision.verdict is ALLOW
        return
    assert result is not None
    assert (result.verdict, result.reason, dict(result.details)) == (
        case.verdict,
        case.reason,
        case.details,
    )
    assert decision.verdict is case.verdict


RATE = {
    "node": ("r|node|node-a", Scope.NODE, "matching actions on node-a"),
    "node_action": (
        "r|node_action|node-a|k8s.deployment.scale",
        Scope.NODE,
        "k8s.deployment.scale on node-a",
    ),
    "target": (
        "r|target|deployment/ml/trainer",
        Scope.FLEET,
        "matching actions on deployment/ml/trainer",
    ),
    "fleet": ("r|fleet", Scope.FLEET, "matching actions in the fleet"),
}


@pytest.mark.parametrize(
    ("per", "key", "scope", "counted"), [(p, *v) for p, v in RATE.items()], ids=RATE.keys()
)
def test_rate_limit_counts_the_half_open_window(
    per: str, key: str, scope: Scope, counted: str
) -> None:
    bundle = _bundle(f"{{id: r, kind: rate_limit, limit: 2, window: 1h, per: {per}}}")
    proposal = Proposal(SCALE, "node-a", {}, {}, target="deployment/ml/trainer")
    assert rate_keys(bundle, proposal) == [key]
    log = SlidingWindowLog()
    log.record(key, NOW - timedelta(hours=1))  # on the open edge: not counted
    log.record(key, NOW - timedelta(minutes=59, seconds=59))
    log.record(key, NOW + timedelta(seconds=1))  # the future: not counted
    log.record(
        key.replace("node-a", "node-b").replace("trainer", "other") + "x", NOW
    )  # another key
    result = _only(evaluate(bundle, proposal, NOW, history=log))
    assert result is not None
    assert (result.scope, result.verdict, result.reason) == (scope, ALLOW, "WITHIN_LIMIT")
    assert dict(result.details) == {
        "key": key,
        "per": per,
        "count": "1",
        "limit": "2",
        "window": "1h",
        "node_id": "node-a",
        "action": SCALE,
        "target": "deployment/ml/trainer",
    }
    log.record(key, NOW)  # on the closed edge: counted
    decision = evaluate(bundle, proposal, NOW, history=log)
    result = _only(decision)
    assert result is not None
    assert (decision.verdict, result.reason, result.details["count"]) == (DENY, "RATE_LIMITED", "2")
    assert explain(decision) == [
        f"denied by rate limit 'r': 2 {counted} in the last 1h, the limit is 2"
    ]


def test_rate_limit_target_defaults_to_the_node() -> None:
    bundle = _bundle("{id: r, kind: rate_limit, limit: 1, window: 1m, per: target}")
    assert rate_keys(bundle, Proposal(SCALE, "node-a", {}, {})) == ["r|target|node/node-a"]


def test_rate_keys_follow_actions_selectors_scopes_and_shadow() -> None:
    bundle = _bundle(
        "{id: a, kind: rate_limit, limit: 1, window: 1h, per: node}",
        "{id: b, kind: rate_limit, limit: 1, window: 1h, per: fleet, actions: ['k8s.*']}",
        "{id: c, kind: rate_limit, limit: 1, window: 1h, per: node, actions: [agent.ping]}",
        "{id: d, kind: rate_limit, limit: 1, window: 1h, per: node_action, selector: 'zone=us-1'}",
        "{id: e, kind: require_approval}",
    )
    proposal = Proposal(SCALE, "n1", {"zone": "eu-1"}, {})
    assert rate_keys(bundle, proposal) == ["a|node|n1", "b|fleet"]
    assert rate_keys(bundle, proposal, scopes=frozenset({Scope.NODE})) == ["a|node|n1"]
    assert (
        rate_keys(bundle, Proposal(SCALE, "n1", {"zone": "us-1"}, {}))[-1]
        == f"d|node_action|n1|{SCALE}"
    )
    assert rate_keys(bundle, Proposal(SCALE, "n1", {}, {}, shadow=True)) == []


MIXED = (
    "{id: freeze, kind: freeze, windows: [{once: {start: '2026-01-01T00:00:00Z', end: "
    "'2027-01-01T00:00:00Z'}}]}",
    "{id: per-node, kind: rate_limit, limit: 5, window: 1h, per: node}",
    "{id: per-fleet, kind: rate_limit, limit: 5, window: 1h, per: fleet}",
    "{id: quota, kind: quota, key: 'gpus:ml', max: 16}",
    "{id: manual, kind: require_approval}",
)


def test_agent_scope_evaluates_only_node_rules() -> None:
    bundle = _bundle(*MIXED)
    proposal = Proposal(SCALE, "n1", {}, {})
    agent = evaluate(
        bundle, proposal, NOW, history=SlidingWindowLog(), scopes=frozenset({Scope.NODE})
    )
    hub = evaluate(bundle, proposal, NOW, history=SlidingWindowLog())
    assert [(r.rule_id, r.scope) for r in agent.results] == [
        ("allow", Scope.NODE),
        ("freeze", Scope.NODE),
        ("per-node", Scope.NODE),
        ("manual", Scope.NODE),
    ]
    assert [r.rule_id for r in hub.results] == [
        "allow",
        "freeze",
        "per-node",
        "per-fleet",
        "quota",
        "manual",
    ]
    assert [r.verdict for r in hub.results] == [ALLOW, DENY, ALLOW, ALLOW, APPROVAL, APPROVAL]
    assert hub.verdict is DENY  # any deny wins over needs-approval
    assert hub.policy_version == 4


def test_needs_approval_wins_over_allow() -> None:
    bundle = _bundle(*MIXED[1:])
    decision = evaluate(bundle, Proposal(SCALE, "n1", {}, {}), NOW, history=SlidingWindowLog())
    assert decision.verdict is APPROVAL
    assert explain(decision) == [
        "held for approval by quota 'quota': no proposed usage for gpus:ml, so the quota cannot "
        "be checked",
        f"held for approval by rule 'manual': {SCALE} requires approval",
    ]


def test_shadow_runs_only_pass_the_allow_list() -> None:
    bundle = _bundle(*MIXED)
    shadow = Proposal(SCALE, "n1", {}, {}, shadow=True)
    decision = evaluate(bundle, shadow, NOW, history=SlidingWindowLog(), safe_mode=True)
    assert [(r.rule_id, r.reason, dict(r.details)) for r in decision.results] == [
        ("allow", "ALLOWED", {"action": SCALE, "mode": "shadow", "pattern": "*"}),
    ]
    no_shadow = _bundle(head="allow: {actions: [agent.ping]}\n")
    denied = evaluate(no_shadow, shadow, NOW, history=SlidingWindowLog())
    assert (denied.verdict, denied.results[0].reason) == (DENY, "NOT_ALLOWED")
    assert explain(denied) == [
        f"denied by the allow list: shadow runs are not allowed and {SCALE} is not in allow.actions"
    ]
    ping = Proposal("agent.ping", "n1", {}, {}, shadow=True)
    assert evaluate(no_shadow, ping, NOW, history=SlidingWindowLog()).verdict is ALLOW


def test_deny_by_default() -> None:
    bundle = _bundle(head="allow: {actions: ['agent.*', 'k8s.node.*']}\n")

    def decide(action: str) -> Decision:
        return evaluate(bundle, Proposal(action, "n1", {}, {}), NOW, history=SlidingWindowLog())

    assert decide("k8s.node.cordon").results[0].details["pattern"] == "k8s.node.*"
    denied = decide(SCALE)
    assert (denied.verdict, denied.results[0].rule_id, denied.results[0].reason) == (
        DENY,
        "allow",
        "NOT_ALLOWED",
    )
    assert explain(denied) == [
        f"denied by the allow list: {SCALE} is not in allow.actions (agent.*, k8s.node.*)"
    ]
    assert decide("no.such.action").verdict is DENY


def test_safe_mode_runs_only_safe_actions_and_still_applies_rules() -> None:
    bundle = _bundle(
        "{id: pings, kind: rate_limit, limit: 1, window: 1h, per: node, actions: [agent.ping]}"
    )
    log = SlidingWindowLog()
    ping, cordon = Proposal("agent.ping", "n1", {}, {}), Proposal("k8s.node.cordon", "n1", {}, {})
    allowed = evaluate(bundle, ping, NOW, history=log, safe_mode=True)
    assert [(r.rule_id, r.verdict, r.reason) for r in allowed.results] == [
        ("allow", ALLOW, "ALLOWED"),
        ("safe-mode", ALLOW, "SAFE_ACTION"),
        ("pings", ALLOW, "WITHIN_LIMIT"),
    ]
    denied = evaluate(bundle, cordon, NOW, history=log, safe_mode=True)
    assert [(r.rule_id, r.verdict, r.reason) for r in denied.results] == [
        ("allow", ALLOW, "ALLOWED"),
        ("safe-mode", DENY, "SAFE_MODE"),
    ]
    assert explain(denied) == [
        "denied by safe mode: the policy bundle has expired, and k8s.node.cordon is not a safe "
        "action (agent.ping)"
    ]
    log.record("pings|node|n1", NOW)
    assert evaluate(bundle, ping, NOW, history=log, safe_mode=True).verdict is DENY


def test_every_rule_reports_even_after_a_deny() -> None:
    bundle = _bundle(
        "{id: a, kind: require_approval}", "{id: b, kind: local_bounds, param: replicas, max: 3}"
    )
    decision = evaluate(
        bundle,
        Proposal(SCALE, "n", {}, {"replicas": 9}),
        NOW,
        history=SlidingWindowLog(),
        safe_mode=True,
    )
    assert [(r.rule_id, r.verdict) for r in decision.results] == [
        ("allow", ALLOW),
        ("safe-mode", DENY),
        ("a", APPROVAL),
        ("b", DENY),
    ]
    assert explain(decision) == [
        f"denied by safe mode: the policy bundle has expired, and {SCALE} is not a safe action "
        f"(agent.ping)",
        "denied by bounds 'b': replicas=9 is above the maximum 3",
    ]


EXPLAINED = {
    "quota": ("quota over", "denied by quota 'r': gpus:ml would be 20 (now 12), the maximum is 16"),
    "cost": (
        "cost over",
        "denied by cost ceiling 'r': 522 per hour projected (now 450), the ceiling is 500",
    ),
    "price": (
        "cost unknown model",
        "denied by cost ceiling 'r': no price per GPU hour for model 'A100'",
    ),
    "slo": ("slo breach", "denied by SLO guard 'r': p95_latency_ms is 310, above the maximum 250"),
    "slo min": (
        "slo below min",
        "denied by SLO guard 'r': availability is 0.985, below the minimum 0.99",
    ),
    "slo input": (
        "slo no input",
        "held for approval by SLO guard 'r': no value for p95_latency_ms, so the objective cannot "
        "be checked",
    ),
    "blast": (
        "blast nodes over",
        "denied by blast radius 'r': 6 nodes would be changing at once (4 selected, 2 in flight), "
        "the maximum is 5",
    ),
    "blast %": (
        "blast percent over",
        "denied by blast radius 'r': 5 nodes would be changing at once, 12.5% of 40; the maximum "
        "is 10%",
    ),
    "blast input": (
        "blast percent no fleet size",
        "held for approval by blast radius 'r': 1 node would be changing "
        "at once, and the fleet size is unknown, so max_percent cannot be checked",
    ),
    "bounds": ("bounds below", "denied by bounds 'r': watts=99.5 is below the minimum 100"),
    "not a number": ("bounds not a number", "denied by bounds 'r': watts=True is not a number"),
}


@pytest.mark.parametrize(("case", "sentence"), EXPLAINED.values(), ids=EXPLAINED.keys())
def test_explain_sentences(case: str, sentence: str) -> None:
    spec = CASES[case]
    decision = evaluate(
        _bundle(spec.rule),
        Proposal(spec.action, "node-a", spec.labels, spec.params),
        NOW,
        history=SlidingWindowLog(),
        fleet=spec.fleet,
    )
    assert explain(decision) == [sentence]


def test_explain_an_allowed_decision_and_unknown_kinds() -> None:
    bundle = _bundle("{id: r, kind: rate_limit, limit: 5, window: 1h, per: node_action}")
    decision = evaluate(
        bundle,
        Proposal("node.systemd.restart", "node-a", {}, {"unit": "x"}),
        NOW,
        history=SlidingWindowLog(),
    )
    assert explain(decision) == [
        "allowed by the allow list: node.systemd.restart (execute) matches '*' in allow.actions",
        "allowed by rate limit 'r': 0 node.systemd.restart on node-a in the last 1h, the limit is "
        "5",
    ]
    alien = RuleResult("x", "future_kind", Scope.FLEET, DENY, "SOMETHING", {"b": "2", "a": "1"})
    assert explain(Decision(DENY, (alien,), 9)) == ["denied by future_kind 'x': SOMETHING a=1 b=2"]


@pytest.mark.parametrize(
    "now", [datetime(2026, 1, 1), datetime(2, 12, 31, tzinfo=UTC), datetime(9998, 1, 1, tzinfo=UTC)]
)
def test_naive_or_out_of_range_now_is_refused(now: datetime) -> None:
    with pytest.raises(InvalidArgument) as caught:
        evaluate(_bundle(), Proposal(SCALE, "n", {}, {}), now, history=SlidingWindowLog())
    assert caught.value.reason == "INVALID_TIME"
