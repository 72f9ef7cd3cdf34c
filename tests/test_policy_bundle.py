"""Policy bundles: the YAML format, strict validation with paths, and the default policy."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta

import pytest

import policy
from policy import (
    DEFAULT_POLICY,
    PolicyError,
    PromQLSeries,
    Proposal,
    Scope,
    SlidingWindowLog,
    TelemetryMetric,
    TelemetrySeries,
    Verdict,
    evaluate,
    load_bundle,
)
from sentinel.errors import InvalidArgument

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

GOOD = b"""\
version: 7
expires_at: 2026-12-31T00:00:00+01:00
allow:
  actions: ["agent.*", k8s.deployment.scale, node.gpu.set_power_limit]
  shadow: true
safe_actions: [agent.ping]
calendars:
  de-be: [2026-12-25, "2026-12-26"]
series:
  p95_latency_ms:
    promql: |
      1000 * histogram_quantile(0.95, sum by (le) (rate(http_seconds_bucket[5m])))
  gpu_busy: {telemetry: gpu_utilization_mean}
rules:
  - id: weekend-freeze
    kind: freeze
    description: no changes at weekends
    actions: ["k8s.*"]
    selector: "zone=eu-1,!canary"
    effect: needs_approval
    break_glass: false
    windows:
      - recurring: {rrule: "FREQ=WEEKLY;BYDAY=SA", start: 00:00, duration: 48h,
                    timezone: Europe/Berlin, dtstart: "2026-01-03"}
      - holidays: {calendar: de-be, timezone: Europe/Berlin}
      - once: {start: "2026-12-20T00:00:00+01:00", end: "2027-01-04T00:00:00+01:00"}
  - {id: restarts, kind: rate_limit, limit: 5, window: 1h, per: node_action}
  - {id: ml-gpus, kind: quota, key: "gpus:ml", max: 16}
  - {id: budget, kind: cost_ceiling, price_per_gpu_hour: {H200: 4.5, H100: 3},
     ceiling_per_hour: 500}
  - {id: latency, kind: slo_guard, series: p95_latency_ms, max: 250, when: scale_down}
  - {id: radius, kind: blast_radius, max_nodes: 10, max_percent: 25}
  - {id: power, kind: local_bounds, actions: [node.gpu.set_power_limit], param: watts,
     min: 100, max: 700}
  - {id: manual, kind: require_approval, actions: [k8s.deployment.scale]}
