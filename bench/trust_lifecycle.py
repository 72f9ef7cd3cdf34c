"""Trust lifecycle: audit appends, enrollment, revocation and certificate renewal, each
against a raw peer measured in the same run.

A real hub runs in this process (`Hub.start`, embedded nats-server, JetStream fsyncing
every write, the enrollment listener on), on a fresh CA in a temporary directory.

1. Audit: `hub.audit.append` N times, one after another; raw peer: a plain `js.publish`
   of a payload the size of one audit record to a JetStream file stream on the same
   nats-server (as `nats-admin`). The two alternate in blocks of N/4.
2. Enrollment: K tokens through `EnrollmentService/CreateEnrollmentToken` (admin, one
   open channel), then K nodes enrolled with `edge_agent.enroll.enroll` on a thread (CA
   pin check, P-256 key, Enroll, answer checks, files written). Raw peer, alternating:
   a fresh mTLS channel (own subchannel pool: a real handshake each time) and one unary
   `grpc.health.v1.Health/Check`.
3. Revocation: a node's `AgentService/Connect` stream (hello answered), then the clock
   runs from just before `RevokeCertificate` (admin, open channel) until the stream's
   read raises PERMISSION_DENIED / CERT_REVOKED; R nodes, each a different enrolled node.
   The same with the stream held by a second hub on the same NATS (revocation poll 1 s;
   each revocation after a random 0-1 s pause, so it falls anywhere in the poll cycle).
   Raw peer: a unary Health/Check on the admin's open channel.
4. Renewal: a real agent (`Agent.start`) on an enrolled data directory; M times
   `agent.renewer.renew_now()`, the clock stopping when the agent has renewed and its hub
   link is connected on the new certificate (polled every 1 ms). Raw peer: a fresh mTLS
   channel and one Health/Check with the node's certificate.

Percentiles are nearest-rank (p99 of fewer than 100 samples is the maximum).

    python bench/trust_lifecycle.py [--audit 2000] [--enroll 20] [--revocations 10]
        [--renewals 20] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.js import api
from report import machine, report

import certs
from edge_agent.app import Agent
from edge_agent.enroll import Enrolled, enroll
from edge_agent.settings import AgentSettings, LinkSettings
from hub.app import Hub
from hub.settings import HubSettings
from sentinel import nats_tls
from sentinel.durations import to_proto_duration
from sentinel.rpc_errors import reason_of
from sentinel.tls import CLIENT_CHANNEL_OPTIONS, TlsFiles, channel_credentials, secure_aio_channel
from sentinel.v1 import agent_pb2, agent_pb2_grpc, enrollment_pb2, enrollment_pb2_grpc

POLL = timedelta(seconds=1)  # the second hub's revocation poll
WARMUP = 20  # untimed audit appends and raw publishes before the first block
RAW_STREAM, RAW_SUBJECT = "BENCH_RAW", "bench.raw"
WAIT_S = 60.0


@dataclass
class Stats:
    """Latencies in seconds; percentiles nearest-rank."""

    samples: list[float]

    def pct(self, q: float) -> float:
        ordered = sorted(self.samples)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    @property
    def p50_ms(self) -> float:
        return 1000 * self.pct(0.50)

    @property
    def p99_ms(self) -> float:
        return 1000 * self.pct(0.99)


@dataclass
class Results:
    audit: Stats
    audit_rate: float
    raw_publish: Stats
    raw_rate: float
    record_bytes: int
    tokens: Stats
    enroll: Stats
    fresh_check: Stats
    revoke_here: Stats
    revoke_rpc: Stats
    revoke_other: Stats
    warm_check: Stats
    renewal: Stats
    fresh_node_check: Stats


def tls_of(layout: certs.CertLayout, cert: Path, key: Path) -> TlsFiles:
    return TlsFiles.load(layout.ca_cert, cert, key)


def fresh_health_check(address: str, tls: TlsFiles) -> float:
    """Seconds for a new mTLS channel (its own subchannel: a new handshake) and one
    Health/Check. Blocking, like `enroll`: run on a thread."""
    options = [*CLIENT_CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1)]
    started = time.perf_counter()
    with grpc.secure_channel(address, channel_credentials(tls), options=options) as channel:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=WAIT_S)
    return time.perf_counter() - started


async def timed(awaitable: Awaitable[object]) -> float:
    started = time.perf_counter()
    await awaitable
    return time.perf_counter() - started


# --- 1. audit appends against raw JetStream publishes ---------------------------------------


async def audit_vs_raw(
    hub: Hub, layout: certs.CertLayout, count: int
) -> tuple[Stats, float, Stats, float, int]:
    """(append latencies, appends/s, publish latencies, publishes/s, payload bytes)."""
    admin = certs.NATS_ADMIN
    nc = await nats_tls.connect(
        hub.nats_url, tls_of(layout, layout.user_cert(admin), layout.user_key(admin))
    )
    try:
        js = nc.jetstream()
        await js.add_stream(  # the hub's account wants a budget for every stream
            name=RAW_STREAM,
            subjects=[RAW_SUBJECT],
            storage=api.StorageType.FILE,
            max_bytes=256 * 1024 * 1024,
        )
        record = None
        for _ in range(WARMUP):
            record = await hub.audit.append("bench.noop", actor="bench")
        assert record is not None
        payload = b"x" * len(record.line())
        for _ in range(WARMUP):
            await js.publish(RAW_SUBJECT, payload, stream=RAW_STREAM)

        async def append() -> None:
            await hub.audit.append("bench.noop", actor="bench")

        async def publish() -> None:
            await js.publish(RAW_SUBJECT, payload, stream=RAW_STREAM)

        samples: dict[str, list[float]] = {"audit": [], "raw": []}
        spent = {"audit": 0.0, "raw": 0.0}
        blocks = 4
        for block in range(blocks):
            size = count // blocks + (1 if block < count % blocks else 0)
            for name, one in (("audit", append), ("raw", publish)):
                started = time.perf_counter()
                for _ in range(size):
                    samples[name].append(await timed(one()))
                spent[name] += time.perf_counter() - started
    finally:
        await nc.close()
    return (
        Stats(samples["audit"]),
        count / spent["audit"],
        Stats(samples["raw"]),
        count / spent["raw"],
        len(payload),
    )


# --- 2. enrollment against a fresh handshake and one unary call ------------------------------


async def new_tokens(
    stub: enrollment_pb2_grpc.EnrollmentServiceStub,
    health: health_pb2_grpc.HealthStub,
    count: int,
    warm: list[float],
) -> tuple[list[enrollment_pb2.CreateEnrollmentTokenResponse], list[float]]:
    """`count` tokens and the seconds each took; a warm Health/Check before each, into `warm`."""
    tokens, samples = [], []
    request = enrollment_pb2.CreateEnrollmentTokenRequest(ttl=to_proto_duration(timedelta(hours=1)))
    for _ in range(count):
        warm.append(await timed(health.Check(health_pb2.HealthCheckRequest())))
        started = time.perf_counter()
        tokens.append(await stub.CreateEnrollmentToken(request))
        samples.append(time.perf_counter() - started)
    return tokens, samples


async def enroll_node(
    token: enrollment_pb2.CreateEnrollmentTokenResponse, node_id: str, base: Path
) -> tuple[Enrolled, Path, float]:
    data_dir = base / "nodes" / node_id
    started = time.perf_counter()
    enrolled = await asyncio.to_thread(
        enroll, token.enroll_address, token.token, token.ca_hash, node_id, data_dir
    )
    return enrolled, data_dir, time.perf_counter() - started


# --- 3. revocation ---------------------------------------------------------------------------


async def open_stream(
    address: str, tls: TlsFiles, node_id: str
) -> tuple[grpc.aio.Channel, grpc.aio.StreamStreamCall]:
    """A node's Connect stream, past the hello."""
    channel = secure_aio_channel(address, tls)
    call = agent_pb2_grpc.AgentServiceStub(channel).Connect()
    await call.write(
        agent_pb2.ConnectRequest(hello=agent_pb2.AgentHello(node_id=node_id, boot_id="bench"))
    )
    first = await asyncio.wait_for(call.read(), WAIT_S)
    assert first.WhichOneof("message") == "hello_reply", first
    return channel, call


