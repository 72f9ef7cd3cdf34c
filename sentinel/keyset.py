"""The keyset: which command, policy and audit keys are trusted, signed by the root key.

Invariants (the agent side, `accept`):
- a keyset is trusted only if a pinned root key signed it (during a root rotation the
  caller pins the previous root too);
- its version must be higher than the one held (rollback and replay of an old keyset
  are refused); the same version is accepted only with identical bytes, which is a
  no-op (the hub re-sends it on every connect);
- an expired keyset is refused, and one that expires while held trusts nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.protobuf.message import DecodeError

from sentinel.durations import from_timestamp, to_timestamp
from sentinel.envelope import SigningKey, TrustedKey, seal, unwrap, verify
from sentinel.errors import ConfigError, FailedPrecondition, InvalidArgument, SentinelError
from sentinel.v1 import signing_pb2

PAYLOAD_TYPE = "sentinel.v1.Keyset"
ROOT = signing_pb2.KEY_PURPOSE_ROOT
COMMAND = signing_pb2.KEY_PURPOSE_COMMAND
POLICY = signing_pb2.KEY_PURPOSE_POLICY
AUDIT = signing_pb2.KEY_PURPOSE_AUDIT
_PURPOSE_NAMES = {ROOT: "root", COMMAND: "command", POLICY: "policy", AUDIT: "audit"}


def raw_public_bytes(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_for(public_key: Ed25519PublicKey, purpose: signing_pb2.KeyPurpose) -> str:
    """`<purpose>-<first 16 hex digits of sha256(raw public key)>`, as certs.key_id names it."""
    digest = hashlib.sha256(raw_public_bytes(public_key)).hexdigest()[:16]
    return f"{_PURPOSE_NAMES[purpose]}-{digest}"


def trusted(public_key: Ed25519PublicKey, purpose: signing_pb2.KeyPurpose) -> TrustedKey:
    return TrustedKey(key_id_for(public_key, purpose), purpose, public_key)


def load_root_public_key(path: Path) -> TrustedKey:
    """The pinned root key, from the SubjectPublicKeyInfo PEM `certs init` wrote."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except FileNotFoundError as exc:
        raise ConfigError(
            f"root public key {path} does not exist: copy signing/root.pub from the CA "
            "directory (never root.key), or pass --root-key",
            reason="ROOT_KEY_MISSING",
        ) from exc
    except ValueError as exc:
        raise ConfigError(f"{path} is not a PEM public key", reason="ROOT_KEY_INVALID") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{path} is not an Ed25519 key", reason="ROOT_KEY_INVALID")
    return trusted(key, ROOT)


@dataclass(frozen=True, slots=True)
class Keyset:
    version: int
    issued_at: datetime
    expires_at: datetime
    keys: Mapping[str, TrustedKey]
    # The exact signed envelope, as persisted and as sent to agents.
    envelope: bytes = field(repr=False)

    def usable(self, now: datetime) -> Mapping[str, TrustedKey]:
        """The keys to verify with at `now`: none once the keyset has expired."""
        return self.keys if now < self.expires_at else {}

    def key_ids(self, purpose: signing_pb2.KeyPurpose) -> list[str]:
        return sorted(k.key_id for k in self.keys.values() if k.purpose == purpose)


def sign_keyset(
    version: int,
    keys: Iterable[TrustedKey],
    root: SigningKey,
    *,
    issued_at: datetime,
    expires_at: datetime,
) -> Keyset:
    message = signing_pb2.Keyset(
        version=version, issued_at=to_timestamp(issued_at), expires_at=to_timestamp(expires_at)
    )
    for key in keys:
        message.keys.add(
            key_id=key.key_id,
            purpose=key.purpose,
            ed25519_public_key=raw_public_bytes(key.public_key),
        )
    envelope = seal(message.SerializeToString(deterministic=True), [root], PAYLOAD_TYPE)
    return _decode(message, envelope)


def open_keyset(data: bytes, roots: Mapping[str, TrustedKey]) -> Keyset:
    """Verify against the pinned roots, then decode. Raises InvalidArgument(KEYSET_INVALID)."""
    try:
        payload = verify(unwrap(data), roots, ROOT)
    except SentinelError as exc:
        raise InvalidArgument(f"keyset rejected: {exc}", reason="KEYSET_INVALID") from exc
    message = signing_pb2.Keyset()
    try:
        message.ParseFromString(payload)
    except DecodeError as exc:
        raise InvalidArgument(f"keyset does not decode: {exc}", reason="KEYSET_INVALID") from exc
    return _decode(message, data)


def accept(
    current: Keyset | None, data: bytes, roots: Mapping[str, TrustedKey], now: datetime
) -> Keyset:
    """The keyset to hold after receiving `data` (see the module invariants)."""
    offered = open_keyset(data, roots)
    if current is not None:
        if offered.version == current.version and offered.envelope == current.envelope:
            return current
        if offered.version <= current.version:
            raise FailedPrecondition(
                f"keyset version {offered.version} is not newer than the held {current.version}",
                reason="KEYSET_ROLLBACK",
            )
    if offered.expires_at <= now:
        raise FailedPrecondition(
            f"keyset version {offered.version} expired at {offered.expires_at.isoformat()}",
            reason="KEYSET_EXPIRED",
        )
    return offered


def _decode(message: signing_pb2.Keyset, envelope: bytes) -> Keyset:
    keys: dict[str, TrustedKey] = {}
    for key in message.keys:
        if key.purpose not in (COMMAND, POLICY, AUDIT):
            raise InvalidArgument(
                f"keyset key {key.key_id!r} has purpose {key.purpose}", reason="KEYSET_INVALID"
            )
        try:
            public = Ed25519PublicKey.from_public_bytes(key.ed25519_public_key)
        except ValueError as exc:
            raise InvalidArgument(
                f"keyset key {key.key_id!r} is not an Ed25519 key", reason="KEYSET_INVALID"
            ) from exc
        if key_id_for(public, key.purpose) != key.key_id:
            raise InvalidArgument(
                f"keyset key id {key.key_id!r} does not match its key", reason="KEYSET_INVALID"
            )
        keys[key.key_id] = TrustedKey(key.key_id, key.purpose, public)
    if not message.HasField("expires_at") or message.version < 1:
        raise InvalidArgument("keyset needs a version and an expiry", reason="KEYSET_INVALID")
    try:
        issued_at, expires_at = (
            from_timestamp(message.issued_at),
            from_timestamp(message.expires_at),
        )
    except InvalidArgument as exc:
        raise InvalidArgument(f"keyset times: {exc}", reason="KEYSET_INVALID") from exc
    return Keyset(
        version=message.version,
        issued_at=issued_at,
        expires_at=expires_at,
        keys=keys,
        envelope=envelope,
    )
