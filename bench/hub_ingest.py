"""Hub ingest: acknowledged batches per second and ack latency, against the raw ceiling.

A real `sentinel hub` (embedded NATS) runs as a subprocess. N raw agent streams (real
mTLS, one node certificate each) send realistic batches (one sample, host + 1 GPU from
the H200 capture) with up to W unacknowledged at a time, as the agent does. The
ceilings, in the same run: a raw grpc.aio AgentService over the same mTLS that only
counts and acks (bench/raw_grpc_server.py), and what ingest does without gRPC — a
JetStream publish with its Nats-Msg-Id and a KV put of the high-water mark, N at a time
(the hub handles each stream's batches one after another).

    python bench/hub_ingest.py [--nodes 20] [--batches 200] [--window 8] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from report import machine, report

import certs
from edge_agent.collectors.gpu import GpuCollector
from edge_agent.collectors.host import HostCollector
from edge_agent.nvml.loader import open_gpu_backend
from sentinel import nats_tls, subjects
from sentinel.tls import TlsFiles, secure_aio_channel
from sentinel.v1 import agent_pb2, agent_pb2_grpc, telemetry_pb2

BIN = Path(sys.executable).parent


def realistic_sample() -> telemetry_pb2.Sample:
    nvml, _ = open_gpu_backend("builtin:h200", 1)
    gpu = GpuCollector(nvml)
    gpu.start()
    return telemetry_pb2.Sample(host=HostCollector().sample(), gpus=gpu.sample())


async def node_stream(
    address: str,
    tls: TlsFiles,
    *,
    node_id: str,
    batches: int,
    window: int,
    sample: telemetry_pb2.Sample,
    latencies: list[float],
) -> None:
    async with secure_aio_channel(address, tls) as channel:
        call = agent_pb2_grpc.AgentServiceStub(channel).Connect()
        await call.write(
            agent_pb2.ConnectRequest(hello=agent_pb2.AgentHello(node_id=node_id, boot_id="bench"))
        )
        await call.read()
        sent: dict[int, float] = {}
        slots = asyncio.Semaphore(window)

        async def receive() -> None:
            acked = 0
            while acked < batches:
                response = await call.read()
                if response.WhichOneof("message") != "ack":
                    continue  # the keyset the hub sends a new agent
                ack = response.ack
                acked += 1
                latencies.append(time.perf_counter() - sent.pop(ack.seq))
                slots.release()

        receiver = asyncio.create_task(receive())
        for seq in range(1, batches + 1):
            await slots.acquire()
            sent[seq] = time.perf_counter()
            await call.write(
                agent_pb2.ConnectRequest(
                    batch=telemetry_pb2.TelemetryBatch(
                        node_id=node_id, boot_id="bench", seq=seq, samples=[sample]
                    )
                )
            )
        await receiver
        call.cancel()


async def raw_ceiling(
    url: str, layout: certs.CertLayout, count: int, window: int, payload: bytes
) -> float:
    admin = certs.NATS_ADMIN  # every right, and mutual TLS as the hub's own connection has
    tls = TlsFiles.load(layout.ca_cert, layout.user_cert(admin), layout.user_key(admin))
    nc = await nats_tls.connect(url, tls)
    js = nc.jetstream()
    kv = await js.key_value(subjects.TELEMETRY_HWM_BUCKET)
    slots = asyncio.Semaphore(window)

    async def one(seq: int) -> None:
        async with slots:
            await js.publish(
                subjects.telemetry_subject("raw"),
                payload,
                headers={"Nats-Msg-Id": f"raw/ceiling/{seq}"},
            )
            await kv.put("raw.ceiling", str(seq).encode())

    started = time.perf_counter()
    await asyncio.gather(*(one(seq) for seq in range(1, count + 1)))
    elapsed = time.perf_counter() - started
    await nc.close()
    return count / elapsed


@dataclass
class Load:
    """Results of one load run against one server process."""

    rate: float
    p50_ms: float
    p99_ms: float
    cpu_ms_per_batch: float


async def start_server(*argv: str) -> tuple[asyncio.subprocess.Process, list[str]]:
    """Start a server process; return it and the words of its first stdout line."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    assert process.stdout is not None
    return process, (await process.stdout.readline()).decode().split()