"""


def test_public_names_are_locked() -> None:
    assert sorted(policy.__all__) == [
        "Bundle",
        "DEFAULT_POLICY",
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


def test_good_bundle_loads_every_field() -> None:
    bundle = load_bundle(GOOD)
    assert bundle.version == 7
    assert bundle.expires_at == datetime(2026, 12, 30, 23, 0, tzinfo=UTC)
    assert bundle.allow_actions == {"agent.*", "k8s.deployment.scale", "node.gpu.set_power_limit"}
    assert bundle.allow_shadow is True
    assert bundle.safe_actions == {"agent.ping"}
    assert bundle.calendars == {"de-be": {date(2026, 12, 25), date(2026, 12, 26)}}
    assert bundle.series == {
        "p95_latency_ms": PromQLSeries(
            "1000 * histogram_quantile(0.95, sum by (le) (rate(http_seconds_bucket[5m])))"
        ),
        "gpu_busy": TelemetrySeries(TelemetryMetric.GPU_UTILIZATION_MEAN),
    }
    assert bundle.source == GOOD
    assert bundle.sha256 == hashlib.sha256(GOOD).hexdigest()
    assert [(r.id, r.kind, r.scope) for r in bundle.rules] == [
        ("weekend-freeze", "freeze", Scope.NODE),
        ("restarts", "rate_limit", Scope.NODE),
        ("ml-gpus", "quota", Scope.FLEET),
        ("budget", "cost_ceiling", Scope.FLEET),
        ("latency", "slo_guard", Scope.FLEET),
        ("radius", "blast_radius", Scope.FLEET),
        ("power", "local_bounds", Scope.NODE),
        ("manual", "require_approval", Scope.NODE),
    ]
    freeze = bundle.rules[0]
    assert freeze.actions == ("k8s.*",)
    assert str(freeze.selector) == "!canary,zone=eu-1"
    assert freeze.description == "no changes at weekends"
    assert bundle.rules[1].actions == ("*",)  # default: every action


def test_loading_the_same_bytes_gives_an_equal_bundle() -> None:
    first = load_bundle(GOOD)
    evaluate(first, Proposal("k8s.node.cordon", "n", {"zone": "eu-1"}, {}), NOW, history=_EMPTY)
    assert load_bundle(first.source) == first  # memos (filled above) do not count


def test_a_comment_changes_the_digest_but_not_the_rules() -> None:
    first, second = load_bundle(GOOD), load_bundle(GOOD + b"# reviewed\n")
    assert first.sha256 != second.sha256
    assert first.rules == second.rules


HEAD = "version: 1\nexpires_at: 2100-01-01T00:00:00Z\nallow: {actions: ['*']}\n"


def _rule(body: str) -> str:
    return HEAD + "rules:\n" + body


def _series(series: str, rules: str = "") -> str:
    return HEAD + f"series: {series}\n" + (f"rules:\n{rules}" if rules else "")


def _window(window: str) -> str:
    return _rule(f"  - id: f\n    kind: freeze\n    windows:\n      - {window}\n")


RECURRING = (
    "recurring: {{rrule: '{rrule}', start: '{start}', duration: {duration}, timezone: {tz}}}"
)


def _recurring(
    rrule: str = "FREQ=DAILY", start: str = "22:00", duration: str = "8h", tz: str = "UTC"
) -> str:
    return _window(RECURRING.format(rrule=rrule, start=start, duration=duration, tz=tz))


BAD = [
    (
        HEAD + "foo: 1\n",
        "foo",
        "unknown key 'foo' (expected one of: allow, calendars, expires_at, rules, safe_actions, "
        "series, version)",
    ),
    (
        _rule("  - {id: a, kind: rate_limit, limt: 5, window: 1h, per: node}\n"),
        "rules[0].limt",
        "unknown key 'limt' (expected one of: actions, description, id, kind, limit, per, "
        "selector, window)",
    ),
    (
        _rule("  - id: a\n    kind: require_approval\n    id: b\n"),
        "rules[0].id",
        "duplicate key (first at line 5)",
    ),
    (HEAD.replace("allow", "version: 2\nallow"), "version", "duplicate key (first at line 1)"),
    (
        _recurring(tz="Mars/Base"),
        "rules[0].windows[0].recurring.timezone",
        "unknown time zone 'Mars/Base'",
    ),
    (
        _recurring(tz="/etc/localtime"),
        "rules[0].windows[0].recurring.timezone",
        "unknown time zone '/etc/localtime'",
    ),
    (
        _recurring(rrule="FREQ=HOURLY"),
        "rules[0].windows[0].recurring.rrule",
        "RRULE FREQ must be one of YEARLY, MONTHLY, WEEKLY, DAILY (start sets the time)",
    ),
    (
        _recurring(rrule="FREQ=WEEKLY;BYDAY=XX"),
        "rules[0].windows[0].recurring.rrule",
        "invalid RRULE 'FREQ=WEEKLY;BYDAY=XX': invalid 'BYDAY': XX",
    ),
    (
        _recurring(rrule="FREQ=DAILY;BYHOUR=3"),
        "rules[0].windows[0].recurring.rrule",
        "unsupported RRULE part 'BYHOUR=3' (supported once each: FREQ, INTERVAL, UNTIL, BYDAY, "
        "BYMONTH, BYMONTHDAY, BYYEARDAY, BYWEEKNO, BYSETPOS, WKST)",
    ),
    (
        _recurring(rrule="FREQ=DAILY;UNTIL=20261231T000000Z"),
        "rules[0].windows[0].recurring.rrule",
        "RRULE UNTIL is local time: write YYYYMMDD or YYYYMMDDTHHMMSS, no Z",
    ),
    (
        _recurring(start="24:00"),
        "rules[0].windows[0].recurring.start",
        "invalid time of day '24:00': use HH:MM (24 h)",
    ),
    (
        _recurring(duration="8 hours"),
        "rules[0].windows[0].recurring.duration",
        'invalid duration "8 hours": use Go syntax such as 90s, 15m or 2h',
    ),
    (
        _recurring(duration="0s"),
        "rules[0].windows[0].recurring.duration",
        "must be more than 0 and at most 366 days (8784h)",
    ),
    (
        _rule("  - {id: a, kind: rate_limit, limit: 5, window: 1 hour, per: node}\n"),
        "rules[0].window",
        'invalid duration "1 hour": use Go syntax such as 90s, 15m or 2h',
    ),
    (
        "version: 1\nexpires_at: 2100-01-01T00:00:00\n",
        "expires_at",
        'invalid time "2100-01-01T00:00:00": no time zone; add Z for UTC or an offset such as '
        "+02:00",
    ),
    (
        _rule("  - {id: a, kind: require_approval}\n  - {id: a, kind: require_approval}\n"),
        "rules[1].id",
        "duplicate rule id 'a' (first at rules[0])",
    ),
    (
        _rule("  - {id: a, kind: frezee}\n"),
        "rules[0].kind",
        "unknown kind 'frezee' (expected one of: freeze, local_bounds, require_approval, "
        "rate_limit, "
        "quota, cost_ceiling, slo_guard, blast_radius)",
    ),
    (
        "version: 1\nexpires_at: 2100-01-01T00:00:00Z\nallow: {actions: [agent.ping, "
        "'k8s.deploymnet.*']}\n",
        "allow.actions[1]",
        "'k8s.deploymnet.*' matches no known action",
    ),
    (
        _rule("  - {id: a, kind: require_approval, actions: [node.gpu.set_power]}\n"),
        "rules[0].actions[0]",
        "'node.gpu.set_power' matches no known action",
    ),
    (
        _rule("  - {id: a, kind: require_approval, actions: []}\n"),
        "rules[0].actions",
        "must not be empty (leave the key out to match every action)",
    ),
    (HEAD + "safe_actions: [K8S.*]\n", "safe_actions[0]", "'K8S.*' matches no known action"),
    ("expires_at: 2100-01-01T00:00:00Z\n", "version", "required key is missing"),
    ("version: 0\nexpires_at: 2100-01-01T00:00:00Z\n", "version", "must be at least 1"),
    (
        "version: one\nexpires_at: 2100-01-01T00:00:00Z\n",
        "version",
        "must be an integer, not string 'one'",
    ),
    (
        "version: [1\n",
        "bundle",
        "invalid YAML at line 2, column 1: expected ',' or ']', but got '<stream end>'",
    ),
    ("", "bundle", "empty document"),
    ("- 1\n", "bundle", "must be a mapping, not a list"),
    (
        _window("holidays: {calendar: de, timezone: UTC}"),
        "rules[0].windows[0].holidays.calendar",
        "unknown calendar 'de' (defined: none)",
    ),
    (
        _window(
            "{once: {start: '2026-01-01T00:00:00Z', end: '2026-01-02T00:00:00Z'}, recurring: {}}"
        ),
        "rules[0].windows[0]",
        "must have exactly one of: once, recurring, holidays",
    ),
    (
        _window("once: {start: '2026-01-02T00:00:00Z', end: '2026-01-01T00:00:00Z'}"),
        "rules[0].windows[0].once.end",
        "must be after start",
    ),
    (_rule("  - {id: f, kind: freeze, windows: []}\n"), "rules[0].windows", "must not be empty"),
    (
        _rule("  - {id: a, kind: require_approval, selector: 'zone in (a'}\n"),
        "rules[0].selector",
        'invalid label selector "zone in (a": expected ")"',
    ),
    (
        _rule("  - {id: allow, kind: require_approval}\n"),
        "rules[0].id",
        "'allow' is reserved for the built-in check",
    ),
    (
        _rule("  - {id: 'a|b', kind: require_approval}\n"),
        "rules[0].id",
        "invalid rule id 'a|b': use up to 63 letters, digits, '-', '_' or '.', starting and "
        "ending with a letter or digit",
    ),
    (
        _rule("  - {id: a, kind: local_bounds, param: watts, min: 700, max: 100}\n"),
        "rules[0].max",
        "must not be less than min",
    ),
    (
        _rule("  - {id: a, kind: local_bounds, param: watts}\n"),
        "rules[0]",
        "needs min, max or both",
    ),
    (
        _rule("  - {id: a, kind: blast_radius}\n"),
        "rules[0]",
        "needs max_nodes, max_percent or both",
    ),
    (
        _rule("  - {id: a, kind: blast_radius, max_percent: 120}\n"),
        "rules[0].max_percent",
        "must be more than 0 and at most 100",
    ),
    (_rule("  - {id: a}\n"), "rules[0].kind", "required key is missing"),
    (
        HEAD + "calendars: {de: [2026-13-01]}\n",
        "calendars.de[0]",
        "invalid date '2026-13-01': use YYYY-MM-DD",
    ),
    (
        _rule("  - {id: a, kind: rate_limit, limit: yes, window: 1h, per: node}\n"),
        "rules[0].limit",
        "must be an integer, not boolean 'yes'",
    ),
    (
        _rule("  - {id: a, kind: rate_limit, limit: 0, window: 1h, per: node}\n"),
        "rules[0].limit",
        "must be at least 1",
    ),
    (
        _rule("  - {id: a, kind: rate_limit, limit: 3, window: 9000h, per: node}\n"),
        "rules[0].window",
        "must be more than 0 and at most 366 days (8784h)",
    ),
    (
        _rule("  - {id: a, kind: rate_limit, limit: 3, window: 1h, per: cluster}\n"),
        "rules[0].per",
        "unknown per 'cluster' (expected one of: node, node_action, target, fleet)",
    ),
    (
        _rule("  - {id: a, kind: quota, key: k, max: .nan}\n"),
        "rules[0].max",
        "must be a finite number",
    ),
    (_rule("  - {id: a, kind: quota, key: k, max: -1}\n"), "rules[0].max", "must not be negative"),
    (
        _rule("  - {id: a, kind: cost_ceiling, price_per_gpu_hour: {}, ceiling_per_hour: 5}\n"),
        "rules[0].price_per_gpu_hour",
        "must name at least one GPU model",
    ),
    (
        _series("{s: {promql: up}}", "  - {id: a, kind: slo_guard, series: s, max: 1, when: x}\n"),
        "rules[0].when",
        "the only condition is scale_down",
    ),
    (
        _rule("  - {id: a, kind: slo_guard, series: p95, max: 1}\n"),
        "rules[0].series",
        "unknown series 'p95' (define it under series:; defined: none)",
    ),
    (
        _series(
            "{lat: {promql: up}, busy: {telemetry: nodes_online}}",
            "  - {id: a, kind: require_approval}\n"
            "  - {id: b, kind: slo_guard, series: p95, max: 1}\n",
        ),
        "rules[1].series",
        "unknown series 'p95' (define it under series:; defined: busy, lat)",
    ),
    (
        _series("{busy: {telemetry: gpu_busy}}"),
        "series.busy.telemetry",
        "unknown telemetry series 'gpu_busy' (expected one of: gpu_utilization_mean, "
        "gpu_utilization_max, gpu_memory_used_fraction_mean, nodes_online)",
    ),
    (
        _series("{lat: {promql: up, telemetry: nodes_online}}"),
        "series.lat",
        "must have exactly one of: promql, telemetry",
    ),
    (_series("{lat: {}}"), "series.lat", "must have exactly one of: promql, telemetry"),
    (
        _series("{lat: {prom: up}}"),
        "series.lat.prom",
        "unknown key 'prom' (expected one of: promql, telemetry)",
    ),
    (_series("{lat: {promql: '  '}}"), "series.lat.promql", "must not be empty"),
    (_series("{lat: {promql: [up]}}"), "series.lat.promql", "must be a string, not a list"),
    (
        _series("{lat: {promql: " + "x" * 4097 + "}}"),
        "series.lat.promql",
        "longer than 4096 characters",
    ),
    (_series("{lat: up}"), "series.lat", "must be a mapping, not string 'up'"),
    (_series("[lat]"), "series", "must be a mapping, not a list"),
    (
        _series("{'p95 ms': {promql: up}}"),
        "series.p95 ms",
        "invalid series name 'p95 ms': use up to 63 letters, digits, '_', '.', ':' or '-', "
        "starting with a letter or '_'",
    ),
]


@pytest.mark.parametrize(
    ("source", "path", "problem"), BAD, ids=[f"{i}-{p}" for i, (_, p, _) in enumerate(BAD)]
)
def test_invalid_bundles_name_the_path(source: str, path: str, problem: str) -> None:
    with pytest.raises(PolicyError) as caught:
        load_bundle(source.encode())
    assert str(caught.value) == f"{path}: {problem}"
    assert caught.value.path == path
    assert caught.value.details["path"] == path
    assert caught.value.reason == "POLICY_INVALID"
    assert isinstance(caught.value, InvalidArgument)


def test_aliases_read_as_copies_but_bombs_are_refused() -> None:
    shared = (
        HEAD + "safe_actions: &safe [agent.ping]\nrules:\n  - {id: a, kind: rate_limit, limit: 1,"
    )
    bundle = load_bundle((shared + " window: &w 1h, per: node, actions: *safe}\n").encode())
    assert bundle.safe_actions == {"agent.ping"}
    assert bundle.rules[0].actions == ("agent.ping",)
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{name}: &{name} [{', '.join(['*' + previous] * 10)}]\n"
        for previous, name in zip("abcdefg", "bcdefgh", strict=True)
    )
    with pytest.raises(PolicyError, match=r"^bundle: more than 1000000 values once aliases"):
        load_bundle(bomb.encode())
    with pytest.raises(PolicyError, match=r"^bundle: more than 1000000 values"):
        load_bundle(b"version: &v [*v]\n")  # a cycle


def test_errors_carry_the_yaml_line() -> None:
    with pytest.raises(PolicyError) as caught:
        load_bundle(_recurring(tz="Mars/Base").encode())
    assert caught.value.details["line"] == "8"  # the line of the recurring window


def test_yaml_time_literals_are_read_as_typed() -> None:
    # YAML 1.1 reads an unquoted 22:00 as the sexagesimal integer 1320; the bundle does not.
    bundle = load_bundle(_recurring(start="22:00").replace("'22:00'", "22:00").encode())
    frozen = Proposal("agent.ping", "n", {}, {})
    decision = evaluate(bundle, frozen, datetime(2026, 1, 1, 22, 30, tzinfo=UTC), history=_EMPTY)
    assert decision.results[1].details["window"] == "the recurring window FREQ=DAILY (22:00 for 8h)"


def test_oversized_and_undecodable_bundles_are_refused() -> None:
    with pytest.raises(PolicyError, match=r"^bundle: larger than 1048576 bytes$"):
        load_bundle(b"#" * ((1 << 20) + 1))
    with pytest.raises(PolicyError, match=r"^bundle: invalid YAML"):
        load_bundle(b"\xff\xfe\x00\x00garbage")


_EMPTY = SlidingWindowLog()


def _decide(action: str, *, shadow: bool = False) -> Verdict:
    bundle = load_bundle(DEFAULT_POLICY)
    proposal = Proposal(action, "node-a", {}, {}, shadow=shadow)
    return evaluate(bundle, proposal, NOW, history=_EMPTY).verdict


def test_default_policy() -> None:
    bundle = load_bundle(DEFAULT_POLICY)
    assert bundle.version == 1
    assert bundle.expires_at - NOW > timedelta(days=365 * 70)
    assert bundle.rules == ()
    assert bundle.safe_actions == {"agent.ping"}
    assert _decide("agent.ping") is Verdict.ALLOW
    assert _decide("k8s.deployment.scale") is Verdict.DENY
    assert _decide("k8s.deployment.scale", shadow=True) is Verdict.ALLOW
    assert _decide("node.systemd.restart", shadow=True) is Verdict.ALLOW


def test_series_for_names_only_what_the_applying_slo_guards_compare() -> None:
    bundle = load_bundle(
        _series(
            "{lat: {promql: up}, busy: {telemetry: gpu_utilization_max}, spare: {promql: x}}",
            "  - {id: a, kind: slo_guard, series: lat, max: 1, actions: [k8s.deployment.scale]}\n"
            "  - {id: b, kind: slo_guard, series: busy, max: 90, selector: pool=gpu}\n"
            "  - {id: c, kind: quota, key: k, max: 1}\n",
        ).encode()
    )
    ping, scale = Proposal("agent.ping", "n", {}, {}), Proposal("k8s.deployment.scale", "n", {}, {})
    on_gpu = Proposal("agent.ping", "g", {"pool": "gpu"}, {})
    assert bundle.series_for([ping]) == {}
    assert bundle.series_for([scale]) == {"lat": PromQLSeries("up")}
    assert bundle.series_for([ping, on_gpu]) == {
        "busy": TelemetrySeries(TelemetryMetric.GPU_UTILIZATION_MAX)
    }
    assert load_bundle(DEFAULT_POLICY).series == {}
