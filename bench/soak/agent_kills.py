"""Soak: `kill -9` a real agent at random points, many times; nothing spooled may be lost.

A hub runs in this process; the agent is a `sentinel agent run` subprocess (0.1 s
batches). Half the rounds the hub is unreachable (everything sealed sits in the spool
when the kill lands); half the rounds it is connected and the kill lands at a random
moment of the sample/seal/send/ack cycle. A final clean run drains the spool; then every
seq the agent ever used must be in `sentinel.telemetry.<node>` exactly once.

    python bench/soak/agent_kills.py [--kills 1000] [--seed 1] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import socket
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))  # bench/report.py

from report import machine, report
from seqcheck import lost_and_duplicated, nats_admin, stored_seqs

import certs
from edge_agent.state import SequenceState
from hub.app import Hub
from hub.settings import HubSettings

BIN = Path(sys.executable).parent
NODE = "soak-1"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def agent_process(certs_dir: Path, hub: str, data_dir: Path) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        str(BIN / "sentinel"),
        "agent",
        "run",
        "--hub",
        hub,
        "--certs",
        str(certs_dir),
        "--data-dir",
        str(data_dir),
        "--node-id",
        NODE,
        "--interval",
        "100ms",
        "--sample-interval",
        "50ms",
        "--metrics",
        "",
        "--log-level",
        "error",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 60)
    if not line.startswith(f"sentinel agent {NODE}".encode()):
        raise SystemExit(f"agent did not start (crash loop?): {line!r}")
    return process


def acked(hub: Hub) -> int:
    node = hub.registry.get(NODE)
    return node.counters.last_acked_seq if node else 0


def allocated(data_dir: Path) -> int:
    return SequenceState.open(data_dir).last_allocated if data_dir.exists() else 0


async def stored(hub: Hub) -> list[int]:
    observer = await nats_admin(hub.nats_url, hub.settings.certs_dir)
    try:
        return await stored_seqs(observer.jetstream(), NODE)
    finally:
        await observer.close()


async def soak(kills: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        certs.init_ca(base / "certs")
        certs.issue_node_certificate(base / "certs", NODE)
        hub = await Hub.start(
            HubSettings(certs_dir=base / "certs", listen="127.0.0.1:0", data_dir=base / "hub")
        )
        data_dir = base / "agent"
        try:
            for round_ in range(kills):
                if round_ % 2:
                    agent = await agent_process(
                        base / "certs", f"127.0.0.1:{closed_port()}", data_dir
                    )
                    target = allocated(data_dir) + rng.randint(2, 6)
                    while True:  # another process's file: polled
                        if allocated(data_dir) >= target:
                            break
                        await asyncio.sleep(0.02)
                else:
                    agent = await agent_process(base / "certs", hub.address, data_dir)
                    target = acked(hub) + rng.randint(1, 4)
                    await hub.registry.wait_for(lambda t=target: acked(hub) >= t)
                    await asyncio.sleep(rng.uniform(0, 0.15))
                agent.kill()
                await agent.wait()
            agent = await agent_process(base / "certs", hub.address, data_dir)
            backlog = allocated(data_dir)
            await asyncio.wait_for(hub.registry.wait_for(lambda: acked(hub) >= backlog + 2), 300)
            agent.terminate()
            await agent.wait()
            seqs = await stored(hub)
            last = allocated(data_dir)
            node = hub.registry.get(NODE)
            gaps = node.counters.batches_in_gaps if node else -1
        finally:
            await hub.stop()
    lost, duplicated = lost_and_duplicated(seqs, last)
    return {
        "kills": kills,
        "batches": last,
        "lost": lost,
        "duplicated": duplicated,
        "gaps": gaps,
        "minutes": (time.monotonic() - started) / 60,
    }


def main() -> None:
    logging.basicConfig(level=logging.ERROR)  # agents' reconnect warnings would flood
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(soak(args.kills, args.seed))
    lines = [
        f"### Soak: agent kill -9 ({datetime.now(UTC):%Y-%m-%d}, {machine()})",
        "",
        f"`python bench/soak/agent_kills.py --kills {args.kills} --seed {args.seed}`: a real "
        "agent process (0.1 s batches) killed with SIGKILL at random points, half the time "
        "with the hub unreachable; then drained and checked seq by seq.",
        "",
        "| kills | batches | lost | duplicated | batches in gaps | minutes |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {result['kills']} | {result['batches']} | {result['lost']} | "
        f"{result['duplicated']} | {result['gaps']} | {result['minutes']:.1f} |",
        "",
    ]
    report(lines, write=args.write)
    if result["lost"] or result["duplicated"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
