"""NATS nkeys and JWTs, as far as the hub's auth_callout service needs them.

An nkey is an Ed25519 public key (or seed) written as base32 of one prefix byte, the 32
key bytes and a CRC-16 (XMODEM, little-endian), so a key says what it is: `A…` an
account, `U…` a user, `N…` a server. A NATS JWT is `header.claims.signature`, each part
base64url without padding; the header names the `ed25519-nkey` algorithm, the claims
name their issuer by its public nkey, and the signature is the issuer's over the first
two parts. nats-server checks that signature with the issuer the configuration names.

Invariants: `decode` returns claims only when the signature verifies against the key
the token's own `iss` names (and, given `issuer`, that this is the key expected);
`encode` always signs with the given account key and sets `iss`, `iat` and `jti`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from sentinel.errors import InvalidArgument

# nkeys' prefix bytes (the first base32 character is the role's letter).
PREFIX_ACCOUNT = 0 << 3  # "A"
PREFIX_SERVER = 13 << 3  # "N"
PREFIX_USER = 20 << 3  # "U"

_HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}


def _crc16(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def encode_public(prefix: int, key: bytes) -> str:
    raw = bytes([prefix]) + key
    raw += _crc16(raw).to_bytes(2, "little")
    return base64.b32encode(raw).decode().rstrip("=")


def decode_public(nkey: str, prefix: int) -> bytes:
    """The 32 key bytes of a public nkey of the given role; raise BAD_NKEY otherwise."""
    try:
        raw = base64.b32decode(nkey + "=" * (-len(nkey) % 8))
    except (binascii.Error, ValueError) as exc:
        raise InvalidArgument(f"not an nkey: {nkey!r}", reason="BAD_NKEY") from exc
    body, crc = raw[:-2], raw[-2:]
    if len(body) != 33 or body[0] != prefix or _crc16(body).to_bytes(2, "little") != crc:
        raise InvalidArgument(f"not a valid nkey of this kind: {nkey!r}", reason="BAD_NKEY")
    return body[1:]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class AccountKey:
    """The account signing key the auth_callout configuration names as its `issuer`."""

    private: Ed25519PrivateKey

    @property
    def public_nkey(self) -> str:
        return encode_public(PREFIX_ACCOUNT, self.private.public_key().public_bytes_raw())

    def encode(self, claims: Mapping[str, Any]) -> str:
        """A JWT of `claims`, issued (and signed) by this account."""
        body: dict[str, Any] = {**claims, "iss": self.public_nkey, "iat": int(time.time())}
        body.pop("jti", None)
        # nats' jti: a hash of the claims without it, so equal claims are one token.
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).digest()
        body["jti"] = base64.b32encode(digest).decode().rstrip("=")
        signed = f"{_b64(json.dumps(_HEADER).encode())}.{_b64(json.dumps(body).encode())}"
        return f"{signed}.{_b64(self.private.sign(signed.encode()))}"


def decode(token: str, *, issuer_prefix: int) -> dict[str, Any]:
    """The claims of a JWT whose signature verifies against the nkey in its `iss` (of the
    given role); raise BAD_JWT otherwise."""
    try:
        header_b64, claims_b64, signature_b64 = token.strip().split(".")
        header = json.loads(_unb64(header_b64))
        claims = json.loads(_unb64(claims_b64))
        if header.get("alg") != _HEADER["alg"] or not isinstance(claims, dict):
            raise ValueError("not an nkey-signed JWT")
        key = decode_public(str(claims.get("iss", "")), issuer_prefix)
        Ed25519PublicKey.from_public_bytes(key).verify(
            _unb64(signature_b64), f"{header_b64}.{claims_b64}".encode()
        )
    except (ValueError, InvalidArgument, InvalidSignature, binascii.Error) as exc:
        raise InvalidArgument(f"not a valid NATS JWT: {exc!r}", reason="BAD_JWT") from exc
    return claims