async def ended_by_revocation(call: grpc.aio.StreamStreamCall) -> float:
    """perf_counter() when the stream's read raised PERMISSION_DENIED / CERT_REVOKED."""
    try:
        while True:
            if await call.read() is grpc.aio.EOF:
                raise AssertionError("the stream ended without a status")
    except grpc.aio.AioRpcError as exc:
        at = time.perf_counter()
        if exc.code() != grpc.StatusCode.PERMISSION_DENIED or reason_of(exc) != "CERT_REVOKED":
            raise
        return at


async def revoke_once(
    holder: Hub, admin: enrollment_pb2_grpc.EnrollmentServiceStub, node: Enrolled, settle_s: float
) -> tuple[float, float]:
    """(seconds to the stream's end, seconds for the RevokeCertificate call), both from
    just before the call."""
    layout = certs.CertLayout(node.certs_dir)
    tls = tls_of(layout, layout.node_cert(node.node_id), layout.node_key(node.node_id))
    channel, call = await open_stream(holder.address, tls, node.node_id)
    async with channel:
        ended = asyncio.create_task(ended_by_revocation(call))
        await asyncio.sleep(settle_s)  # the keyset the hub sends a new agent has arrived
        started = time.perf_counter()
        await admin.RevokeCertificate(
            enrollment_pb2.RevokeCertificateRequest(node_id=node.node_id, reason="bench")
        )
        returned = time.perf_counter()
        at = await asyncio.wait_for(ended, WAIT_S)
    return at - started, returned - started


