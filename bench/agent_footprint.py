"""Agent footprint against Prometheus node_exporter, side by side in one run.

Starts a real hub and a real `sentinel agent run` (NVML replay, 1 s samples, streaming
to the hub) and Debian's `prometheus-node-exporter`; scrapes both /metrics endpoints
every second, as Prometheus would; reads each process's RSS and CPU time from /proc
over the same window. The raw ceiling for the agent's own work: the collectors alone
(host + GPU on the same replay) sampled in a tight loop in this process.

    python bench/agent_footprint.py [--seconds 60] [--gpus 1 8] [--write]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil
from report import machine, report

import certs
from edge_agent.collectors.gpu import GpuCollector
from edge_agent.collectors.host import HostCollector
from edge_agent.nvml.loader import open_gpu_backend

BIN = Path(sys.executable).parent


@dataclass
class Footprint:
    rss_mib: float
    cpu_s: float
    seconds: float

    @property
    def cpu_ms_per_s(self) -> float:
        return 1000 * self.cpu_s / self.seconds


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def raw_collector_cpu_ms(gpus: int, samples: int = 300) -> float:
    nvml, _ = open_gpu_backend("builtin:h200", gpus)
    host, gpu = HostCollector(), GpuCollector(nvml, xid_watcher=None)
    gpu.start()
    costs = []
    for _ in range(samples):
        started = time.process_time()
        host.sample()
        gpu.sample()
        costs.append(time.process_time() - started)
    gpu.close()
    return statistics.median(costs) * 1000


def scrape_every_second(urls: list[str], stop: threading.Event) -> None:
    while not stop.wait(1.0):
        for url in urls:
            with urllib.request.urlopen(url, timeout=5) as response:
                response.read()


def measure(processes: dict[str, int], urls: list[str], seconds: float) -> dict[str, Footprint]:
    handles = {name: psutil.Process(pid) for name, pid in processes.items()}
    stop = threading.Event()
    scraper = threading.Thread(target=scrape_every_second, args=(urls, stop), daemon=True)
    scraper.start()
    time.sleep(5)  # past start-up (imports, inventory): steady state only
    cpu0 = {name: sum(p.cpu_times()[:2]) for name, p in handles.items()}
    rss: dict[str, list[int]] = {name: [] for name in handles}
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        for name, process in handles.items():
            rss[name].append(process.memory_info().rss)
        time.sleep(1)
    elapsed = time.monotonic() - started
    stop.set()
    scraper.join()
    return {
        name: Footprint(
            statistics.median(rss[name]) / 2**20, sum(p.cpu_times()[:2]) - cpu0[name], elapsed
        )
        for name, p in handles.items()
    }


def run(seconds: float, gpus: int) -> dict[str, Footprint]:
    exporter = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if exporter is None:
        sys.exit(
            "needs Debian's prometheus-node-exporter (apt-get install prometheus-node-exporter)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        certs.init_ca(base / "certs")
        certs.issue_node_certificate(base / "certs", "bench-node")
        children: list[subprocess.Popen[str]] = []
        try:
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
                    "--metrics",
                    "",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            children.append(hub)
            assert hub.stdout is not None
            address = hub.stdout.readline().split()[4]  # "sentinel hub listening on ADDR"
            agent_port, exporter_port = free_port(), free_port()
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
                    "1s",
                    "--metrics",
                    f"127.0.0.1:{agent_port}",
                    "--log-level",
                    "warning",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            children.append(agent)
            node_exporter = subprocess.Popen(
                [exporter, f"--web.listen-address=127.0.0.1:{exporter_port}"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            children.append(node_exporter)
            time.sleep(3)  # both listening before the first scrape
            return measure(
                {"agent": agent.pid, "node_exporter": node_exporter.pid},
                [
                    f"http://127.0.0.1:{agent_port}/metrics",
                    f"http://127.0.0.1:{exporter_port}/metrics",
                ],
                seconds,
            )
        finally:
            for child in reversed(children):
                child.terminate()
                child.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--write", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()
    rows = []
    for gpus in args.gpus:
        result = run(args.seconds, gpus)
        agent, exporter = result["agent"], result["node_exporter"]
        rows.append(
            f"| {gpus} | {agent.rss_mib:.1f} | {agent.cpu_s:.2f} | {agent.cpu_ms_per_s:.2f} | "
            f"{raw_collector_cpu_ms(gpus):.2f} | {exporter.rss_mib:.1f} | {exporter.cpu_s:.2f} | "
            f"{exporter.cpu_ms_per_s:.2f} | {agent.cpu_s / exporter.cpu_s:.2f} |"
        )
    lines = [
        f"### Agent vs node_exporter ({datetime.now(UTC):%Y-%m-%d}, {machine()})",
        "",
        f"`python bench/agent_footprint.py --seconds {args.seconds:g}`: over the same "
        f"{args.seconds:g} s, a real `sentinel agent run` (NVML replay, 1 s samples, 5 s "
        "batches streamed to a real hub) and Debian's prometheus-node-exporter, both "
        "/metrics scraped every second. Median RSS; CPU is user+system. The agent also "
        "samples GPUs and streams telemetry; node_exporter only answers scrapes. "
        '"collectors" = host + GPU collection alone, per sample.',
        "",
        "| GPUs | agent RSS (MiB) | agent CPU (s) | agent CPU (ms/s) | collectors (ms/sample) "
        "| node_exporter RSS (MiB) | node_exporter CPU (s) | node_exporter CPU (ms/s) "
        "| agent / node_exporter CPU |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
    ]
    report(lines, write=args.write)


if __name__ == "__main__":
    main()
