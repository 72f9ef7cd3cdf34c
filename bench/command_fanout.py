"""Command fan-out: one signed `agent.ping` to N agents by selector, against raw NATS.

A real `sentinel hub` (embedded nats-server, JetStream fsyncs every write) runs as a
subprocess. N simulated agents run in this process, each registered the real way: its own
node certificate and mTLS Connect stream, a hello labelled `role=bench`, the keyset read
from the stream into its TrustStore, heartbeats. Each runs the real `CommandRunner` (its
own NATS connection and consumer, Verifier, AgentClock, CommandJournal, ping executor,
result publish, ack) on its own data directory. A round: an operator issues `agent.ping`
to `role=bench`; the clock runs from just before IssueCommand until WatchCommand has shown
every node EXECUTED. Baseline, same N, same nats-server, rounds interleaved: N
subscribers (one connection each, like the agents) that answer at once, and one client
sending the N requests concurrently; the clock stops at the last reply. One warm-up round
of each is not counted; before each timed phase, 1 s of quiet and a gc.collect().

    python bench/command_fanout.py [--nodes 100,1000] [--rounds 5] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import grpc
import psutil
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from prometheus_client import CollectorRegistry
from report import RESULTS, machine, report

import certs
from edge_agent.actions.base import ActionContext, ActionSettings
from edge_agent.app import CLOCK_FILE
from edge_agent.commands import CommandMetrics, CommandRunner
from edge_agent.enforcement import Enforcement
from edge_agent.journal import CommandJournal
from edge_agent.node_labels import LABELS_FILE, NodeLabels
from edge_agent.policy_cache import PolicyCache
from edge_agent.rate_history import RateHistory
from edge_agent.trust import AgentClock, TrustStore
from edge_agent.verifier import Verifier
from sentinel import nats_tls, subjects
from sentinel.durations import from_proto_duration, timestamp_now
from sentinel.tasks import cancel_and_wait
from sentinel.tls import TlsFiles, secure_aio_channel
from sentinel.v1 import agent_pb2, agent_pb2_grpc, command_pb2, command_pb2_grpc

BIN = Path(sys.executable).parent
LABELS = {"role": "bench"}
SELECTOR = "role=bench"
STARTING = 32  # agents registering at once
SETTLE_S = 1.0
S = command_pb2
T = TypeVar("T")


@dataclass
class SimAgent:
    channel: grpc.aio.Channel
    call: grpc.aio.StreamStreamCall
    runner: CommandRunner
    tasks: list[asyncio.Task[None]]

    async def stop(self) -> None:
        await cancel_and_wait(*self.tasks)
        self.runner.close()
        self.call.cancel()
        await self.channel.close()


async def heartbeats(call: grpc.aio.StreamStreamCall, every_s: float) -> None:
    await asyncio.sleep(random.uniform(0, every_s))  # real agents are not in step
    while True:
        await call.write(
            agent_pb2.ConnectRequest(heartbeat=agent_pb2.Heartbeat(sent_at=timestamp_now()))
        )
        await asyncio.sleep(every_s)


def command_runner(
    node: str,
    home: Path,
    root_key: Path,
    reply: agent_pb2.HelloReply,
    keyset: bytes,
    *,
    tls: TlsFiles,
) -> CommandRunner:
    """The agent's command path as `edge_agent.app` builds it, in its own data directory."""
    home.mkdir(parents=True)
    trust = TrustStore.open(home, root_key)
    trust.hub_version = reply.keyset_version  # as HubLink does with the hello reply
    trust.offer(keyset, datetime.now(UTC))
    clock = AgentClock(home / CLOCK_FILE, system=lambda: datetime.now(UTC))
    return CommandRunner(
        node,
        verifier=Verifier(node, trust, clock),
        trust=trust,
        journal=CommandJournal.open(home, clock.now().timestamp()),
        # The built-in default policy (it allows agent.ping), as an agent holding no bundle.
        enforcement=Enforcement(
            PolicyCache.open(home, trust, clock.now()), RateHistory.open(home, clock.now()), clock
        ),
        context=ActionContext(node, ActionSettings(), NodeLabels(home / LABELS_FILE, LABELS)),
        metrics=CommandMetrics(CollectorRegistry()),
        nats_url=lambda: reply.nats_url,
        tls=lambda: tls,  # NATS knows the agent by its node certificate, as the real one
    )


