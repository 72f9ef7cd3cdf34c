"""Policy decision latency and rate-limit memory, against raw ceilings in the same run.

A 100-rule bundle in the shape a real fleet would have (freeze windows with RRULEs in
five zones and a holiday calendar, rate limits of every `per`, power bounds, approvals,
quotas, cost ceilings, SLO guards, blast radius; each rule scoped by action glob and
most by label selector, so a proposal meets a few of them) is evaluated for a stream of
proposals (six actions, 1,000 nodes, instants spread over a week, so windows open and
close) against a SlidingWindowLog already holding 10^5 events under the bundle's real
rate keys. Latency per `evaluate` call as the hub runs it (both scopes) and as an agent
does (node scope). Raw ceilings: one `SlidingWindowLog.count` (two bisects) on the same
log, and one dict lookup. Memory: tracemalloc's count for a SlidingWindowLog holding
10^6 events, against 8 bytes an event (int64) and a plain dict of lists of datetimes.

    python bench/policy_decision.py [--evaluations 20000] [--history 100000] [--write]
"""

from __future__ import annotations

import argparse
import gc
import random
import re
import statistics
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml
from report import RESULTS, machine, report

import policy
from policy import FleetContext, Proposal, Scope, SlidingWindowLog
from sentinel.actions import ParamValue

