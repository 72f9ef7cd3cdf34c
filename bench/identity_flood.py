"""Identity flood: other agents' ack latency while one identity floods the hub
(THREATS 37, Figures 12: under a single-peer flood, other agents' p99 <= 2x baseline).

A real hub (embedded nats-server, JetStream fsyncing every write) runs in its own process
on a fresh CA. N agent streams (real mTLS, one node certificate each) send one realistic
batch (host + 1 GPU from the H200 capture) every `1/rate` seconds each, open loop, for S
seconds per phase; the ack latency of every batch is kept. Phases:

1. baseline: no attack (after a 2 s warm-up).
2. viewer storm: one viewer certificate makes 5,000 WatchTelemetry attempts, 16 at a time
   on each of enough connections to have them all open at once (HTTP/2's per-connection
   stream limit is 16), retrying a refusal at once (an attacker ignores RetryInfo).
3. viewer holds: once every attempt was answered, the viewer holds and reads every stream
   it got (each is sent every batch the fleet stores).
4. boot flood: one node certificate, 3 Connect streams at a time, each a hello and then a
   batch of a random boot_id, again and again; afterwards, the high-water keys it minted.

The attacker runs in its own process pinned to a CPU of its own, as if it ran elsewhere;
the hub, its nats-server and the measured agents share the other CPUs in every phase.
Midway through each phase a new agent connects (hello answered, or refused). Phases 1-3
run again against a hub with the budgets off (the old behaviour: only gRPC's global limit
of 4,096 calls). Ratio = p99 / the baseline p99 of the same hub. Percentiles are
nearest-rank; CPU is user + system seconds during the phase; hub RSS is the largest of
samples every 0.5 s.

    python bench/identity_flood.py [--nodes 20] [--rate 10] [--seconds 8] [--attempts 5000]
        [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import psutil
from report import machine, report

import certs
from edge_agent.collectors.gpu import GpuCollector
from edge_agent.collectors.host import HostCollector
from edge_agent.nvml.loader import open_gpu_backend
from sentinel import nats_tls, subjects
from sentinel.rpc_errors import reason_of
from sentinel.tls import CLIENT_CHANNEL_OPTIONS, TlsFiles, channel_credentials, secure_aio_channel
from sentinel.v1 import agent_pb2, agent_pb2_grpc, fleet_pb2, fleet_pb2_grpc, telemetry_pb2

VIEWER = "flood-viewer"
FLOOD_NODE = "flood-node"
LATE_NODE = "late-agent"
STREAMS_PER_CONNECTION = 16
BOOT_FLOOD_STREAMS = 3
ACK_GRACE_S = 5.0
ATTACK_REPORT_TIMEOUT_S = 30.0
# The attacker gets a CPU of its own, as if it ran elsewhere; hub, nats-server and the
# measured agents share the others (the same in every phase, baselines included).
ATTACKER_CPUS = {(os.cpu_count() or 1) - 1}
HUB_CPUS = set(range(max(1, (os.cpu_count() or 1) - 1)))
LATE_AGENT_TIMEOUT_S = 10.0


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def own_channel(address: str, tls: TlsFiles) -> grpc.aio.Channel:
    """A channel on its own TCP connection (no subchannel shared with other channels)."""
    return grpc.aio.secure_channel(
        address,
        channel_credentials(tls),
        options=[*CLIENT_CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1)],
    )


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank; NaN for no values (no batch was acknowledged)."""
    if not sorted_values:
        return math.nan
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


# --- the hub, in its own process --------------------------------------------------------