# --- 4. renewal ------------------------------------------------------------------------------


async def until(predicate: Callable[[], bool], poll_s: float = 0.001) -> None:
    """Poll `predicate` (the link's session certificate has no event to wait on)."""
    deadline = time.perf_counter() + WAIT_S
    while not predicate():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"condition not met within {WAIT_S} s")
        await asyncio.sleep(poll_s)


async def renewals(node: Enrolled, data_dir: Path, count: int) -> tuple[Stats, Stats]:
    settings = AgentSettings(
        certs_dir=node.certs_dir,
        data_dir=data_dir,
        link=LinkSettings(hub_address=node.hub_address, backoff_max_s=0.5),
    )
    agent = await Agent.start(settings)
    samples, raw = [], []
    try:
        await until(lambda: agent.link.session_tls is not None)
        for rotation in range(1, count + 1):
            await asyncio.sleep(0.1)  # the previous session has been ended
            raw.append(
                await asyncio.to_thread(fresh_health_check, node.hub_address, agent.credentials.tls)
            )
            started = time.perf_counter()
            agent.renewer.renew_now()
            await until(
                lambda rotation=rotation: (
                    agent.renewer.renewals == rotation
                    and agent.link.session_tls is agent.credentials.tls
                )
            )
            samples.append(time.perf_counter() - started)
    finally:
        await agent.stop()
    return Stats(samples), Stats(raw)


# --- the run ---------------------------------------------------------------------------------


async def measure(args: argparse.Namespace) -> Results:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        certs_dir = base / "certs"
        certs.init_ca(certs_dir)
        layout = certs.CertLayout(certs_dir)
        admin_tls = tls_of(layout, layout.user_cert("admin"), layout.user_key("admin"))
        hub = await Hub.start(
            HubSettings(
                certs_dir=certs_dir,
                listen="127.0.0.1:0",
                data_dir=base / "hub",
                hub_id="bench",
                enroll_listen="127.0.0.1:0",
            )
        )
        try:
            audit, audit_rate, raw, raw_rate, record_bytes = await audit_vs_raw(
                hub, layout, args.audit
            )
            async with secure_aio_channel(hub.address, admin_tls) as channel:
                admin = enrollment_pb2_grpc.EnrollmentServiceStub(channel)
                health = health_pb2_grpc.HealthStub(channel)
                await health.Check(health_pb2.HealthCheckRequest())  # the channel is up
                # Every revocation and the renewing agent need a node of their own.
                needed = max(args.enroll, 2 * args.revocations + 1)
                warm: list[float] = []
                tokens, token_samples = await new_tokens(admin, health, needed, warm)
                nodes: list[tuple[Enrolled, Path]] = []
                enroll_samples, fresh = [], []
                for index, token in enumerate(tokens):
                    enrolled, data_dir, seconds = await enroll_node(token, f"edge-{index}", base)
                    nodes.append((enrolled, data_dir))
                    if index < args.enroll:
                        enroll_samples.append(seconds)
                        fresh.append(
                            await asyncio.to_thread(fresh_health_check, hub.address, admin_tls)
                        )
                pool = iter(nodes)
                here, rpc = [], []
                for _ in range(args.revocations):
                    warm.append(await timed(health.Check(health_pb2.HealthCheckRequest())))
                    to_end, to_return = await revoke_once(hub, admin, next(pool)[0], 0.1)
                    here.append(to_end)
                    rpc.append(to_return)
                second = await Hub.start(
                    HubSettings(
                        certs_dir=certs_dir,
                        listen="127.0.0.1:0",
                        data_dir=base / "second",
                        nats_url=hub.nats_url,
                        hub_id="second",
                        revocation_poll_interval=POLL,
                    )
                )
                try:
                    other = []
                    for _ in range(args.revocations):
                        settle = random.uniform(0.1, 0.1 + POLL.total_seconds())
                        other.append((await revoke_once(second, admin, next(pool)[0], settle))[0])
                finally:
                    await second.stop()
            renewed, fresh_node = await renewals(*next(pool), args.renewals)
        finally:
            await hub.stop()
    return Results(
        audit=audit,
        audit_rate=audit_rate,
        raw_publish=raw,
        raw_rate=raw_rate,
        record_bytes=record_bytes,
        tokens=Stats(token_samples),
        enroll=Stats(enroll_samples),
        fresh_check=Stats(fresh),
        revoke_here=Stats(here),
        revoke_rpc=Stats(rpc),
        revoke_other=Stats(other),
        warm_check=Stats(warm),
        renewal=renewed,
        fresh_node_check=fresh_node,
    )


