"""Properties: rate limits never admit more than N per window, evaluation is deterministic,
the log counts like brute force, and recurring windows agree with wall-clock arithmetic."""

from __future__ import annotations

import functools
import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from policy import (
    Bundle,
    Decision,
    FleetContext,
    Proposal,
    Scope,
    SlidingWindowLog,
    Verdict,
    evaluate,
    explain,
    load_bundle,
    rate_keys,
)
from sentinel.actions import CATALOGUE

T0 = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
HEAD = "version: 1\nexpires_at: 2100-01-01T00:00:00Z\nallow: {actions: ['*'], shadow: true}\n"
# Modest and derandomized: the same examples every run, nothing written to .hypothesis/.
MODEST = settings(max_examples=200, deadline=None, derandomize=True, database=None)


@functools.cache
def _rate_bundle(limit: int, window_ms: int, per: str) -> Bundle:
    rule = f"  - {{id: r, kind: rate_limit, limit: {limit}, window: {window_ms}ms, per: {per}}}\n"
    return load_bundle(f"{HEAD}rules:\n{rule}".encode())


@st.composite
def _arrivals(draw: st.DrawFn) -> tuple[int, int, list[int]]:
    """A limit, a window (ms), and non-decreasing arrival times (ms) that often land
    exactly on window edges, and sometimes at the same instant."""
    limit = draw(st.integers(1, 5))
    window_ms = draw(st.integers(1, 5_000))
    gap = st.one_of(
        st.just(0),
        st.just(window_ms),
        st.sampled_from([1, window_ms // 2, max(window_ms - 1, 0)]),
        st.integers(0, 2 * window_ms),
    )
    gaps = draw(st.lists(gap, min_size=1, max_size=60))
    return limit, window_ms, list(itertools.accumulate(gaps))


@MODEST
@given(_arrivals(), st.sampled_from(["node", "node_action", "target", "fleet"]))
def test_rate_limit_never_admits_more_than_the_limit_in_any_window(
    arrivals: tuple[int, int, list[int]], per: str
) -> None:
    limit, window_ms, times = arrivals
    bundle = _rate_bundle(limit, window_ms, per)
    proposal = Proposal("k8s.deployment.scale", "node-a", {}, {}, target="deployment/ml/x")
    log, admitted = SlidingWindowLog(), list[int]()
    for ms in times:
        now = T0 + timedelta(milliseconds=ms)
        decision = evaluate(bundle, proposal, now, history=log)
        recent = sum(1 for a in admitted if ms - window_ms < a <= ms)
        assert (decision.verdict is Verdict.ALLOW) == (recent < limit)  # and never stricter
        if decision.verdict is Verdict.ALLOW:
            for key in rate_keys(bundle, proposal):
                log.record(key, now)
            admitted.append(ms)
    for a in admitted:  # the busiest spans start or end at an admitted instant
        assert sum(1 for b in admitted if a <= b < a + window_ms) <= limit  # [s, s+W)
        assert sum(1 for b in admitted if a - window_ms < b <= a) <= limit  # (s-W, s]


BUNDLE = load_bundle(
    (
        HEAD
        + """\
safe_actions: ["agent.*"]
calendars: {de: [2026-03-29, 2026-10-25, 2026-12-25]}
rules:
  - id: nightly
    kind: freeze
    actions: ["k8s.*"]
    windows:
      - recurring: {rrule: FREQ=DAILY, start: "02:30", duration: 1h, timezone: Europe/Berlin,
                    dtstart: "2026-01-01"}
      - recurring: {rrule: "FREQ=WEEKLY;BYDAY=SA", start: "22:00", duration: 30h,
                    timezone: America/New_York, dtstart: "2026-01-03"}
      - holidays: {calendar: de, timezone: Australia/Sydney}
  - {id: weekday, kind: freeze, effect: needs_approval, selector: "tier=prod",
     windows: [{recurring: {rrule: "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR", start: "09:00",
                            duration: 8h, timezone: Asia/Kolkata, dtstart: "2026-01-05"}}]}
  - {id: restarts, kind: rate_limit, limit: 2, window: 10m, per: node_action}
  - {id: fleet-rate, kind: rate_limit, limit: 3, window: 1h, per: fleet}
  - {id: power, kind: local_bounds, actions: [node.gpu.set_power_limit], param: watts,
     min: 100, max: 700}
  - {id: quota, kind: quota, key: "gpus:ml", max: 16}
  - {id: manual, kind: require_approval, actions: [k8s.pod.evict], selector: "tier=prod"}
"""
    ).encode()
)
HISTORY = SlidingWindowLog()
for _minute in range(0, 600 * 24 * 60, 7):
    HISTORY.record(
        f"restarts|node_action|n{_minute % 3}|node.systemd.restart", T0 + timedelta(minutes=_minute)
    )
    HISTORY.record("fleet-rate|fleet", T0 + timedelta(minutes=_minute))


@MODEST
@given(
    action=st.sampled_from(sorted(CATALOGUE)),
    node=st.sampled_from(["n0", "n1", "n2"]),
    tier=st.sampled_from([None, "prod", "dev"]),
    minutes=st.integers(0, 600 * 24 * 60),
    watts=st.one_of(st.none(), st.floats(0, 1_000, allow_nan=False)),
    flags=st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()),
    proposed_gpus=st.one_of(st.none(), st.integers(0, 32)),
)
def test_evaluate_is_deterministic(
    *,
    action: str,
    node: str,
    tier: str | None,
    minutes: int,
    watts: float | None,
    flags: tuple[bool, bool, bool, bool],
    proposed_gpus: int | None,
) -> None:
    shadow, break_glass, safe_mode, agent = flags
    labels = {} if tier is None else {"tier": tier}
    params = {} if watts is None else {"watts": watts}
    proposal = Proposal(action, node, labels, params, shadow=shadow, break_glass=break_glass)
    fleet = FleetContext(proposed_usage={} if proposed_gpus is None else {"gpus:ml": proposed_gpus})
    scopes = frozenset({Scope.NODE}) if agent else frozenset(Scope)

    def decide(bundle: Bundle, now: datetime) -> Decision:
        return evaluate(
            bundle, proposal, now, history=HISTORY, fleet=fleet, scopes=scopes, safe_mode=safe_mode
        )

    now = T0 + timedelta(minutes=minutes)
    before = len(HISTORY)
    first, again = decide(BUNDLE, now), decide(BUNDLE, now)
    cold = decide(load_bundle(BUNDLE.source), now)  # empty memos
    same_instant = decide(BUNDLE, now.astimezone(ZoneInfo("Asia/Tokyo")))
    assert first == again == cold == same_instant
    assert explain(first) == explain(cold)
    assert len(HISTORY) == before  # evaluation never records


@MODEST
@given(
    events=st.lists(st.tuples(st.sampled_from("abc"), st.integers(-50, 50)), max_size=80),
    spans=st.lists(
        st.tuples(st.sampled_from("abcd"), st.integers(-60, 60), st.integers(-60, 60)), max_size=20
    ),
    prune_at=st.integers(-60, 60),
)
def test_log_counts_like_brute_force(
    events: list[tuple[str, int]], spans: list[tuple[str, int, int]], prune_at: int
) -> None:
    def at(us: int) -> datetime:
        return T0 + timedelta(microseconds=us)

    log = SlidingWindowLog()
    for key, us in events:
        log.record(key, at(us))
    assert SlidingWindowLog.from_lines(log.to_lines()) == log
    for key, since, until in spans:
        expected = sum(1 for k, us in events if k == key and since < us <= until)
        assert log.count(key, at(since), at(until)) == expected
    assert log.prune(at(prune_at)) == sum(1 for _, us in events if us < prune_at)
    assert len(log) == sum(1 for _, us in events if us >= prune_at)


@functools.cache
def _daily(zone: str, start_minute: int, duration_minutes: int) -> Bundle:
    start = f"{start_minute // 60:02d}:{start_minute % 60:02d}"
    window = (
        f"{{rrule: FREQ=DAILY, start: '{start}', duration: {duration_minutes}m,"
        f" timezone: {zone}, dtstart: '2025-06-01'}}"
    )
    return load_bundle(
        f"{HEAD}rules:\n  - {{id: f, kind: freeze, windows: [{{recurring: {window}}}]}}\n".encode()
    )


@MODEST
@given(
    zone=st.sampled_from(["UTC", "Asia/Kolkata", "Asia/Kathmandu"]),  # no DST since 2026
    start_minute=st.integers(0, 24 * 60 - 1),
    duration_minutes=st.integers(1, 24 * 60 - 1),
    instant_s=st.integers(0, 2 * 366 * 24 * 3600),  # through two new years
)
def test_daily_windows_match_wall_clock_arithmetic(
    zone: str, start_minute: int, duration_minutes: int, instant_s: int
) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC) - timedelta(days=180) + timedelta(seconds=instant_s)
    local = now.astimezone(ZoneInfo(zone))
    minute_of_day = local.hour * 60 + local.minute + local.second / 60
    expected = (minute_of_day - start_minute) % (24 * 60) < duration_minutes
    proposal = Proposal("agent.ping", "n", {}, {})
    decision = evaluate(
        _daily(zone, start_minute, duration_minutes), proposal, now, history=HISTORY
    )
    assert (decision.results[1].reason == "FROZEN") == expected