async def serve_hub(certs_dir: Path, data_dir: Path, budgets_off: bool) -> None:
    from hub.app import Hub
    from hub.settings import HubSettings, ServerLimits

    unlimited = 1 << 20
    limits = (
        ServerLimits(
            node_streams_per_identity=unlimited,
            user_streams_per_identity=unlimited,
            unary_per_identity=unlimited,
            user_calls_total=unlimited,
            max_concurrent_rpcs=4096,
        )
        if budgets_off
        else ServerLimits()
    )
    settings = HubSettings(
        certs_dir=certs_dir,
        listen="127.0.0.1:0",
        data_dir=data_dir,
        metrics_listen="127.0.0.1:0",
        hub_id="bench",
        limits=limits,
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    hub = await Hub.start(settings)
    print(f"hub {hub.address} {hub.nats_url} {hub.metrics_url}", flush=True)
    await stop.wait()
    await hub.stop()


@dataclass
class HubProcess:
    process: asyncio.subprocess.Process
    address: str
    nats_url: str
    metrics_url: str

    @classmethod
    async def start(cls, certs_dir: Path, data_dir: Path, budgets_off: bool) -> HubProcess:
        argv = [sys.executable, __file__, "serve-hub", str(certs_dir), str(data_dir)]
        process = await asyncio.create_subprocess_exec(
            *argv, *(["--budgets-off"] if budgets_off else []), stdout=asyncio.subprocess.PIPE
        )
        assert process.stdout is not None
        _, address, nats_url, metrics_url = (await process.stdout.readline()).decode().split()
        return cls(process, address, nats_url, metrics_url)

    async def stop(self) -> None:
        self.process.terminate()
        await self.process.wait()


# --- the attacks, in their own process ---------------------------------------------------


async def viewer_flood(address: str, certs_dir: Path, attempts: int) -> None:
    """Make `attempts` WatchTelemetry attempts, enough connections to have them all open
    at once, a refusal retried at once; print one JSON line once every attempt was
    answered (refused, or held and sent a batch), then hold and read what it got until
    stdin closes."""
    layout = certs.CertLayout(certs_dir)
    tls = TlsFiles.load(layout.ca_cert, layout.user_cert(VIEWER), layout.user_key(VIEWER))
    connections = math.ceil(attempts / STREAMS_PER_CONNECTION)
    channels = [own_channel(address, tls) for _ in range(connections)]
    left, unanswered = attempts, attempts
    all_answered = asyncio.Event()
    outcomes: Counter[str] = Counter()

    def answered(outcome: str) -> None:
        nonlocal unanswered
        outcomes[outcome] += 1
        unanswered -= 1
        if not unanswered:
            all_answered.set()

    async def attempt_until_held(stub: fleet_pb2_grpc.FleetServiceStub) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            call = stub.WatchTelemetry(fleet_pb2.WatchTelemetryRequest())
            try:
                await call.read()
            except grpc.aio.AioRpcError as exc:
                answered(f"{exc.code().name} {reason_of(exc) or exc.details()}")
                continue
            answered("held")
            while await call.read() is not grpc.aio.EOF:  # read everything it is sent
                pass

    workers = [
        asyncio.ensure_future(attempt_until_held(fleet_pb2_grpc.FleetServiceStub(channel)))
        for channel in channels
        for _ in range(STREAMS_PER_CONNECTION)
    ]
    await all_answered.wait()
    print(json.dumps({"attempts": attempts, "outcomes": outcomes}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for worker in workers:
        worker.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    for channel in channels:
        await channel.close()


async def boot_flood(address: str, certs_dir: Path) -> None:
    """Flood until stdin closes, then print one JSON line."""
    layout = certs.CertLayout(certs_dir)
    tls = TlsFiles.load(layout.ca_cert, layout.node_cert(FLOOD_NODE), layout.node_key(FLOOD_NODE))
    outcomes: Counter[str] = Counter()
    attempts = 0

    async def flood(channel: grpc.aio.Channel) -> None:
        nonlocal attempts
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        while True:
            attempts += 1
            call = stub.Connect()
            hello = agent_pb2.AgentHello(node_id=FLOOD_NODE, boot_id=uuid.uuid4().hex)
            batch = telemetry_pb2.TelemetryBatch(boot_id=uuid.uuid4().hex, seq=1)
            try:
                await call.write(agent_pb2.ConnectRequest(hello=hello))
                await call.write(agent_pb2.ConnectRequest(batch=batch))
                while (await call.read()).WhichOneof("message") != "ack":
                    pass
                outcomes["acknowledged"] += 1
            except grpc.aio.AioRpcError as exc:
                outcomes[f"{exc.code().name} {reason_of(exc) or exc.details()}"] += 1
            finally:
                call.cancel()

    channel = secure_aio_channel(address, tls)
    workers = [asyncio.ensure_future(flood(channel)) for _ in range(BOOT_FLOOD_STREAMS)]
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for worker in workers:
        worker.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    print(json.dumps({"attempts": attempts, "outcomes": outcomes}), flush=True)
    await channel.close()


async def start_attack(*argv: str) -> asyncio.subprocess.Process:
    """An attack process, on the CPU the hub does not use."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        preexec_fn=lambda: os.sched_setaffinity(0, ATTACKER_CPUS),
    )


async def attack_report(process: asyncio.subprocess.Process) -> dict[str, Any]:
    """The attack's JSON line (None after the timeout: the hub never answered it all)."""
    assert process.stdout is not None
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(ATTACK_REPORT_TIMEOUT_S):
            result: dict[str, Any] = json.loads(await process.stdout.readline())
            return result
    return {"outcomes": {"not all answered": 1}}


async def end_attack(process: asyncio.subprocess.Process) -> None:
    """Close the attack's stdin: it stops (a boot flood prints its line first)."""
    assert process.stdin is not None
    process.stdin.close()


async def reap(process: asyncio.subprocess.Process) -> None:
    try:
        async with asyncio.timeout(ATTACK_REPORT_TIMEOUT_S):
            await process.wait()
    except TimeoutError:
        process.kill()
        await process.wait()


# --- the measured agents ------------------------------------------------------------------


def realistic_sample() -> telemetry_pb2.Sample:
    nvml, _ = open_gpu_backend("builtin:h200", 1)
    gpu = GpuCollector(nvml)
    gpu.start()
    return telemetry_pb2.Sample(host=HostCollector().sample(), gpus=gpu.sample())


@dataclass
class Phase:
    name: str
    acks: list[float] = field(default_factory=list)  # ack latencies, seconds
    stream_errors: Counter[str] = field(default_factory=Counter)
    sent: int = 0
    late_agent: str = ""
    rss_mib: float = 0.0
    hub_cpu_s: float = 0.0
    attacker_cpu_s: float = 0.0
    attack: dict[str, Any] = field(default_factory=dict)

    def latencies_ms(self) -> list[float]:
        return sorted(1000 * latency for latency in self.acks)

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies_ms(), 0.50)

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies_ms(), 0.99)


async def agent_stream(
    address: str,
    tls: TlsFiles,
    node_id: str,
    *,
    boot: str,
    seconds: float,
    rate: float,
    offset: float,
    sample: telemetry_pb2.Sample,
    phase: Phase,
    first_seq: int,
) -> int:
    """Send a batch every 1/rate s for `seconds`, the first after `offset` (a fraction of
    the interval, so the agents are spread); record each ack's latency. Returns the next
    seq."""
    async with secure_aio_channel(address, tls) as channel:
        call = agent_pb2_grpc.AgentServiceStub(channel).Connect()
        await call.write(
            agent_pb2.ConnectRequest(hello=agent_pb2.AgentHello(node_id=node_id, boot_id=boot))
        )
        await call.read()
        sent: dict[int, float] = {}
        count = int(seconds * rate)

        async def receive() -> None:
            acked = 0
            try:
                while acked < count:
                    response = await call.read()
                    if response is grpc.aio.EOF:
                        return
                    if response.WhichOneof("message") != "ack":
                        continue  # the keyset and policy the hub sends a new agent
                    acked += 1
                    phase.acks.append(time.perf_counter() - sent.pop(response.ack.seq))
            except grpc.aio.AioRpcError as exc:  # the hub ended the stream (overloaded)
                phase.stream_errors[exc.code().name] += 1

        receiver = asyncio.ensure_future(receive())
        loop = asyncio.get_running_loop()
        start = loop.time() + offset / rate
        for index in range(count):
            await asyncio.sleep(max(0.0, start + index / rate - loop.time()))  # open loop
            if receiver.done():
                break
            seq = first_seq + index
            sent[seq] = time.perf_counter()
            phase.sent += 1
            batch = telemetry_pb2.TelemetryBatch(boot_id=boot, seq=seq, samples=[sample])
            with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
                await call.write(agent_pb2.ConnectRequest(batch=batch))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(ACK_GRACE_S):
                await receiver
        receiver.cancel()
        call.cancel()
        return first_seq + count


async def late_agent(address: str, layout: certs.CertLayout, delay_s: float) -> str:
    """A new agent connecting in the middle of the phase: how long its hello took, or why
    it was refused."""
    await asyncio.sleep(delay_s)  # the point in the phase, not a wait for a condition
    tls = TlsFiles.load(layout.ca_cert, layout.node_cert(LATE_NODE), layout.node_key(LATE_NODE))
    async with own_channel(address, tls) as channel:
        call = agent_pb2_grpc.AgentServiceStub(channel).Connect()
        started = time.perf_counter()
        try:
            hello = agent_pb2.AgentHello(node_id=LATE_NODE, boot_id="late")
            await call.write(agent_pb2.ConnectRequest(hello=hello))
            async with asyncio.timeout(LATE_AGENT_TIMEOUT_S):
                await call.read()
        except (grpc.aio.AioRpcError, TimeoutError) as exc:
            return f"refused: {exc.code().name if isinstance(exc, grpc.RpcError) else 'timeout'}"
        finally:
            call.cancel()
    return f"ok, {1000 * (time.perf_counter() - started):.0f} ms"


def cpu_seconds(process: psutil.Process) -> float:
    """User and system CPU of `process` and its children (the hub's nats-server)."""
    with process.oneshot():
        own = float(sum(process.cpu_times()[:2]))
    children = process.children(recursive=True)
    return own + float(sum(sum(child.cpu_times()[:2]) for child in children))


async def sample_rss(pid: int, phase: Phase) -> None:
    process = psutil.Process(pid)
    while True:
        phase.rss_mib = max(phase.rss_mib, process.memory_info().rss / 2**20)
        await asyncio.sleep(0.5)  # a sampling interval, not a wait for a condition


class Fleet:
    """The measured agents: one node certificate each, seqs going on across phases."""

    def __init__(self, layout: certs.CertLayout, nodes: int, rate: float, seconds: float):
        self.layout = layout
        self.nodes = [f"bench-{index}" for index in range(nodes)]
        self.rate = rate
        self.seconds = seconds
        self.next_seq = dict.fromkeys(self.nodes, 1)
        self.sample = realistic_sample()

    async def run(
        self,
        hub: HubProcess,
        name: str,
        attacker: asyncio.subprocess.Process | None = None,
        seconds: float | None = None,
    ) -> Phase:
        """One measured phase, while `attacker` (already started) does its work."""
        seconds = seconds or self.seconds
        phase = Phase(name)
        hub_process = psutil.Process(hub.process.pid)
        attacker_process = psutil.Process(attacker.pid) if attacker else None
        hub_cpu = cpu_seconds(hub_process)
        attacker_cpu = cpu_seconds(attacker_process) if attacker_process else 0.0
        rss = asyncio.ensure_future(sample_rss(hub.process.pid, phase))
        late = asyncio.ensure_future(late_agent(hub.address, self.layout, seconds / 2))

        async def one(index: int, node_id: str) -> None:
            tls = TlsFiles.load(
                self.layout.ca_cert, self.layout.node_cert(node_id), self.layout.node_key(node_id)
            )
            self.next_seq[node_id] = await agent_stream(
                hub.address,
                tls,
                node_id,
                boot=f"boot-{hub.process.pid}",
                seconds=seconds,
                rate=self.rate,
                offset=index / len(self.nodes),
                sample=self.sample,
                phase=phase,
                first_seq=self.next_seq[node_id],
            )

        await asyncio.gather(*(one(index, node) for index, node in enumerate(self.nodes)))
        phase.late_agent = await late
        rss.cancel()
        phase.hub_cpu_s = cpu_seconds(hub_process) - hub_cpu
        if attacker_process is not None:
            phase.attacker_cpu_s = cpu_seconds(attacker_process) - attacker_cpu
        return phase


async def flood_node_keys(hub: HubProcess, layout: certs.CertLayout) -> int:
    tls = TlsFiles.load(
        layout.ca_cert, layout.user_cert(certs.NATS_ADMIN), layout.user_key(certs.NATS_ADMIN)
    )
    nc = await nats_tls.connect(hub.nats_url, tls)
    try:
        prefix = f"$KV.{subjects.TELEMETRY_HWM_BUCKET}.{FLOOD_NODE}."
        info = await nc.jetstream().stream_info(
            f"KV_{subjects.TELEMETRY_HWM_BUCKET}", subjects_filter=f"{prefix}>"
        )
        return len(info.state.subjects or {})
    finally:
        await nc.close()


async def measure(args: argparse.Namespace) -> tuple[list[tuple[str, Phase, Phase]], int]:
    """[(hub, baseline, attacked)], and the high-water keys the boot flood minted."""
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        directory = base / "certs"
        certs.init_ca(directory)
        for node_id in (*(f"bench-{i}" for i in range(args.nodes)), FLOOD_NODE, LATE_NODE):
            certs.issue_node_certificate(directory, node_id)
        certs.issue_user_certificate(directory, VIEWER, "viewer")
        layout = certs.CertLayout(directory)
        fleet = Fleet(layout, args.nodes, args.rate, args.seconds)
        rows: list[tuple[str, Phase, Phase]] = []
        keys = 0
        for budgets_off in (False, True):
            hub = await HubProcess.start(directory, base / f"hub-{budgets_off}", budgets_off)
            label = "budgets off (old)" if budgets_off else "budgets on"
            try:
                await fleet.run(hub, "warm-up", seconds=2.0)
                baseline = await fleet.run(hub, "baseline")
                rows += [
                    (label, baseline, phase)
                    for phase in await viewer_phases(fleet, hub, directory, args.attempts)
                ]
                if not budgets_off:
                    rows.append((label, baseline, await boot_phase(fleet, hub, directory)))
                    keys = await flood_node_keys(hub, layout)
            finally:
                await hub.stop()
        return rows, keys


async def viewer_phases(
    fleet: Fleet, hub: HubProcess, directory: Path, attempts: int
) -> list[Phase]:
    """The storm (measured from the first attempt), then the streams the viewer got held
    (measured once every attempt was answered)."""
    attacker = await start_attack("viewer-flood", hub.address, str(directory), str(attempts))
    try:
        storm = await fleet.run(hub, "viewer storm", attacker)
        storm.attack = await attack_report(attacker)
        held = storm.attack["outcomes"].get("held", 0)
        holding = await fleet.run(hub, f"viewer holds {held} streams", attacker)
    finally:
        await end_attack(attacker)
        await reap(attacker)
    return [storm, holding]


async def boot_phase(fleet: Fleet, hub: HubProcess, directory: Path) -> Phase:
    attacker = await start_attack("boot-flood", hub.address, str(directory))
    try:
        phase = await fleet.run(hub, "boot flood", attacker)
    finally:
        await end_attack(attacker)
    phase.attack = await attack_report(attacker)
    await reap(attacker)
    return phase


def row(label: str, phase: Phase, baseline: Phase) -> str:
    ratio = phase.p99_ms / baseline.p99_ms
    return (
        f"| {label} | {phase.name} | {len(phase.acks)} / {phase.sent}{ended(phase)} | "
        f"{shown(phase.p50_ms, '.1f')} | {shown(phase.p99_ms, '.1f')} | "
        f"{shown(ratio, '.2f')}{'' if math.isnan(ratio) else 'x'} | "
        f"{phase.attack.get('attempts', '-')} | {refusals(phase)} | {phase.late_agent} | "
        f"{phase.hub_cpu_s:.1f} | {phase.attacker_cpu_s or 0:.1f} | {phase.rss_mib:.0f} |"
    )


def shown(value: float, spec: str) -> str:
    return "-" if math.isnan(value) else format(value, spec)


def ended(phase: Phase) -> str:
    errors = ", ".join(f"{count} {code}" for code, count in sorted(phase.stream_errors.items()))
    return f" (streams ended: {errors})" if errors else ""


def refusals(phase: Phase) -> str:
    outcomes = phase.attack.get("outcomes", {})
    return "; ".join(f"{name}: {count}" for name, count in sorted(outcomes.items())) or "-"


def main() -> None:
    if sys.argv[1:2] == ["serve-hub"]:
        from cli.runtime import run

        run(serve_hub(Path(sys.argv[2]), Path(sys.argv[3]), "--budgets-off" in sys.argv))
        return
    if sys.argv[1:2] == ["viewer-flood"]:
        address, directory, attempts = sys.argv[2:5]
        asyncio.run(viewer_flood(address, Path(directory), int(attempts)))
        return
    if sys.argv[1:2] == ["boot-flood"]:
        address, directory = sys.argv[2:4]
        asyncio.run(boot_flood(address, Path(directory)))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--rate", type=float, default=10.0, help="batches per second per agent")
    parser.add_argument("--seconds", type=float, default=8.0, help="per phase")
    parser.add_argument("--attempts", type=int, default=5000)
    parser.add_argument("--write", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()
    os.sched_setaffinity(0, HUB_CPUS)  # the hub and its nats-server inherit it
    started = time.perf_counter()
    rows, keys = asyncio.run(measure(args))
    elapsed = time.perf_counter() - started
    lines = [
        f"### Identity flood ({datetime.now(UTC):%Y-%m-%d}, {machine()}, nproc "
        f"{os.cpu_count()}, {cpu_model()})",
        "",
        f"`python bench/identity_flood.py --nodes {args.nodes} --rate {args.rate:g} --seconds "
        f"{args.seconds:g} --attempts {args.attempts}`: a hub in its own process (default "
        "`ServerLimits`; then with the budgets off, only gRPC's global 4,096 calls, as "
        f"before), {args.nodes} mTLS agent streams each sending a realistic batch "
        f"{args.rate:g} times a second, open loop, {args.seconds:g} s a phase. Viewer storm: "
        f"one viewer certificate, {args.attempts} WatchTelemetry attempts, "
        f"{STREAMS_PER_CONNECTION} at a time on each of "
        f"{math.ceil(args.attempts / STREAMS_PER_CONNECTION)} connections, a refusal retried "
        "at once; then the viewer holds (and reads) the streams it got. Boot flood: one node "
        f"certificate, {BOOT_FLOOD_STREAMS} Connect streams at a time, each a hello and a "
        "batch of a random boot_id. The attacker runs in its own process pinned to its own "
        "CPU (as if it ran elsewhere); hub, nats-server and the measured agents share the "
        "other CPUs in every phase. A new agent connects midway through each phase. Whole "
        f"run: {elapsed:.0f} s.",
        "",
        "| hub | phase | acked / sent | ack p50 (ms) | ack p99 (ms) | p99 / baseline | "
        "attack attempts | attack outcomes | new agent midway | hub + NATS CPU (s) | "
        "attacker CPU (s) | hub RSS (MiB) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: |",
    ]
    seen: set[str] = set()
    for label, baseline, phase in rows:
        if label not in seen:
            seen.add(label)
            lines.append(row(label, baseline, baseline))
        lines.append(row(label, phase, baseline))
    lines += [
        "",
        f"High-water keys the boot flood minted for its node: {keys}.",
        "",
    ]
    report(lines, write=args.write)


if __name__ == "__main__":
    main()
