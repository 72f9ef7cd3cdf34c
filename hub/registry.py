"""The node registry: every node the hub has heard from, its inventory, labels,
liveness and telemetry counters.

Records are `sentinel.v1.Node` messages, kept in memory and written through to the
`sentinel_nodes` JetStream KV bucket on every change, so a restarted hub knows its
fleet (every node starts offline until it reconnects). All methods run on the event
loop; no locking is needed.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from nats.js.kv import KeyValue

from hub.events import EventPublisher
from hub.health_events import health_changes
from hub.metrics import gap_reason_label
from hub.state import store_unavailable
from sentinel.durations import from_timestamp, to_timestamp
from sentinel.selectors import Selector
from sentinel.v1 import agent_pb2, fleet_pb2, telemetry_pb2

log = logging.getLogger(__name__)

ONLINE = fleet_pb2.NODE_STATE_ONLINE
OFFLINE = fleet_pb2.NODE_STATE_OFFLINE


class Registry:
    def __init__(self, kv: KeyValue, events: EventPublisher) -> None:
        self._kv = kv
        self._events = events
        self._nodes: dict[str, fleet_pb2.Node] = {}
        self._connections: dict[str, int] = {}
        self._tokens = itertools.count(1)
        self._changed = asyncio.Condition()
        # Highest gap end counted per (node, boot); in memory, so a gap re-sent across a
        # hub restart can be counted twice (the durability work moves it to KV).
        self._gap_high_water: dict[tuple[str, str], int] = {}

    async def load(self, keys: list[str]) -> int:
        """Read the stored nodes (`keys`: every key of the bucket, `hub.state.bucket_keys`)."""
        for key in keys:
            entry = await self._kv.get(key)
            node = fleet_pb2.Node.FromString(entry.value or b"")
            node.state = OFFLINE
            self._nodes[node.node_id] = node
        log.info("registry loaded: %d nodes", len(self._nodes))
        return len(self._nodes)

    def get(self, node_id: str) -> fleet_pb2.Node | None:
        return self._nodes.get(node_id)

    def select(self, selector: Selector) -> list[fleet_pb2.Node]:
        return sorted(
            (n for n in self._nodes.values() if selector.matches(n.labels)), key=lambda n: n.node_id
        )

    async def connected(self, hello: agent_pb2.AgentHello, now: datetime) -> int:
        """Record a hello; returns the token that identifies this connection."""
        node = self._nodes.setdefault(hello.node_id, fleet_pb2.Node(node_id=hello.node_id))
        if not node.HasField("first_seen"):
            node.first_seen.CopyFrom(to_timestamp(now))
        node.reported_labels.clear()
        node.reported_labels.update(hello.labels)
        _apply_labels(node)
        node.host.CopyFrom(hello.host)
        del node.gpus[:]
        node.gpus.extend(hello.gpus)
        node.boot_id = hello.boot_id
        node.agent_version = hello.agent_version
        node.connected_since.CopyFrom(to_timestamp(now))
        node.last_seen.CopyFrom(to_timestamp(now))
        was_online = node.state == ONLINE
        node.state = ONLINE
        token = next(self._tokens)
        self._connections[hello.node_id] = token
        await self._save(node)
        if not was_online:
            await self._events.publish(
                "node",
                "online",
                node.node_id,
                {"boot_id": hello.boot_id, "agent_version": hello.agent_version},
            )
        return token

    async def enrolled(
        self,
        node_id: str,
        assigned: Mapping[str, str],
        reported: Mapping[str, str],
        now: datetime,
    ) -> None:
        """A node enrolled: it is known (offline until it connects), with the labels an
        admin assigned, which win over the labels it reports."""
        node = self._nodes.setdefault(node_id, fleet_pb2.Node(node_id=node_id, state=OFFLINE))
        node.assigned_labels.clear()
        node.assigned_labels.update(assigned)
        if not node.reported_labels:
            node.reported_labels.update(reported)
        if not node.HasField("first_seen"):
            node.first_seen.CopyFrom(to_timestamp(now))
        _apply_labels(node)
        await self._save(node)

    async def seen(self, node_id: str, now: datetime) -> None:
        """A message arrived from the node. A node the sweeper marked offline while its
        stream stayed open (it was silent, not gone) comes back online."""
        node = self._nodes.get(node_id)
        if node is None:
            return
        node.last_seen.CopyFrom(to_timestamp(now))
        if node.state == OFFLINE and node_id in self._connections:
            node.state = ONLINE
            await self._save(node)
            await self._events.publish(
                "node",
                "online",
                node_id,
                {"boot_id": node.boot_id, "agent_version": node.agent_version},
            )

    async def batch_received(
        self, batch: telemetry_pb2.TelemetryBatch, *, duplicate: bool, acked_seq: int
    ) -> None:
        node = self._nodes[batch.node_id]
        counters = node.counters
        changes: list[dict[str, Any]] = []
        if duplicate:
            counters.duplicates_dropped += 1
        else:
            counters.batches_received += 1
            counters.samples_received += len(batch.samples)
            previous = node.latest_sample if node.HasField("latest_sample") else None
            changes = health_changes(previous, batch.samples)
            if batch.samples:
                node.latest_sample.CopyFrom(batch.samples[-1])
        counters.last_acked_seq = max(counters.last_acked_seq, acked_seq)
        await self._save(node)
        for change in changes:
            await self._events.publish("gpu", "health_changed", node.node_id, change)

    async def gap_announced(self, node_id: str, gap: telemetry_pb2.TelemetryGap) -> int:
        """Count a gap once (an agent re-sends a gap whose acknowledgement it missed);
        returns how many batches it newly records."""
        key = (node_id, gap.boot_id)
        counted = self._gap_high_water.get(key, 0)
        if gap.to_seq <= counted:
            return 0
        from_seq = max(gap.from_seq, counted + 1)
        self._gap_high_water[key] = gap.to_seq
        node = self._nodes[node_id]
        node.counters.gaps_announced += 1
        batches = gap.to_seq - from_seq + 1
        node.counters.batches_in_gaps += batches
        await self._save(node)
        await self._events.publish(
            "telemetry",
            "gap",
            node_id,
            {
                "boot_id": gap.boot_id,
                "from_seq": from_seq,
                "to_seq": gap.to_seq,
                "reason": gap_reason_label(gap.reason),
            },
        )
        return batches

    def count_by_state(self) -> dict[str, int]:
        """Nodes per state, for the metrics endpoint (called from its thread: reads only)."""
        counts = {"online": 0, "offline": 0}
        for node in list(self._nodes.values()):
            counts["online" if node.state == ONLINE else "offline"] += 1
        return counts

    async def disconnected(self, node_id: str, token: int, reason: str) -> None:
        """Mark offline, unless a newer connection of the same node took over."""
        if self._connections.get(node_id) != token:
            return
        del self._connections[node_id]
        await self._mark_offline(self._nodes[node_id], reason)

    async def sweep(self, now: datetime, offline_after: timedelta) -> list[str]:
        """Mark offline every online node silent for longer than `offline_after`."""
        stale = [
            n
            for n in self._nodes.values()
            if n.state == ONLINE and now - from_timestamp(n.last_seen) > offline_after
        ]
        for node in stale:  # the stream, if any, stays registered: see `seen`
            await self._mark_offline(node, "heartbeat_timeout")
        return [n.node_id for n in stale]

    def is_current(self, node_id: str, token: int) -> bool:
        return self._connections.get(node_id) == token

    async def _mark_offline(self, node: fleet_pb2.Node, reason: str) -> None:
        if node.state == OFFLINE:
            return
        node.state = OFFLINE
        await self._save(node)
        log.info("node %s offline (%s)", node.node_id, reason)
        await self._events.publish(
            "node",
            "offline",
            node.node_id,
            {
                "reason": reason,
                "last_seen": from_timestamp(node.last_seen).isoformat(),
            },
        )

    async def _save(self, node: fleet_pb2.Node) -> None:
        with store_unavailable("node registry unavailable"):
            await self._kv.put(node.node_id, node.SerializeToString())
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Return once `predicate()` holds; it is re-checked after every recorded change."""
        async with self._changed:
            await self._changed.wait_for(predicate)

    def __len__(self) -> int:
        return len(self._nodes)

    def node_ids(self) -> Iterable[str]:
        return self._nodes.keys()


def _apply_labels(node: fleet_pb2.Node) -> None:
    """Effective labels: what the agent reports, overlaid by what an admin assigned."""
    node.labels.clear()
    node.labels.update(node.reported_labels)
    node.labels.update(node.assigned_labels)