async def start_agent(address: str, layout: certs.CertLayout, node: str, home: Path) -> SimAgent:
    tls = TlsFiles.load(layout.ca_cert, layout.node_cert(node), layout.node_key(node))
    channel = secure_aio_channel(address, tls)
    call = agent_pb2_grpc.AgentServiceStub(channel).Connect()
    hello = agent_pb2.AgentHello(node_id=node, boot_id="bench", labels=LABELS)
    await call.write(agent_pb2.ConnectRequest(hello=hello))
    reply = (await call.read()).hello_reply
    keyset = (await call.read()).keyset.keyset  # sent at once to an agent holding none
    runner = command_runner(node, home, layout.root_pub, reply, keyset.SerializeToString(), tls=tls)
    every_s = from_proto_duration(reply.heartbeat_interval).total_seconds()
    tasks = [asyncio.create_task(runner.run()), asyncio.create_task(heartbeats(call, every_s))]
    agent = SimAgent(channel, call, runner, tasks)
    try:
        await asyncio.wait_for(runner.consuming.wait(), 60)
    except BaseException:
        await agent.stop()
        raise
    return agent


def nats_admin(layout: certs.CertLayout) -> TlsFiles:
    """The raw baseline's clients use `bench.ping.*`, which no node may: they are nats-admin."""
    user = certs.NATS_ADMIN
    return TlsFiles.load(layout.ca_cert, layout.user_cert(user), layout.user_key(user))


async def start_responder(url: str, node: str, admin: TlsFiles) -> NatsClient:
    async def answer(msg: Msg) -> None:
        await msg.respond(b"pong")

    nc = await nats_tls.connect(url, admin)
    await nc.subscribe(f"bench.ping.{node}", cb=answer)
    await nc.flush()
    return nc


async def limited(count: int, start: Callable[[int], Awaitable[T]], into: list[T]) -> None:
    """Start `count` things, STARTING at a time, each into `into` (so all are cleaned up)."""
    slots = asyncio.Semaphore(STARTING)

    async def one(index: int) -> None:
        async with slots:
            into.append(await start(index))

    await asyncio.gather(*(one(i) for i in range(count)))


class Probe:
    """Where a round's time goes: CPU of each process, and when the last envelope and the
    last result crossed NATS (core subscriptions on the stream subjects, same machine)."""

    def __init__(self, hub_pid: int) -> None:
        hub = psutil.Process(hub_pid)
        server = next(c for c in hub.children() if "nats" in c.name())
        self.processes = {"hub": hub, "nats": server, "bench": psutil.Process()}
        self.last: dict[tuple[str, str], float] = {}

    def cpu(self) -> dict[str, float]:
        return {name: sum(p.cpu_times()[:2]) for name, p in self.processes.items()}

    def cpu_ms_since(self, before: dict[str, float]) -> dict[str, float]:
        return {name: 1000 * (now - before[name]) for name, now in self.cpu().items()}

    async def watch(self, nc: NatsClient) -> None:
        async def envelope(msg: Msg) -> None:
            command_id = (msg.headers or {}).get("Nats-Msg-Id", "").partition("/")[0]
            self.last["envelope", command_id] = time.perf_counter()

        async def result(msg: Msg) -> None:
            command_id = S.CommandResult.FromString(msg.data).command_id
            self.last["result", command_id] = time.perf_counter()

        await nc.subscribe(subjects.command_subject("*"), cb=envelope)
        await nc.subscribe(subjects.RESULTS_ALL, cb=result)


Round = dict[str, float]  # ms (since the round began, or CPU user+system) or MiB
DONE, REPLIED = "all EXECUTED watched", "all replies"


@dataclass
class Fanout:
    nodes: int
    sentinel: list[Round] = field(default_factory=list)
    raw: list[Round] = field(default_factory=list)
    setup_s: float = 0.0  # N agents registered and consuming


