"""Agent footprint: RSS and CPU per sample of a real `sentinel agent run` process.

Starts a real hub (`sentinel hub`, embedded NATS) and a real agent with the NVML
replay backend as subprocesses, lets them run, and reads the agent's RSS and CPU
time from /proc. The raw ceiling in the same run: the collectors alone
(HostCollector + GpuCollector on the same replay) sampled in a tight loop in this
process, so the ratio is what the agent adds on top of the collection itself.

    python bench/agent_footprint.py [--seconds 60] [--gpus 1] [--write]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil
from report import machine, report

import certs
from edge_agent.collectors.gpu import GpuCollector
from edge_agent.collectors.host import HostCollector
from edge_agent.nvml.loader import open_gpu_backend

BIN = Path(sys.executable).parent


def raw_collector_cpu_ms(gpus: int, samples: int = 300) -> float:
    nvml, _ = open_gpu_backend("builtin:h200", gpus)
    host, gpu = HostCollector(), GpuCollector(nvml)
    gpu.start()
    costs = []
    for _ in range(samples):
        started = time.process_time()
        host.sample()
        gpu.sample()
        costs.append(time.process_time() - started)
    gpu.close()
    return statistics.median(costs) * 1000


def run_agent(seconds: float, gpus: int, sample_interval: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        certs.init_ca(base / "certs")
        certs.issue_node_certificate(base / "certs", "bench-node")
        hub = subprocess.Popen(
            [
                str(BIN / "sentinel"),
                "hub",
                "--certs",
                str(base / "certs"),
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                str(base / "hub"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert hub.stdout is not None
            address = hub.stdout.readline().split()[4]  # "sentinel hub listening on ADDR"
            agent = subprocess.Popen(
                [
                    str(BIN / "sentinel"),
                    "agent",
                    "run",
                    "--hub",
                    address,
                    "--certs",
                    str(base / "certs"),
                    "--data-dir",
                    str(base / "agent"),
                    "--nvml-replay",
                    "builtin:h200",
                    "--replay-gpus",
                    str(gpus),
                    "--sample-interval",
                    sample_interval,
                    "--log-level",
                    "warning",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            proc = psutil.Process(agent.pid)
            time.sleep(5)  # start-up (imports, inventory) is not steady state
            cpu0 = sum(proc.cpu_times()[:2])
            t0 = time.monotonic()
            rss = []
            while time.monotonic() - t0 < seconds:
                rss.append(proc.memory_info().rss)
                time.sleep(1)
            cpu = sum(proc.cpu_times()[:2]) - cpu0
            elapsed = time.monotonic() - t0
            agent.terminate()
            agent.wait(30)
        finally:
            hub.terminate()
            hub.wait(30)
    interval_s = float(sample_interval.rstrip("s"))
    samples = elapsed / interval_s
    return {
        "rss_mib": statistics.median(rss) / 2**20,
        "cpu_ms_per_sample": cpu * 1000 / samples,
        "cpu_percent": 100 * cpu / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--write", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()
    rows = []
    for gpus in args.gpus:
        agent = run_agent(args.seconds, gpus, "1s")
        raw = raw_collector_cpu_ms(gpus)
        rows.append(
            (
                gpus,
                agent["rss_mib"],
                agent["cpu_ms_per_sample"],
                raw,
                agent["cpu_ms_per_sample"] / raw,
                agent["cpu_percent"],
            )
        )
    lines = [
        f"### Agent footprint ({datetime.now(UTC):%Y-%m-%d}, {machine()})",
        "",
        f"`python bench/agent_footprint.py --seconds {args.seconds:g}`: real `sentinel agent "
        "run` (NVML replay, 1 s samples, 5 s batches) against a real hub; median RSS; CPU "
        "(user+system) per sample; raw ceiling = the collectors alone, median per sample.",
        "",
        "| GPUs | agent RSS (MiB) | agent CPU / sample (ms) | collectors alone (ms) "
        "| ratio | agent CPU (%) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
        *(
            f"| {g} | {r:.1f} | {c:.2f} | {w:.2f} | {q:.1f}x | {p:.2f} |"
            for g, r, c, w, q, p in rows
        ),
        "",
    ]
    report(lines, write=args.write)


if __name__ == "__main__":
    main()
