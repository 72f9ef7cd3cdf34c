"""Finds the agent's own certificate: its node id comes from the certificate only.

`DIR/nodes/<id>.crt|.key`, or the single node certificate in `DIR/nodes/`. A
`--node-id` that does not match the certificate is refused at start, and so is a key
that does not match it. A certificate switch a crash interrupted is finished or
discarded first (see edge_agent.cert_files).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import certs
from edge_agent.cert_files import finish_interrupted_switch, pair_matches, staged_node_ids
from sentinel.errors import ConfigError, SentinelError
from sentinel.identity import Kind, identity_from_pem, validate_node_id
from sentinel.tls import TlsFiles


@dataclass(frozen=True, slots=True)
class NodeCredentials:
    node_id: str
    trust_domain: str
    tls: TlsFiles


def load_node_credentials(certs_dir: Path, node_id: str | None) -> NodeCredentials:
    layout = certs.CertLayout(certs_dir)
    trust_domain = certs.load_trust_domain(certs_dir)
    for staged in [node_id] if node_id is not None else staged_node_ids(layout):
        finish_interrupted_switch(layout, validate_node_id(staged))
    if node_id is not None:
        cert_path = layout.node_cert(node_id)
        if not cert_path.exists():
            raise ConfigError(
                f"no certificate for node {node_id!r} at {cert_path}", reason="NODE_CERT_MISSING"
            )
    else:
        cert_path = _single_node_cert(certs_dir / "nodes")
    key_path = cert_path.with_suffix(".key")
    tls = TlsFiles.load(layout.ca_cert, cert_path, key_path)
    try:
        identity = identity_from_pem(tls.cert_pem, trust_domain)
    except SentinelError as exc:
        raise ConfigError(
            f"{cert_path} is not a usable node certificate: {exc}", reason="NODE_CERT_INVALID"
        ) from exc
    if identity.kind is not Kind.NODE:
        raise ConfigError(f"{cert_path} is not a node certificate", reason="NODE_CERT_INVALID")
    if not pair_matches(tls.cert_pem, tls.key_pem):
        raise ConfigError(f"{key_path} does not match {cert_path}", reason="NODE_KEY_MISMATCH")
    if node_id is not None and identity.name != node_id:
        raise ConfigError(
            f"--node-id {node_id!r} does not match the certificate's node id {identity.name!r}",
            reason="NODE_ID_MISMATCH",
        )
    return NodeCredentials(identity.name, trust_domain, tls)


def _single_node_cert(nodes_dir: Path) -> Path:
    found = sorted(nodes_dir.glob("*.crt")) if nodes_dir.is_dir() else []
    if len(found) != 1:
        raise ConfigError(
            f"expected exactly one node certificate in {nodes_dir}, found {len(found)}; "
            "pass --node-id",
            reason="NODE_CERT_AMBIGUOUS",
        )
    return found[0]
