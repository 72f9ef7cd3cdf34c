"""Sentinel's certificate authority: the CA, hub, node and user certificates, signing keys.

Everything lives under one directory whose layout `CertLayout` names. Keys are
generated here and never leave the directory; private key files are mode 0600
from the moment they exist. Identities follow `sentinel.identity`: one
`spiffe://<trust-domain>/...` URI SAN per certificate, a user's role in the
subject O.
"""

from certs.authority import (
    ensure_nats_identities,
    init_ca,
    issue_hub_certificate,
    issue_node_certificate,
    issue_user_certificate,
    load_trust_domain,
    trust_domain_of_pem,
)
from certs.layout import NATS_ADMIN, NATS_OBSERVER, CertLayout
from certs.requests import (
    NodeRequest,
    ca_hash,
    new_node_request,
    read_node_request,
    serial_hex,
    sign_node_certificate,
)
from certs.signing_keys import (
    audit_signer,
    command_keys,
    load_signer,
    load_signing_key,
    nats_callout_key,
    new_command_key,
    policy_signer,
)

__all__ = [
    "NATS_ADMIN",
    "NATS_OBSERVER",
    "CertLayout",
    "NodeRequest",
    "audit_signer",
    "ca_hash",
    "command_keys",
    "ensure_nats_identities",
    "init_ca",
    "issue_hub_certificate",
    "issue_node_certificate",
    "issue_user_certificate",
    "load_signer",
    "load_signing_key",
    "load_trust_domain",
    "nats_callout_key",
    "new_command_key",
    "new_node_request",
    "policy_signer",
    "read_node_request",
    "serial_hex",
    "sign_node_certificate",
    "trust_domain_of_pem",
]
