"""Every policy version, signed, durable in JetStream KV; the current one in memory.

Bucket `sentinel_policies`, one key per version (`v` + 20 digits, so keys sort by
version), each holding the signed envelope of the bundle's exact YAML bytes, who put
it and when. Versions are never deleted or overwritten: `put` refuses a version that
is not newer than the current one, and a KV create refuses a key that exists, so two
hub replicas cannot both write the same version.

A hub that finds no policy stores the built-in default (`policy.DEFAULT_POLICY`) as
version 1, signed like any other; agents hold the same default until a bundle arrives.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

import policy
from hub.keys import KeyManager
from hub.state import bucket_keys, ensure_bucket
from hub.storage_budget import StorageBudget
from sentinel import subjects
from sentinel.envelope import unwrap
from sentinel.errors import FailedPrecondition, InvalidArgument, NotFound

log = logging.getLogger(__name__)

DEFAULT_AUTHOR = "sentinel (built-in default)"
# A bundle travels in one NATS KV value and one gRPC message.
MAX_POLICY_BYTES = 512 * 1024


class _Stored(msgspec.Struct, frozen=True):
    envelope: bytes
    author: str
    created_at: float


@dataclass(frozen=True, slots=True)
class StoredPolicy:
    bundle: policy.Bundle
    envelope: bytes
    author: str
    created_at: datetime


class PolicyStore:
    def __init__(self, kv: KeyValue, keys: KeyManager, clock: Callable[[], datetime]) -> None:
        self._kv = kv
        self._keys = keys
        self._clock = clock
        self._versions: dict[int, StoredPolicy] = {}
        self._changed = asyncio.Event()
        self._lock = asyncio.Lock()

    @classmethod
    async def open(
        cls,
        js: JetStreamContext,
        keys: KeyManager,
        clock: Callable[[], datetime],
        budget: StorageBudget | None = None,
    ) -> PolicyStore:
        budget = budget or StorageBudget()
        kv = await ensure_bucket(js, budget.bucket_config(budget.policies))
        store = cls(kv, keys, clock)
        for key in await bucket_keys(js, subjects.POLICIES_BUCKET):
            entry = await kv.get(key)
            if entry.value:
                store._remember(msgspec.msgpack.decode(entry.value, type=_Stored))
        if not store._versions:
            await store.put(policy.DEFAULT_POLICY, DEFAULT_AUTHOR)
        return store

    @property
    def current(self) -> StoredPolicy:
        return self._versions[max(self._versions)]

    def get(self, version: int) -> StoredPolicy:
        if version == 0:
            return self.current
        found = self._versions.get(version)
        if found is None:
            raise NotFound(f"no policy version {version}", reason="POLICY_NOT_FOUND")
        return found

    def versions(self) -> list[StoredPolicy]:
        """Newest first."""
        return [self._versions[v] for v in sorted(self._versions, reverse=True)]

    def changed(self) -> asyncio.Event:
        """Set when a new version becomes current (take a fresh one after each)."""
        return self._changed

    async def put(self, source: bytes, author: str) -> StoredPolicy:
        """Validate, sign with the policy key and store a new version."""
        if len(source) > MAX_POLICY_BYTES:
            raise InvalidArgument(
                f"policy of {len(source)} bytes exceeds {MAX_POLICY_BYTES}",
                reason="POLICY_TOO_LARGE",
            )
        bundle = policy.load_bundle(source)
        async with self._lock:
            if self._versions and bundle.version <= self.current.bundle.version:
                raise FailedPrecondition(
                    f"policy version {bundle.version} is not newer than the current "
                    f"version {self.current.bundle.version}",
                    reason="POLICY_VERSION_NOT_NEWER",
                )
            stored = _Stored(self._keys.sign_policy(source), author, self._clock().timestamp())
            try:
                await self._kv.create(_key(bundle.version), msgspec.msgpack.encode(stored))
            except KeyWrongLastSequenceError as exc:
                raise FailedPrecondition(
                    f"policy version {bundle.version} exists already",
                    reason="POLICY_VERSION_NOT_NEWER",
                ) from exc
            result = self._remember(stored)
        log.info("policy version %d is current (by %s)", bundle.version, author)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        return result

    def _remember(self, stored: _Stored) -> StoredPolicy:
        source = unwrap(stored.envelope, max_bytes=MAX_POLICY_BYTES).payload
        entry = StoredPolicy(
            bundle=policy.load_bundle(source),
            envelope=stored.envelope,
            author=stored.author,
            created_at=datetime.fromtimestamp(stored.created_at, UTC),
        )
        self._versions[entry.bundle.version] = entry
        return entry


def _key(version: int) -> str:
    return f"v{version:020d}"