def row(name: str, stats: Stats, peer: str, raw: Stats | None) -> str:
    mine = f"| {name} | {len(stats.samples)} | {stats.p50_ms:.2f} | {stats.p99_ms:.2f} |"
    if raw is None:
        return f"{mine} {peer} | | | | |"
    return (
        f"{mine} {peer} | {len(raw.samples)} | {raw.p50_ms:.2f} | {raw.p99_ms:.2f} | "
        f"{stats.p50_ms / raw.p50_ms:.1f}x |"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--audit", type=int, default=2000)
    parser.add_argument("--enroll", type=int, default=20)
    parser.add_argument("--revocations", type=int, default=10)
    parser.add_argument("--renewals", type=int, default=20)
    parser.add_argument("--write", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()
    r = asyncio.run(measure(args))
    fresh_peer = "new mTLS channel + Health/Check"
    lines = [
        f"### Trust lifecycle ({datetime.now(UTC):%Y-%m-%d}, {machine()})",
        "",
        f"`python bench/trust_lifecycle.py --audit {args.audit} --enroll {args.enroll} "
        f"--revocations {args.revocations} --renewals {args.renewals}`: a hub in the "
        "benchmark's process (embedded nats-server, JetStream fsyncs every write), fresh CA. "
        f"Audit: `hub.audit.append` one after another against a plain `js.publish` of a "
        f"{r.record_bytes}-byte payload (one record's size) to a file stream on the same "
        "nats-server, alternating in 4 blocks. Enrollment: `edge_agent.enroll.enroll` on a "
        "thread (CA pin check, P-256 key, Enroll, checks, files written) against a new mTLS "
        "channel (its own subchannel) and one `Health/Check`, alternating. Revocation: from "
        "just before `RevokeCertificate` (admin, open channel) until the node's open Connect "
        "stream raises PERMISSION_DENIED/CERT_REVOKED, a different enrolled node each time; "
        "on another hub sharing the NATS, revocation poll "
        f"{POLL.total_seconds():.0f} s, each revocation after a random pause. Renewal: a real "
        "agent, `renewer.renew_now()` until its link is connected on the new certificate "
        "(polled every 1 ms), against a new mTLS channel + Health/Check with the node "
        "certificate. Percentiles nearest-rank (p99 of < 100 samples is the maximum); "
        "ratio = p50 / raw p50.",
        "",
        "| operation | n | p50 (ms) | p99 (ms) | raw peer | n | p50 (ms) | p99 (ms) | ratio |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
        row("audit append", r.audit, "JetStream publish", r.raw_publish),
        row("CreateEnrollmentToken", r.tokens, "Health/Check, open channel", r.warm_check),
        row("enrollment", r.enroll, fresh_peer, r.fresh_check),
        row("revocation, revoking hub", r.revoke_here, "Health/Check, open channel", r.warm_check),
        row(f"revocation, other hub (poll {POLL.total_seconds():.0f} s)", r.revoke_other, "", None),
        row("certificate renewal", r.renewal, fresh_peer, r.fresh_node_check),
        "",
        f"Audit appends: {r.audit_rate:.0f}/s against {r.raw_rate:.0f} raw publishes/s "
        f"({r.audit_rate / r.raw_rate:.2f}). RevokeCertificate itself returned after "
        f"{r.revoke_rpc.p50_ms:.1f} ms (p50; p99 {r.revoke_rpc.p99_ms:.1f}).",
        "",
    ]
    report(lines, write=args.write)


if __name__ == "__main__":
    main()
