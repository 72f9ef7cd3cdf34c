"""Signed envelopes: exact payload bytes and Ed25519 signatures over them.

The verifier's order is the whole point: check the size, parse the envelope (two
fields, no payload decoding), verify a signature over the payload bytes against a
trusted key of the right purpose, and only then hand the payload bytes to a
decoder. Nothing in an unverified payload is ever looked at; the envelope's
`payload_type` is unsigned and is never used to pick a decoder.

Key lookup: a signature whose key id is unknown, or known for another purpose, does
not count (`UNKNOWN_KEY` when no signature names a usable key). A known key whose
signature does not verify is `BAD_SIGNATURE`. `threshold` distinct trusted keys
must verify (1 today; two of n later without a format change).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from google.protobuf.message import DecodeError

from sentinel.refusals import CommandRefused, Reason
from sentinel.v1 import signing_pb2

# Below NATS's default max_payload (1 MiB), so an oversized command is refused by the
# agent with a reason instead of being cut off by the transport.
MAX_ENVELOPE_BYTES = 64 * 1024
MAX_SIGNATURES = 8


@dataclass(frozen=True, slots=True)
class SigningKey:
    key_id: str
    private_key: Ed25519PrivateKey


@dataclass(frozen=True, slots=True)
class TrustedKey:
    key_id: str
    purpose: signing_pb2.KeyPurpose
    public_key: Ed25519PublicKey


def seal(payload: bytes, signers: Iterable[SigningKey], payload_type: str) -> bytes:
    """The serialized envelope: `payload` signed by every key in `signers`."""
    envelope = signing_pb2.SignedEnvelope(payload=payload, payload_type=payload_type)
    for signer in signers:
        envelope.signatures.add(key_id=signer.key_id, signature=signer.private_key.sign(payload))
    return envelope.SerializeToString()


def unwrap(data: bytes, *, max_bytes: int = MAX_ENVELOPE_BYTES) -> signing_pb2.SignedEnvelope:
    """Size check and envelope parse; the payload stays opaque bytes."""
    if len(data) > max_bytes:
        raise CommandRefused(
            Reason.MALFORMED, f"envelope of {len(data)} bytes exceeds the {max_bytes}-byte cap"
        )
    envelope = signing_pb2.SignedEnvelope()
    try:
        envelope.ParseFromString(data)
    except DecodeError as exc:
        raise CommandRefused(Reason.MALFORMED, f"not a signed envelope: {exc}") from exc
    if not envelope.payload:
        raise CommandRefused(Reason.MALFORMED, "envelope has no payload")
    if not envelope.signatures:
        raise CommandRefused(Reason.UNKNOWN_KEY, "envelope carries no signature")
    if len(envelope.signatures) > MAX_SIGNATURES:
        raise CommandRefused(
            Reason.MALFORMED, f"envelope carries more than {MAX_SIGNATURES} signatures"
        )
    return envelope


def verify(
    envelope: signing_pb2.SignedEnvelope,
    trusted: Mapping[str, TrustedKey],
    purpose: signing_pb2.KeyPurpose,
    *,
    threshold: int = 1,
) -> bytes:
    """The payload bytes, once `threshold` distinct trusted keys of `purpose` signed them."""
    valid: set[str] = set()
    bad: list[str] = []
    for signature in envelope.signatures:
        key = trusted.get(signature.key_id)
        if key is None or key.purpose != purpose or signature.key_id in valid:
            continue
        try:
            key.public_key.verify(signature.signature, envelope.payload)
        except InvalidSignature:
            bad.append(signature.key_id)
            continue
        valid.add(signature.key_id)
    if len(valid) >= threshold:
        return envelope.payload
    if bad:
        raise CommandRefused(
            Reason.BAD_SIGNATURE, f"signature by {bad[0]} does not verify", key_id=bad[0]
        )
    named = ", ".join(s.key_id or "(empty)" for s in envelope.signatures)
    if valid:
        raise CommandRefused(
            Reason.UNKNOWN_KEY,
            f"{len(valid)} of {threshold} required trusted signatures (signed by {named})",
        )
    raise CommandRefused(Reason.UNKNOWN_KEY, f"no trusted key signed this (signed by {named})")
