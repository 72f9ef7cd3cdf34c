"""Sentinel's certificate authority: the CA, hub, node and user certificates, signing keys.

Everything lives under one directory whose layout `CertLayout` names. Keys are
generated here and never leave the directory; private key files are mode 0600
from the moment they exist. Identities follow `sentinel.identity`: one
`spiffe://<trust-domain>/...` URI SAN per certificate, a user's role in the
subject O.
"""

from certs.authority import (
    init_ca,
    issue_node_certificate,
    issue_user_certificate,
    load_trust_domain,
)
from certs.layout import CertLayout
from certs.signing_keys import (
    command_keys,
    load_signer,
    load_signing_key,
    new_command_key,
    policy_signer,
)

__all__ = [
    "CertLayout",
    "command_keys",
    "init_ca",
    "issue_node_certificate",
    "issue_user_certificate",
    "load_signer",
    "load_signing_key",
    "load_trust_domain",
    "new_command_key",
    "policy_signer",
]