async def run_load(
    address: str,
    pid: int,
    *,
    layout: certs.CertLayout,
    nodes: int,
    batches: int,
    window: int,
    sample: telemetry_pb2.Sample,
) -> Load:
    latencies: list[float] = []
    cpu0 = sum(psutil.Process(pid).cpu_times()[:2])
    started = time.perf_counter()
    await asyncio.gather(
        *(
            node_stream(
                address,
                TlsFiles.load(
                    layout.ca_cert, layout.node_cert(f"bench-{i}"), layout.node_key(f"bench-{i}")
                ),
                node_id=f"bench-{i}",
                batches=batches,
                window=window,
                sample=sample,
                latencies=latencies,
            )
            for i in range(nodes)
        )
    )
    elapsed = time.perf_counter() - started
    cpu = sum(psutil.Process(pid).cpu_times()[:2]) - cpu0
    latencies.sort()
    return Load(
        rate=nodes * batches / elapsed,
        p50_ms=1000 * statistics.median(latencies),
        p99_ms=1000 * latencies[int(0.99 * (len(latencies) - 1))],
        cpu_ms_per_batch=1000 * cpu / (nodes * batches),
    )


async def measure(nodes: int, batches: int, window: int) -> dict[str, Any]:
    sample = realistic_sample()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        certs.init_ca(base / "certs")
        for index in range(nodes):
            certs.issue_node_certificate(base / "certs", f"bench-{index}")
        layout = certs.CertLayout(base / "certs")
        raw, words = await start_server(
            sys.executable, str(Path(__file__).parent / "raw_grpc_server.py"), str(base / "certs")
        )
        try:  # "listening on ADDR"
            raw_load = await run_load(
                words[2],
                raw.pid,
                layout=layout,
                nodes=nodes,
                batches=batches,
                window=window,
                sample=sample,
            )
        finally:
            raw.terminate()
            await raw.wait()
        hub, words = await start_server(
            str(BIN / "sentinel"),
            "hub",
            "--certs",
            str(base / "certs"),
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            str(base / "hub"),
        )
        try:  # "sentinel hub listening on ADDR (NATS URL)"
            hub_load = await run_load(
                words[4],
                hub.pid,
                layout=layout,
                nodes=nodes,
                batches=batches,
                window=window,
                sample=sample,
            )
            payload = telemetry_pb2.TelemetryBatch(
                node_id="raw", boot_id="ceiling", seq=1, samples=[sample]
            ).SerializeToString()
            jetstream = await raw_ceiling(
                words[6].rstrip(")"), layout, nodes * batches, nodes, payload
            )
        finally:
            hub.terminate()
            await hub.wait()
    return {"hub": hub_load, "raw": raw_load, "jetstream": jetstream, "bytes": len(payload)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--write", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()
    result = asyncio.run(measure(args.nodes, args.batches, args.window))
    hub, raw = result["hub"], result["raw"]
    lines = [
        f"### Hub ingest ({datetime.now(UTC):%Y-%m-%d}, {machine()})",
        "",
        f"`python bench/hub_ingest.py --nodes {args.nodes} --batches {args.batches} --window "
        f"{args.window}`: {args.nodes} mTLS agent streams, {result['bytes']}-byte batches, "
        f"{args.window} in flight each, against the hub and, in the same run, against a raw "
        "grpc.aio AgentService over the same mTLS that only counts and acks "
        "(`bench/raw_grpc_server.py`). The hub acks after JetStream's PubAck and a KV write; "
        f"raw JetStream alone (publish + KV put, {args.nodes} at a time): "
        f"{result['jetstream']:.0f}/s. Load generator and servers share the machine.",
        "",
        "| server | acked batches/s | ack p50 (ms) | ack p99 (ms) | server CPU per batch (ms) |",
        "| --- | ---: | ---: | ---: | ---: |",
        *(
            f"| {name} | {load.rate:.0f} | {load.p50_ms:.1f} | {load.p99_ms:.1f} | "
            f"{load.cpu_ms_per_batch:.2f} |"
            for name, load in (("hub", hub), ("raw gRPC", raw))
        ),
        "",
        f"Hub / raw gRPC: {hub.rate / raw.rate:.2f} of the throughput.",
        "",
    ]
    report(lines, write=args.write)


if __name__ == "__main__":
    main()
