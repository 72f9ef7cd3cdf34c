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
from certs.signing_keys import key_id, load_signing_key

__all__ = [
    "CertLayout",
    "init_ca",
    "issue_node_certificate",
    "issue_user_certificate",
    "key_id",
    "load_signing_key",
    "load_trust_domain",
]
