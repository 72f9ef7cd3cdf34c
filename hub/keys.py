"""The hub's signing keys and the keyset agents trust.

State: the signed keyset and the id of the command key the hub signs with, in the
JetStream KV bucket `sentinel_keys`; private keys stay in the certificate
directory (`signing/`), never in NATS. A hub without state in KV starts keyset
version 1 with the directory's command key. The policy and audit keys (made on first
use) are in every keyset: the audit key signs audit checkpoints and export seals.

Invariants:
- a command key is in a published keyset before the hub signs anything with it
  (`rotate_command_key` persists the new keyset, then switches the signer);
- the signing key is never retired; a retired key is absent from the next keyset
  and stops verifying on every agent that receives it;
- each change bumps the version and wakes every open Connect stream, which sends
  the new keyset to its agent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

import certs
from sentinel.durations import to_timestamp
from sentinel.envelope import SigningKey, TrustedKey, seal
from sentinel.errors import ConfigError, FailedPrecondition, NotFound
from sentinel.keyset import (
    AUDIT,
    COMMAND,
    POLICY,
    ROOT,
    Keyset,
    open_keyset,
    raw_public_bytes,
    sign_keyset,
    trusted,
)
from sentinel.v1 import command_pb2, keys_pb2, signing_pb2

log = logging.getLogger(__name__)

KEYSET_LIFETIME = timedelta(days=365)
# A keyset this close to its expiry is re-signed (a new version, same keys) at start.
RESIGN_BEFORE = timedelta(days=30)
_KEYSET_KEY = "keyset"
_SIGNER_KEY = "command_signer"
POLICY_PAYLOAD_TYPE = "application/yaml; sentinel policy bundle"
COMMAND_PAYLOAD_TYPE = command_pb2.DESCRIPTOR.message_types_by_name["CommandPayload"].full_name


class KeyManager:
    def __init__(
        self,
        kv: KeyValue,
        layout: certs.CertLayout,
        *,
        root: SigningKey,
        keyset: Keyset,
        signer: SigningKey,
        policy: SigningKey,
        audit: SigningKey,
        clock: Callable[[], datetime],
    ) -> None:
        self._kv = kv
        self._layout = layout
        self._root = root
        self.keyset = keyset
        self.signer = signer
        self.policy_signer = policy
        self.audit_signer = audit
        self._clock = clock
        self._changed = asyncio.Event()
        self._lock = asyncio.Lock()

    @classmethod
    async def open(
        cls, kv: KeyValue, layout: certs.CertLayout, clock: Callable[[], datetime]
    ) -> KeyManager:
        root = certs.load_signer(layout.root_key, ROOT)
        signers = certs.command_keys(layout)
        policy = certs.policy_signer(layout)
        policy_key = trusted(policy.private_key.public_key(), POLICY)
        audit = certs.audit_signer(layout)
        audit_key = trusted(audit.private_key.public_key(), AUDIT)
        stored = await _get(kv, _KEYSET_KEY)
        if stored is None:
            first = certs.load_signer(layout.command_key, COMMAND)
            manager = cls(
                kv,
                layout,
                root=root,
                keyset=_placeholder(),
                signer=first,
                policy=policy,
                audit=audit,
                clock=clock,
            )
            await manager._publish(
                [trusted(first.private_key.public_key(), COMMAND), policy_key, audit_key], first
            )
            return manager
        roots = {root.key_id: trusted(root.private_key.public_key(), ROOT)}
        keyset = open_keyset(stored, roots)
        signer_id = (await _get(kv, _SIGNER_KEY) or b"").decode()
        if signer_id not in signers or signer_id not in keyset.keys:
            raise ConfigError(
                f"the keyset names command key {signer_id!r} but {layout.signing_dir} "
                "does not hold it",
                reason="SIGNING_KEY_MISSING",
            )
        manager = cls(
            kv,
            layout,
            root=root,
            keyset=keyset,
            signer=signers[signer_id],
            policy=policy,
            audit=audit,
            clock=clock,
        )
        # A keyset from before policies or audit checkpoints lacks their keys.
        missing = [k for k in (policy_key, audit_key) if k.key_id not in keyset.keys]
        if missing:
            await manager._publish([*keyset.keys.values(), *missing], manager.signer)
        elif keyset.expires_at - clock() < RESIGN_BEFORE:
            await manager._publish(list(keyset.keys.values()), manager.signer)
        return manager

    def sign_command(self, payload: bytes) -> bytes:
        return seal(payload, [self.signer], COMMAND_PAYLOAD_TYPE)

    def sign_policy(self, source: bytes) -> bytes:
        """A policy bundle: its exact YAML bytes, signed by the policy key."""
        return seal(source, [self.policy_signer], POLICY_PAYLOAD_TYPE)

    def changed(self) -> asyncio.Event:
        """Set at the next keyset change (take a fresh one after each)."""
        return self._changed

    async def rotate_command_key(self) -> Keyset:
        async with self._lock:
            new = certs.new_command_key(self._layout)
            keys = [*self.keyset.keys.values(), trusted(new.private_key.public_key(), COMMAND)]
            await self._publish(keys, new)
            log.info("command key rotated: now signing with %s", new.key_id)
            return self.keyset

    async def retire(self, key_id: str) -> Keyset:
        async with self._lock:
            if key_id == self.signer.key_id:
                raise FailedPrecondition(
                    f"{key_id} signs commands now; rotate to a new key before retiring it",
                    reason="KEY_IN_USE",
                )
            if key_id not in self.keyset.keys:
                raise NotFound(f"key {key_id!r} is not in the keyset", reason="KEY_NOT_FOUND")
            keys = [k for k in self.keyset.keys.values() if k.key_id != key_id]
            await self._publish(keys, self.signer)
            log.info("key %s retired (keyset version %d)", key_id, self.keyset.version)
            return self.keyset

    def info(self) -> keys_pb2.KeysetInfo:
        return keys_pb2.KeysetInfo(
            version=self.keyset.version,
            issued_at=to_timestamp(self.keyset.issued_at),
            expires_at=to_timestamp(self.keyset.expires_at),
            keys=[_describe(k) for k in self.keyset.keys.values()],
            command_signing_key_id=self.signer.key_id,
        )

    async def _publish(self, keys: list[TrustedKey], signer: SigningKey) -> None:
        """Persist a new keyset version first; only then sign with `signer`."""
        now = self._clock()
        keyset = sign_keyset(
            self.keyset.version + 1,
            keys,
            self._root,
            issued_at=now,
            expires_at=now + KEYSET_LIFETIME,
        )
        await self._kv.put(_KEYSET_KEY, keyset.envelope)
        await self._kv.put(_SIGNER_KEY, signer.key_id.encode())
        self.keyset, self.signer = keyset, signer
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()


async def _get(kv: KeyValue, key: str) -> bytes | None:
    try:
        entry = await kv.get(key)
    except KeyNotFoundError:
        return None
    return entry.value


def _placeholder() -> Keyset:
    epoch = datetime.fromtimestamp(0, UTC)
    return Keyset(version=0, issued_at=epoch, expires_at=epoch, keys={}, envelope=b"")


def _describe(key: TrustedKey) -> signing_pb2.TrustedKey:
    return signing_pb2.TrustedKey(
        key_id=key.key_id, purpose=key.purpose, ed25519_public_key=raw_public_bytes(key.public_key)
    )
