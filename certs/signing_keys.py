"""Ed25519 keys that sign envelopes: `root` (signs the keyset), `command`, `policy`, `audit`.

Invariants: private keys are PKCS#8 PEM, unencrypted, mode 0600, in a 0700
directory, and are never overwritten (a new key is a rotation, not a re-init);
public keys are SubjectPublicKeyInfo PEM. A key id names the purpose and the
key (`sentinel.keyset.key_id_for`).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from certs.layout import CertLayout
from certs.writer import ensure_directory, write_public, write_secret
from sentinel.envelope import SigningKey
from sentinel.errors import ConfigError, FailedPrecondition
from sentinel.keyset import key_id_for
from sentinel.v1 import signing_pb2

SIGNING_DIR_MODE = 0o700


def load_signer(path: Path, purpose: signing_pb2.KeyPurpose) -> SigningKey:
    """A private key with its key id (`sentinel.keyset.key_id_for`), ready to sign."""
    key = load_signing_key(path)
    return SigningKey(key_id_for(key.public_key(), purpose), key)


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """Read an Ed25519 private key written by `write_signing_keys`."""
    try:
        pem = path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(
            f"signing key {path} does not exist", reason="SIGNING_KEY_MISSING", path=path
        ) from exc
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"{path} is not a PEM private key", reason="INVALID_SIGNING_KEY", path=path
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} is not an Ed25519 key", reason="INVALID_SIGNING_KEY", path=path)
    return key


def write_signing_keys(layout: CertLayout) -> None:
    """Create the root and command key pairs; refuse if either private key exists."""
    ensure_directory(layout.signing_dir, SIGNING_DIR_MODE)
    _write_pair(layout.root_key, layout.root_pub)
    _write_pair(layout.command_key, layout.command_pub)


def new_command_key(layout: CertLayout) -> SigningKey:
    """A fresh command key, written to `signing/<key id>.key` before it is returned."""
    key = Ed25519PrivateKey.generate()
    signer = SigningKey(key_id_for(key.public_key(), signing_pb2.KEY_PURPOSE_COMMAND), key)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_secret(layout.rotated_command_key(signer.key_id), pem, overwrite=False)
    return signer


def policy_signer(layout: CertLayout) -> SigningKey:
    """The key that signs policy bundles; made on first use (a directory from before
    policies existed has none), never replaced."""
    return _lazy_signer(layout, layout.policy_key, signing_pb2.KEY_PURPOSE_POLICY)


def audit_signer(layout: CertLayout) -> SigningKey:
    """The key that signs audit-log checkpoints and export seals; made on first use like
    the policy key, never replaced."""
    return _lazy_signer(layout, layout.audit_key, signing_pb2.KEY_PURPOSE_AUDIT)


def nats_callout_key(layout: CertLayout) -> Ed25519PrivateKey:
    """The account key the hub signs NATS auth_callout answers with (the server's
    configuration names its public half as the callout `issuer`); made on first use,
    never replaced, shared by every hub that shares the directory."""
    _ensure_key(layout, layout.nats_callout_key)
    return load_signing_key(layout.nats_callout_key)


def _lazy_signer(layout: CertLayout, path: Path, purpose: signing_pb2.KeyPurpose) -> SigningKey:
    _ensure_key(layout, path)
    return load_signer(path, purpose)


def _ensure_key(layout: CertLayout, path: Path) -> None:
    if not path.exists():
        ensure_directory(layout.signing_dir, SIGNING_DIR_MODE)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        with contextlib.suppress(FailedPrecondition):  # another process made it first
            write_secret(path, pem, overwrite=False)


def command_keys(layout: CertLayout) -> dict[str, SigningKey]:
    """Every command key in the directory (the first and the rotated ones), by key id."""
    paths = [layout.command_key, *sorted(layout.signing_dir.glob("command-*.key"))]
    signers = [load_signer(p, signing_pb2.KEY_PURPOSE_COMMAND) for p in paths if p.exists()]
    return {s.key_id: s for s in signers}


def _write_pair(key_path: Path, pub_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    write_secret(key_path, private_pem, overwrite=False)
    write_public(pub_path, public_pem)