START = datetime(2026, 11, 23, tzinfo=UTC)  # a Monday; the stream covers one week
ZONES = ("Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "Asia/Tokyo")
ACTIONS = {  # action: weight in the stream
    "k8s.deployment.scale": 30,
    "node.systemd.restart": 20,
    "node.gpu.set_power_limit": 20,
    "agent.ping": 10,
    "k8s.node.cordon": 10,
    "k8s.pod.evict": 10,
}
WINDOWS: list[dict[str, Any]] = [
    {"recurring": {"rrule": "FREQ=WEEKLY;BYDAY=SA", "start": "00:00", "duration": "48h"}},
    {"recurring": {"rrule": "FREQ=DAILY", "start": "22:00", "duration": "8h"}},
    {"recurring": {"rrule": "FREQ=MONTHLY;BYDAY=-1FR", "start": "18:00", "duration": "72h"}},
    {"holidays": {"calendar": "public"}},
]
FREEZE_ON = ["k8s.deployment.*", "k8s.node.*", "node.systemd.restart", "k8s.pod.*"]
RATE_ON = ["node.systemd.restart", "k8s.*", "k8s.deployment.scale", "node.*"]
PER = ["node", "node_action", "target", "fleet"]


def _rule(rule_id: str, kind: str, actions: str, **fields: Any) -> dict[str, Any]:
    return {"id": rule_id, "kind": kind, "actions": [actions], **fields}


def bundle_source() -> bytes:
    rules = []
    for i in range(20):
        (name, window), *_ = WINDOWS[i % 4].items()
        windows = [{name: window | {"timezone": ZONES[i % 5]}}]
        zone = f"zone=z{i % 5}"
        rules.append(
            _rule(f"freeze-{i}", "freeze", FREEZE_ON[i % 4], selector=zone, windows=windows)
        )
    for i in range(30):
        limits = {"limit": 5 + i, "window": ["10m", "1h", "24h"][i % 3], "per": PER[i % 4]}
        tier = f"tier={['prod', 'dev'][i % 2]}"
        rules.append(_rule(f"rate-{i}", "rate_limit", RATE_ON[i % 4], selector=tier, **limits))
    for i in range(15):
        where = f"gpu=h{100 * (1 + i % 2)},zone=z{i % 5}"
        bounds = {"param": "watts", "min": 100 + i, "max": 700 - i, "selector": where}
        rules.append(_rule(f"power-{i}", "local_bounds", "node.gpu.set_power_limit", **bounds))
    for i in range(10):
        action, where = ["k8s.pod.evict", "k8s.node.cordon"][i % 2], f"zone=z{i % 5},tier=prod"
        rules.append(_rule(f"approve-{i}", "require_approval", action, selector=where))
    for i in range(8):
        rules.append(_rule(f"quota-{i}", "quota", "k8s.deployment.*", key=f"gpus:team{i}", max=64))
    prices = {"H200": 4.5, "H100": 3.2}
    for i in range(5):
        cost = {"price_per_gpu_hour": prices, "ceiling_per_hour": 5000, "selector": f"zone=z{i}"}
        rules.append(_rule(f"cost-{i}", "cost_ceiling", "k8s.deployment.scale", **cost))
    for i in range(7):
        slo = {"series": f"p95_ms_{i}", "max": 250, "when": "scale_down"}
        rules.append(_rule(f"slo-{i}", "slo_guard", "k8s.deployment.scale", **slo))
    for i in range(5):
        radius = {"max_nodes": 50, "max_percent": 10}
        rules.append(_rule(f"radius-{i}", "blast_radius", "k8s.node.*", **radius))
    document = {
        "version": 1,
        "expires_at": "2100-01-01T00:00:00Z",
        "allow": {"actions": ["*"], "shadow": True},
        "calendars": {"public": ["2026-11-26", "2026-12-25", "2026-12-26", "2027-01-01"]},
        "series": {f"p95_ms_{i}": {"promql": f"p95_ms_{i}"} for i in range(7)},
        "rules": rules,
    }
    return yaml.safe_dump(document, sort_keys=False).encode()


def proposals(rng: random.Random, count: int) -> list[tuple[Proposal, datetime]]:
    stream = []
    for action in rng.choices(list(ACTIONS), list(ACTIONS.values()), k=count):
        node = rng.randrange(1000)
        tier, gpu = ("prod", "dev")[node % 2], ("h100", "h200")[node % 3 % 2]
        labels = {"zone": f"z{node % 5}", "tier": tier, "gpu": gpu}
        params: dict[str, ParamValue] = {}
        target = ""
        if action == "k8s.deployment.scale":
            params = {"namespace": "ml", "name": f"w{node % 40}", "replicas": rng.randrange(20)}
            target = f"deployment/ml/w{node % 40}"
        elif action == "node.gpu.set_power_limit":
            params = {"gpu": rng.randrange(8), "watts": rng.uniform(50, 800)}
        proposal = Proposal(action, f"node-{node:04d}", labels, params, target=target)
        stream.append((proposal, START + timedelta(seconds=rng.randrange(7 * 24 * 3600))))
    return stream


def busy_log(bundle: policy.Bundle, rng: random.Random, events: int) -> SlidingWindowLog:
    log, recorded = SlidingWindowLog(), 0
    while recorded < events:
        proposal, at = proposals(rng, 1)[0]
        for key in policy.rate_keys(bundle, proposal)[: events - recorded]:
            log.record(key, at - timedelta(hours=rng.random() * 24))
            recorded += 1
    return log


def latencies_us(
    call: Callable[[Proposal, datetime], object], stream: list[tuple[Proposal, datetime]]
) -> list[float]:
    gc.collect()
    costs = []
    for proposal, now in stream:
        begin = time.perf_counter_ns()
        call(proposal, now)
        costs.append((time.perf_counter_ns() - begin) / 1000)
    return costs


def per_call_us(call: Callable[[], object], calls: int = 200_000) -> float:
    gc.collect()
    begin = time.perf_counter_ns()
    for _ in range(calls):
        call()
    return (time.perf_counter_ns() - begin) / 1000 / calls


def traced_bytes(build: Callable[[], object]) -> int:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = build()
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del kept
    return used


def memory_per_event(events: int, keys: int) -> tuple[float, float]:
    """Bytes an event: the log (its keys included), and a dict of lists of datetimes."""
    times = [START + timedelta(microseconds=i * 997) for i in range(events // keys)]
    names = [f"rate-{k % 30}|node_action|node-{k:06d}|node.systemd.restart" for k in range(keys)]

    def build_log() -> SlidingWindowLog:
        log = SlidingWindowLog()
        for name in names:
            key = name[:-1] + name[-1]  # a fresh string, owned by the log
            for at in times:
                log.record(key, at)
        return log

    def build_naive() -> dict[str, list[datetime]]:
        offset = timedelta(microseconds=1)
        return {name[:-1] + name[-1]: [at + offset for at in times] for name in names}

    return traced_bytes(build_log) / events, traced_bytes(build_naive) / events


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[round(q * 1000) - 1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--evaluations", type=int, default=20_000)
    parser.add_argument("--history", type=int, default=100_000, help="events in the log")
    parser.add_argument("--write", action="store_true", help="append the section to RESULTS.md")
    args = parser.parse_args()
    rng = random.Random(1)
    source = bundle_source()
    begin = time.perf_counter()
    bundle = policy.load_bundle(source)
    load_ms = (time.perf_counter() - begin) * 1000
    log = busy_log(bundle, rng, args.history)
    stream = proposals(rng, args.evaluations)
    usage = {f"gpus:team{i}": 32.0 for i in range(8)}
    fleet = FleetContext(fleet_size=1000, selected_nodes=1, proposed_usage=usage)

    def as_hub(proposal: Proposal, now: datetime) -> policy.Decision:
        return policy.evaluate(bundle, proposal, now, history=log, fleet=fleet)

    def as_agent(proposal: Proposal, now: datetime) -> policy.Decision:
        node_only = frozenset({Scope.NODE})
        return policy.evaluate(bundle, proposal, now, history=log, scopes=node_only)

    warm_up_ms = sum(latencies_us(as_hub, stream[:2000])) / 1000  # fills the RRULE memos
    hub, agent = latencies_us(as_hub, stream), latencies_us(as_agent, stream)
    decisions = [as_hub(proposal, now) for proposal, now in stream]
    key = max(log.keys(), key=lambda k: log.count(k, START - timedelta(days=2), START))
    since, until = START - timedelta(hours=1), START
    count_us = per_call_us(lambda: log.count(key, since, until))
    table = dict.fromkeys(log.keys(), 1)
    dict_us = per_call_us(lambda: table[key])
    memory = [(1_000, *memory_per_event(1_000_000, 1_000))]
    memory.append((100_000, *memory_per_event(1_000_000, 100_000)))

    met = statistics.mean(len(d.results) - 1 for d in decisions)
    allowed = sum(d.verdict is policy.Verdict.ALLOW for d in decisions) / len(decisions)
    lines = [
        "",
        f"### Policy decision ({datetime.now(UTC):%Y-%m-%d}, {machine()})",
        "",
        f"`python bench/policy_decision.py --evaluations {args.evaluations} --history "
        f"{args.history}`: {len(bundle.rules)} rules (20 freeze windows with RRULEs in 5 zones "
        "and a holiday calendar, 30 rate limits, 15 power bounds, 10 approvals, 25 fleet rules, "
        "all scoped by action glob, most by selector); proposals for 6 actions on 1,000 nodes at "
        f"instants spread over a week (each met {met:.1f} rules on average; {allowed:.0%} were "
        f"allowed); a SlidingWindowLog holding {len(log):,} events under {len(log.keys()):,} "
        "real rate keys. Latency: perf_counter_ns around each `evaluate` call, after 2,000 "
        f"warm-up calls (which took {warm_up_ms:.0f} ms in all: each window computes a year of "
        f"occurrences once, then memoises them); bundle load {load_ms:.0f} ms. Ceilings: one "
        "`SlidingWindowLog.count` (two bisects) and one dict lookup, means of 200,000 calls.",
        "",
        "| evaluation | p50 (µs) | p99 (µs) | mean (µs) | count (µs) | dict get (µs) "
        "| p50 / count |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, costs in (("hub (node + fleet rules)", hub), ("agent (node rules)", agent)):
        p50, p99, mean = percentile(costs, 0.5), percentile(costs, 0.99), statistics.mean(costs)
        lines.append(
            f"| {name} | {p50:.1f} | {p99:.1f} | {mean:.1f} | {count_us:.2f} | {dict_us:.3f} "
            f"| {p50 / count_us:.0f}x |"
        )
    lines += [
        "",
        "SlidingWindowLog memory, 10^6 recorded actions (tracemalloc, key strings included); "
        "ceiling: 8 bytes an event (one int64); naive: a dict of lists of aware datetimes.",
        "",
        "| keys | events per key | bytes / event | / ceiling | naive bytes / event |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for keys, per_event, naive in memory:
        per_key = 1_000_000 // keys
        lines.append(
            f"| {keys:,} | {per_key:,} | {per_event:.1f} | {per_event / 8:.2f}x | {naive:.1f} |"
        )
    if args.write:  # replace an earlier run's section, if any, then append
        previous = r"\n### Policy decision .*?(?=\n### |\Z)"
        RESULTS.write_text(re.sub(previous, "", RESULTS.read_text(), flags=re.S))
    report(lines, write=args.write)


if __name__ == "__main__":
    main()