async def sentinel_round(
    stub: command_pb2_grpc.CommandServiceStub, nodes: int, probe: Probe
) -> Round:
    request = S.IssueCommandRequest(
        target=S.CommandTarget(label_selector=SELECTOR), action="agent.ping"
    )
    cpu0, started = probe.cpu(), time.perf_counter()
    command = (await stub.IssueCommand(request, timeout=300)).command
    hub_issuing, issued = probe.cpu_ms_since(cpu0)["hub"], time.perf_counter()
    executed: set[str] = set()
    received = 0
    watch = stub.WatchCommand(S.WatchCommandRequest(command_id=command.command_id), timeout=600)
    async for update in watch:
        received += update.ByteSize()
        if update.status.state == S.COMMAND_STATE_EXECUTED:
            executed.add(update.status.node_id)
        if len(executed) == nodes:
            break
    done = time.perf_counter()
    watch.cancel()
    if len(executed) != nodes:
        raise RuntimeError(f"only {len(executed)} of {nodes} nodes executed the ping")
    cpu = probe.cpu_ms_since(cpu0)
    last = {k: probe.last.pop((k, command.command_id)) for k in ("envelope", "result")}
    return {
        "IssueCommand returned": 1000 * (issued - started),
        "last envelope on NATS": 1000 * (last["envelope"] - started),
        "last result on NATS": 1000 * (last["result"] - started),
        DONE: 1000 * (done - started),
        "hub CPU to IssueCommand's return": hub_issuing,
        "hub CPU": cpu["hub"],
        "nats-server CPU": cpu["nats"],
        "agents' process CPU": cpu["bench"],
        "WatchCommand MiB": received / 2**20,
    }


async def raw_round(nc: NatsClient, names: list[str], probe: Probe) -> Round:
    cpu0, started = probe.cpu(), time.perf_counter()
    replies = await asyncio.gather(
        *(nc.request(f"bench.ping.{name}", b"ping", timeout=120) for name in names)
    )
    elapsed = time.perf_counter() - started
    assert all(reply.data == b"pong" for reply in replies)
    cpu = probe.cpu_ms_since(cpu0)
    return {
        REPLIED: 1000 * elapsed,
        "raw: nats-server CPU": cpu["nats"],
        "raw: bench CPU": cpu["bench"],
    }


async def settle() -> None:
    """Before each timed phase: the last one's stragglers finish, garbage is collected."""
    gc.collect()
    await asyncio.sleep(SETTLE_S)


async def start_hub(pki: Path, data: Path) -> tuple[asyncio.subprocess.Process, str, str]:
    log = data.parent / f"{data.name}.log"
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            *(str(BIN / "sentinel"), "hub", "--certs", str(pki), "--listen", "127.0.0.1:0"),
            *("--data-dir", str(data), "--metrics", ""),
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
    assert process.stdout is not None
    words = (await process.stdout.readline()).decode().split()
    if len(words) < 7:  # "sentinel hub listening on ADDR (NATS URL)"
        raise RuntimeError(f"hub did not start: {log.read_text()[-2000:]}")
    return process, words[4], words[6].rstrip(")")


async def measure(nodes: int, rounds: int, pki: Path, work: Path) -> Fanout:
    layout = certs.CertLayout(pki)
    names = [f"sim-{i:04d}" for i in range(1, nodes + 1)]
    result = Fanout(nodes)
    async with contextlib.AsyncExitStack() as stack:
        hub, address, url = await start_hub(pki, work / f"hub-{nodes}")
        stack.push_async_callback(hub.wait)
        stack.callback(hub.terminate)
        probe = Probe(hub.pid)
        operator = TlsFiles.load(
            layout.ca_cert, layout.user_cert("operator"), layout.user_key("operator")
        )
        channel = await stack.enter_async_context(secure_aio_channel(address, operator))
        stub = command_pb2_grpc.CommandServiceStub(channel)
        started = time.perf_counter()
        agents: list[SimAgent] = []
        stack.push_async_callback(lambda: asyncio.gather(*(a.stop() for a in agents)))
        homes = work / f"agents-{nodes}"
        await limited(
            nodes, lambda i: start_agent(address, layout, names[i], homes / names[i]), agents
        )
        result.setup_s = time.perf_counter() - started
        responders: list[NatsClient] = []
        stack.push_async_callback(lambda: asyncio.gather(*(nc.close() for nc in responders)))
        admin = nats_admin(layout)
        await limited(nodes, lambda i: start_responder(url, names[i], admin), responders)
        requester = await nats_tls.connect(url, admin)
        stack.push_async_callback(requester.close)
        await probe.watch(requester)
        for index in range(rounds + 1):  # round 0 warms up
            await settle()
            sentinel = await sentinel_round(stub, nodes, probe)
            await settle()
            raw = await raw_round(requester, names, probe)
            if index:
                result.sentinel.append(sentinel)
                result.raw.append(raw)
            print(f"N={nodes} round {index}: {sentinel[DONE]:.0f} / {raw[REPLIED]:.1f} ms")
    return result


