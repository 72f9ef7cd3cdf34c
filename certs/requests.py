"""Certificate signing requests: a node makes its key and asks; the CA decides what it gets.

Invariants: the private key is generated where it will be used and never leaves it
(only the CSR travels); the CA reads from a CSR nothing but its public key and the
identity it asks for, checks that the request is self-signed by that key, and builds
the certificate itself from the identity the caller is entitled to (the SAN the hub
assigns wins over anything the CSR says); only ECDSA P-256 keys are accepted, as for
every other TLS key of the trust domain.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certs import builder
from certs.authority import load_authority
from certs.layout import CertLayout
from sentinel.errors import InvalidArgument, PermissionDenied
from sentinel.identity import Kind, parse_spiffe_id, spiffe_id, validate_node_id

MAX_CSR_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class NodeRequest:
    """What a valid CSR asks for: a node id in this trust domain, for this public key."""

    node_id: str
    public_key: ec.EllipticCurvePublicKey


def new_node_request(trust_domain: str, node_id: str) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """A fresh P-256 key and a PEM CSR for `spiffe://<trust_domain>/node/<node_id>`."""
    validate_node_id(node_id)
    key = builder.new_private_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_id)]))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(spiffe_id(trust_domain, Kind.NODE, node_id))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return key, csr.public_bytes(serialization.Encoding.PEM)


def read_node_request(csr_pem: bytes, trust_domain: str) -> NodeRequest:
    """The node identity a CSR asks for; raise for anything else (with a stable reason).

    Refused: not a PEM CSR or not self-signed (CSR_INVALID), a key other than P-256
    (CSR_KEY_UNSUPPORTED), no or several spiffe:// URIs, or a user, hub or foreign
    identity (CSR_NOT_A_NODE)."""
    if len(csr_pem) > MAX_CSR_BYTES:
        raise InvalidArgument(
            f"CSR is {len(csr_pem)} bytes; at most {MAX_CSR_BYTES}", reason="CSR_INVALID"
        )
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
        signed = csr.is_signature_valid
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(
            f"not a PEM certificate request: {exc}", reason="CSR_INVALID"
        ) from exc
    if not signed:
        raise InvalidArgument("the CSR's signature does not verify", reason="CSR_INVALID")
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise InvalidArgument("the CSR's key must be ECDSA P-256", reason="CSR_KEY_UNSUPPORTED")
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = [u for u in san.get_values_for_type(x509.UniformResourceIdentifier)]
    except x509.ExtensionNotFound:
        uris = []
    spiffe = [u for u in uris if u.startswith("spiffe://")]
    if len(spiffe) != 1 or len(uris) != 1:
        raise PermissionDenied(
            "the CSR must ask for exactly one identity, spiffe://<trust-domain>/node/<id>",
            reason="CSR_NOT_A_NODE",
        )
    try:
        domain, kind, name = parse_spiffe_id(spiffe[0])
    except PermissionDenied as exc:
        raise PermissionDenied(
            f"the CSR asks for {spiffe[0]!r}, which is not a node identity", reason="CSR_NOT_A_NODE"
        ) from exc
    if kind is not Kind.NODE or domain != trust_domain:
        raise PermissionDenied(
            f"the CSR asks for {spiffe[0]!r}; only spiffe://{trust_domain}/node/<id> can be "
            "requested",
            reason="CSR_NOT_A_NODE",
        )
    return NodeRequest(name, key)


def sign_node_certificate(
    directory: Path,
    node_id: str,
    public_key: ec.EllipticCurvePublicKey,
    *,
    validity: timedelta,
    not_before: datetime | None = None,
) -> x509.Certificate:
    """A node certificate for `node_id` (the caller decides the id) and `public_key`."""
    authority = load_authority(CertLayout(directory))
    uri = spiffe_id(authority.trust_domain, Kind.NODE, validate_node_id(node_id))
    window = builder.Validity.starting(not_before, validity)
    spec = builder.client_spec(uri, node_id, None, window)
    return builder.build_leaf(spec, public_key, authority.cert, authority.key)


def ca_hash(ca_pem: bytes) -> str:
    """`sha256:<hex>` of the CA certificate's SubjectPublicKeyInfo, as kubeadm pins a CA."""
    cert = x509.load_pem_x509_certificate(ca_pem)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def serial_hex(cert: x509.Certificate) -> str:
    """The serial number as lower-case hex, the form revocation uses."""
    return format(cert.serial_number, "x")
