"""Soak: a hub outage under many agents; nothing lost, nothing duplicated, backlog drained.

N agents run in this process (host metrics, 1 s samples and batches, real mTLS streams);
the hub is a `sentinel hub` subprocess, killed with SIGKILL for the outage and restarted
on the same port and data. Reported: batches, lost and duplicated (seq by seq on
`sentinel.telemetry.<node>`), and how long the backlog took to drain after the return.

    python bench/soak/hub_outage.py [--agents 100] [--outage-s 600] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))  # bench/report.py

from report import machine, report
from seqcheck import lost_and_duplicated, nats_admin, stored_seqs

import certs
from edge_agent.app import Agent
from edge_agent.settings import AgentSettings, LinkSettings, SamplingSettings

BIN = Path(sys.executable).parent


class HubProcess:
    def __init__(self, certs_dir: Path, data_dir: Path) -> None:
        self.certs_dir, self.data_dir = certs_dir, data_dir
        self.address, self.nats_url = "127.0.0.1:0", ""
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            str(BIN / "sentinel"),
            "hub",
            "--certs",
            str(self.certs_dir),
            "--listen",
            self.address,
            "--data-dir",
            str(self.data_dir),
            "--metrics",
            "",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert self.process.stdout is not None
        words = (await self.process.stdout.readline()).decode().split()
        self.address, self.nats_url = words[4], words[6].rstrip(")")

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()


async def drained(agent: Agent) -> None:
    while len(agent.spool) or not agent.link.connected.is_set():
        agent.spool.changed.clear()
        await agent.spool.changed.wait()


async def soak(agents_n: int, outage_s: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        certs.init_ca(base / "certs")
        node_ids = [f"soak-{i:03d}" for i in range(agents_n)]
        for node_id in node_ids:
            certs.issue_node_certificate(base / "certs", node_id)
        hub = HubProcess(base / "certs", base / "hub")
        await hub.start()
        agents: list[Agent] = []
        try:
            for node_id in node_ids:
                agents.append(
                    await Agent.start(
                        AgentSettings(
                            certs_dir=base / "certs",
                            data_dir=base / node_id,
                            node_id=node_id,
                            link=LinkSettings(hub_address=hub.address, backoff_max_s=10.0),
                            sampling=SamplingSettings(
                                batch_interval=timedelta(seconds=1),
                                sample_interval=timedelta(seconds=1),
                            ),
                        )
                    )
                )
            await asyncio.sleep(5)  # steady state before the outage
            await hub.kill()
            await asyncio.sleep(outage_s)
            await hub.start()
            returned = time.monotonic()
            backlog = sum(len(a.spool) for a in agents)
            await asyncio.gather(*(drained(a) for a in agents))
            drain_s = time.monotonic() - returned
        finally:
            await asyncio.gather(*(a.stop() for a in agents))
        observer = await nats_admin(hub.nats_url, hub.certs_dir)
        lost = duplicated = batches = 0
        try:
            js = observer.jetstream()
            for agent in agents:
                seqs = await stored_seqs(js, agent.node_id)
                last = agent.sequence.last_allocated
                batches += last
                missing, twice = lost_and_duplicated(seqs, last)
                lost, duplicated = lost + missing, duplicated + twice
        finally:
            await observer.close()
            await hub.stop()
    return {
        "agents": agents_n,
        "outage_s": outage_s,
        "batches": batches,
        "backlog": backlog,
        "lost": lost,
        "duplicated": duplicated,
        "drain_s": drain_s,
    }


def main() -> None:
    logging.basicConfig(level=logging.ERROR)  # agents' reconnect warnings would flood
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--outage-s", type=float, default=600)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    r = asyncio.run(soak(args.agents, args.outage_s))
    lines = [
        f"### Soak: hub outage ({datetime.now(UTC):%Y-%m-%d}, {machine()})",
        "",
        f"`python bench/soak/hub_outage.py --agents {args.agents} --outage-s {args.outage_s:g}`:"
        " agents in one process (1 s batches, host metrics), hub killed with SIGKILL for the "
        "outage and restarted; every node checked seq by seq.",
        "",
        "| agents | outage (s) | batches | backlog at return | lost | duplicated "
        "| drained in (s) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {r['agents']} | {r['outage_s']:g} | {r['batches']:.0f} | {r['backlog']:.0f} | "
        f"{r['lost']:.0f} | {r['duplicated']:.0f} | {r['drain_s']:.1f} |",
        "",
    ]
    report(lines, write=args.write)
    if r["lost"] or r["duplicated"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