def med(rounds: list[Round], key: str) -> float:
    return statistics.median(r[key] for r in rounds)


def spread(rounds: list[Round], key: str, digits: int) -> str:
    low, mid, high = min(r[key] for r in rounds), med(rounds, key), max(r[key] for r in rounds)
    return f"{mid:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def table(rows: list[list[str]]) -> list[str]:
    rows.insert(1, ["---:"] * len(rows[0]))
    return ["| " + " | ".join(row) + " |" for row in rows]


def section(results: list[Fanout], args: argparse.Namespace) -> list[str]:
    main = [["agents", "sentinel (ms)", "raw NATS (ms)", "ratio", "µs/node", "raw µs/node"]]
    keys = [*results[0].sentinel[0], *list(results[0].raw[0])[1:]]
    split = [["agents", *keys, "agents registered in (s)"]]
    for f in results:
        s, w = med(f.sentinel, DONE), med(f.raw, REPLIED)
        main.append([str(f.nodes), spread(f.sentinel, DONE, 0), spread(f.raw, REPLIED, 1)])
        main[-1] += [f"{s / w:.0f}x", f"{1000 * s / f.nodes:.0f}", f"{1000 * w / f.nodes:.0f}"]
        cells = [med(f.sentinel if k in f.sentinel[0] else f.raw, k) for k in keys]
        cells_text = [
            f"{c:.1f}" if "MiB" in k else f"{c:.0f}" for k, c in zip(keys, cells, strict=True)
        ]
        split.append([str(f.nodes), *cells_text, f"{f.setup_s:.1f}"])
    method = (__doc__ or "").split("\n\n")[1].replace("\n", " ")
    return [
        f"### Command fan-out ({datetime.now(UTC):%Y-%m-%d}, {machine()})",
        "",
        f"`python bench/command_fanout.py --nodes {args.nodes} --rounds {args.rounds}`: "
        f"{method} Medians (min-max) of {args.rounds} rounds; ratio = sentinel / raw.",
        "",
        *table(main),
        "",
        "Where the time goes (medians; ms since IssueCommand was called; CPU ms = "
        "user+system over the round, by process):",
        "",
        *table(split),
        "",
    ]


def replace_section(lines: list[str]) -> None:
    """Drop an earlier Command fan-out section from RESULTS.md, then append this one."""
    text = re.sub(r"\n### Command fan-out .*?(?=\n### |\Z)", "", RESULTS.read_text(), flags=re.S)
    RESULTS.write_text(text.rstrip("\n") + "\n\n")
    report(lines, write=True)


async def run(sizes: list[int], rounds: int) -> list[Fanout]:
    with tempfile.TemporaryDirectory(prefix="fanout-") as tmp:
        work = Path(tmp)
        certs.init_ca(work / "pki")
        certs.issue_user_certificate(work / "pki", "operator", "operator")
        for index in range(1, max(sizes) + 1):
            certs.issue_node_certificate(work / "pki", f"sim-{index:04d}")
        return [await measure(n, rounds, work / "pki", work) for n in sizes]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", default="100,1000", help="comma-separated agent counts")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="replace the section in RESULTS.md")
    args = parser.parse_args()
    results = asyncio.run(run([int(n) for n in args.nodes.split(",")], args.rounds))
    lines = section(results, args)
    if args.write:
        replace_section(lines)
    else:
        report(lines, write=False)


if __name__ == "__main__":
    main()
