"""Hub ingest: acknowledged batches per second and ack latency, against the raw ceiling.

A real `sentinel hub` (embedded NATS) runs as a subprocess. N raw agent streams (real
mTLS, one node certificate each) send realistic batches (one sample, host + 1 GPU from
the H200 capture) with up to W unacknowledged at a time, as the agent does. The
ceiling, in the same run, against the same NATS: what ingest does without gRPC — a
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
from datetime import UTC, datetime
from pathlib import Path

import nats
import psutil
from report import machine, report

import certs
from edge_agent.collectors.gpu import GpuCollector
from edge_agent.collectors.host import HostCollector
from edge_agent.nvml.loader import open_gpu_backend
from sentinel import subjects
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
            for _ in range(batches):
                ack = (await call.read()).ack
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


async def raw_ceiling(url: str, count: int, window: int, payload: bytes) -> float:
    nc = await nats.connect(url)
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


async def measure(nodes: int, batches: int, window: int) -> dict[str, float]:
    sample = realistic_sample()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        certs.init_ca(base / "certs")
        for index in range(nodes):
            certs.issue_node_certificate(base / "certs", f"bench-{index}")
        hub = await asyncio.create_subprocess_exec(
            *(str(BIN / "sentinel"), "hub", "--certs", str(base / "certs")),
            *("--listen", "127.0.0.1:0", "--data-dir", str(base / "hub")),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            assert hub.stdout is not None
            # "sentinel hub listening on ADDR (NATS URL)"
            words = (await hub.stdout.readline()).decode().split()
            address, nats_url = words[4], words[6].rstrip(")")
            layout = certs.CertLayout(base / "certs")
            latencies: list[float] = []
            cpu0 = sum(psutil.Process(hub.pid).cpu_times()[:2])
            started = time.perf_counter()
            await asyncio.gather(
                *(
                    node_stream(
                        address,
                        TlsFiles.load(
                            layout.ca_cert,
                            layout.node_cert(f"bench-{i}"),
                            layout.node_key(f"bench-{i}"),
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
            hub_cpu = sum(psutil.Process(hub.pid).cpu_times()[:2]) - cpu0
            payload = telemetry_pb2.TelemetryBatch(
                node_id="raw", boot_id="ceiling", seq=1, samples=[sample]
            ).SerializeToString()
            ceiling = await raw_ceiling(nats_url, nodes * batches, nodes, payload)
        finally:
            hub.terminate()
            await hub.wait()
    latencies.sort()
    total = nodes * batches
    return {
        "rate": total / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
        "hub_cpu_ms": 1000 * hub_cpu / total,
        "ceiling": ceiling,
        "bytes": len(payload),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--write", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()
    result = asyncio.run(measure(args.nodes, args.batches, args.window))
    lines = [
        f"### Hub ingest ({datetime.now(UTC):%Y-%m-%d}, {machine()})",
        "",
        f"`python bench/hub_ingest.py --nodes {args.nodes} --batches {args.batches} --window "
        f"{args.window}`: {args.nodes} mTLS agent streams, {result['bytes']:.0f}-byte batches, "
        f"{args.window} in flight each; ceiling = JetStream publish + KV put from one client "
        f"to the same NATS, {args.nodes} at a time (the hub takes each stream's batches in "
        "order). Load generator and hub share the machine.",
        "",
        "| acked batches/s | ack p50 (ms) | ack p99 (ms) | hub CPU per batch (ms) "
        "| raw JetStream ceiling (/s) | ratio |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {result['rate']:.0f} | {result['p50_ms']:.1f} | {result['p99_ms']:.1f} | "
        f"{result['hub_cpu_ms']:.2f} | {result['ceiling']:.0f} | "
        f"{result['rate'] / result['ceiling']:.2f} |",
        "",
    ]
    report(lines, write=args.write)


if __name__ == "__main__":
    main()
