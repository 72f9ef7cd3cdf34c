"""Revoked certificates, shared by every hub through JetStream KV (`sentinel_revoked`).

Keys: `serial.<hex>` revokes one certificate; `node.<id>` revokes a node identity, so
every certificate that names it is refused, including ones issued offline that no hub
recorded. Entries are never removed.

Invariants: the hub that revokes applies it at once; every other hub applies it at
its next poll (`HubSettings.revocation_poll_interval`); a poll reads the bucket only
when its stream moved. Once applied, every RPC from a revoked certificate is refused
(PERMISSION_DENIED, reason CERT_REVOKED) and its open streams are ended
(`hub.auth.OpenCalls`), and so are their NATS connections (`hub.nats_callout`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import msgspec
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from hub.state import bucket_keys, ensure_bucket, store_unavailable
from hub.storage_budget import StorageBudget
from sentinel import subjects
from sentinel.errors import InvalidArgument, SentinelError
from sentinel.identity import Identity, Kind, validate_node_id

log = logging.getLogger(__name__)

_SERIAL = re.compile(r"[0-9a-f]{1,40}")


class Revoked(msgspec.Struct, frozen=True):
    revoked_at: float
    revoked_by: str
    reason: str
    # The node the serial belonged to, where known ("" otherwise).
    node_id: str = ""


def normalise_serial(serial: str) -> str:
    """Lower-case hex without leading zeros, `0x` or colons; raise INVALID_SERIAL otherwise."""
    digits = serial.strip().lower().removeprefix("0x").replace(":", "")
    text = digits.lstrip("0") or "0"
    if not digits or not _SERIAL.fullmatch(text):
        raise InvalidArgument(
            f"invalid serial {serial!r}: give the certificate serial number in hex",
            reason="INVALID_SERIAL",
        )
    return text


class Revocations:
    def __init__(
        self,
        js: JetStreamContext,
        kv: KeyValue,
        clock: Callable[[], datetime],
        poll_interval: timedelta,
    ) -> None:
        self._js = js
        self._kv = kv
        self._clock = clock
        self._poll_interval = poll_interval
        self.serials: dict[str, Revoked] = {}
        self.nodes: dict[str, Revoked] = {}
        self._last_seq = -1
        # Called after the revoked set grew: end what the revoked certificates hold open.
        self.on_change: Callable[[], Awaitable[None]] | None = None
        self._lock = asyncio.Lock()
        # The set grew and `on_change` has not yet succeeded since.
        self._unapplied = False

    @classmethod
    async def open(
        cls,
        js: JetStreamContext,
        clock: Callable[[], datetime],
        poll_interval: timedelta,
        budget: StorageBudget | None = None,
    ) -> Revocations:
        budget = budget or StorageBudget()  # reserved: a revocation is never refused for room
        kv = await ensure_bucket(js, budget.bucket_config(budget.revocations))
        revocations = cls(js, kv, clock, poll_interval)
        await revocations.refresh()
        return revocations

    def is_revoked(self, serial: str, identity: Identity) -> bool:
        if serial in self.serials:
            return True
        return identity.kind is Kind.NODE and identity.name in self.nodes

    async def revoke_node(self, node_id: str, *, by: str, reason: str) -> None:
        validate_node_id(node_id)
        await self._put(f"node.{node_id}", Revoked(self._clock().timestamp(), by, reason, node_id))

    async def revoke_serial(self, serial: str, *, by: str, reason: str, node_id: str = "") -> None:
        record = Revoked(self._clock().timestamp(), by, reason, node_id)
        await self._put(f"serial.{normalise_serial(serial)}", record)

    async def _put(self, key: str, record: Revoked) -> None:
        with store_unavailable("recording a revocation"):
            await self._kv.put(key, msgspec.json.encode(record))
        try:
            await self.refresh()
        except SentinelError as exc:  # recorded, and refused by the gate: the poll retries
            log.warning("revocation of %s recorded; applying it failed, retried: %s", key, exc)

    async def refresh(self) -> bool:
        """Re-read the bucket if it changed; True if the revoked set grew."""
        async with self._lock:
            return await self._refresh()

    async def _refresh(self) -> bool:
        with store_unavailable("reading the revoked set"):
            info = await self._js.stream_info(f"KV_{subjects.REVOKED_BUCKET}")
            last_seq = info.state.last_seq
            serials, nodes = dict(self.serials), dict(self.nodes)
            if last_seq != self._last_seq:
                for key in await bucket_keys(self._js, subjects.REVOKED_BUCKET):
                    kind, _, name = key.partition(".")
                    table = serials if kind == "serial" else nodes if kind == "node" else None
                    if table is None or name in table:
                        continue
                    entry = await self._kv.get(key)
                    if entry.value:
                        table[name] = msgspec.json.decode(entry.value, type=Revoked)
        grew = len(serials) + len(nodes) > len(self.serials) + len(self.nodes)
        # The gate refuses at once; acting on it (streams, NATS connections) is retried at
        # every poll until it succeeds, so a NATS that was away does not leave a revoked
        # certificate connected.
        self.serials, self.nodes, self._last_seq = serials, nodes, last_seq
        self._unapplied = self._unapplied or grew
        if grew:
            log.info("revoked set: %d certificates, %d nodes", len(serials), len(nodes))
        if self._unapplied and self.on_change is not None:
            await self.on_change()
            self._unapplied = False
        return grew

    async def run(self) -> None:
        """Poll forever; a store that is away is retried at the next interval."""
        while True:
            await asyncio.sleep(self._poll_interval.total_seconds())
            try:
                await self.refresh()
            except SentinelError as exc:
                log.warning("cannot read the revoked set: %s", exc)
