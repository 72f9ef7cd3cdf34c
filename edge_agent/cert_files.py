"""The agent's certificate and key on disk, switched crash-safely when renewed.

A switch stages `<id>.key.next`, then `<id>.crt.next` (each written whole under a
temporary name, fsynced, renamed, the directory fsynced), then renames the key into
place, then the certificate, and fsyncs the directory. A staged certificate is
therefore the sign of a complete staged pair.

`finish_interrupted_switch` runs before the pair is loaded: a staged certificate that
matches the staged key (or, once that was renamed, the installed one) completes the
switch; anything else staged is discarded. So a crash at any point leaves a matching
pair, the old or the new, and the key never exists under a name readable by others.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certs import CertLayout
from sentinel.errors import InvalidNodeId
from sentinel.files import replace_durably, sync_directory
from sentinel.identity import validate_node_id

log = logging.getLogger(__name__)

KEY_MODE = 0o600
CERT_MODE = 0o644
NEXT_SUFFIX = ".next"


def save_node_credentials(
    layout: CertLayout, node_id: str, cert_pem: bytes, key_pem: bytes
) -> None:
    """Make (`cert_pem`, `key_pem`) the node's pair, durably; a crash leaves old or new."""
    replace_durably(layout.node_key_next(node_id), key_pem, mode=KEY_MODE)
    replace_durably(layout.node_cert_next(node_id), cert_pem, mode=CERT_MODE)
    _install(layout, node_id)


def finish_interrupted_switch(layout: CertLayout, node_id: str) -> str:
    """Complete or discard a switch a crash interrupted: "finished", "discarded" or ""."""
    cert_next, key_next = layout.node_cert_next(node_id), layout.node_key_next(node_id)
    _remove_temporaries(cert_next, key_next)
    if not cert_next.exists():
        if not key_next.exists():
            return ""
        key_next.unlink()  # the crash came before the certificate was staged
        sync_directory(layout.nodes_dir)
        log.warning("discarded a half-staged certificate renewal of node %s", node_id)
        return "discarded"
    key = key_next if key_next.exists() else layout.node_key(node_id)
    if _matches(cert_next, key):
        _install(layout, node_id)
        log.warning("finished a certificate switch of node %s that a crash interrupted", node_id)
        return "finished"
    cert_next.unlink()
    key_next.unlink(missing_ok=True)
    sync_directory(layout.nodes_dir)
    log.warning("discarded a staged certificate of node %s that matches no key", node_id)
    return "discarded"


def staged_node_ids(layout: CertLayout) -> list[str]:
    """Node ids with a staged file (or its temporary) in `nodes/`: a switch was interrupted."""
    if not layout.nodes_dir.is_dir():
        return []
    ids = set()
    for path in layout.nodes_dir.iterdir():
        # `<id>.crt.next`, or `.<id>.key.next.<random>.tmp` while it was being written
        stem, staged, _ = path.name.removeprefix(".").partition(NEXT_SUFFIX)
        node_id, _, kind = stem.rpartition(".")
        if staged and kind in ("crt", "key") and _is_node_id(node_id):
            ids.add(node_id)
    return sorted(ids)


def pair_matches(cert_pem: bytes, key_pem: bytes) -> bool:
    """Whether the key is the private half of the certificate's public key."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        return False
    return bool(key.public_key() == cert.public_key())


def _is_node_id(name: str) -> bool:
    try:
        validate_node_id(name)
    except InvalidNodeId:
        return False
    return True


def _install(layout: CertLayout, node_id: str) -> None:
    key_next = layout.node_key_next(node_id)
    if key_next.exists():
        os.replace(key_next, layout.node_key(node_id))
    os.replace(layout.node_cert_next(node_id), layout.node_cert(node_id))
    sync_directory(layout.nodes_dir)


def _matches(cert: Path, key: Path) -> bool:
    try:
        return pair_matches(cert.read_bytes(), key.read_bytes())
    except FileNotFoundError:
        return False


def _remove_temporaries(*staged: Path) -> None:
    """`replace_durably`'s temporaries a crash left behind (one may hold a private key)."""
    for path in staged:
        for temporary in path.parent.glob(f".{path.name}.*.tmp"):
            temporary.unlink(missing_ok=True)
