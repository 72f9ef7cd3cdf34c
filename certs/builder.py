"""Building the X.509 certificates of one Sentinel trust domain; no file I/O.

Invariants: every key is ECDSA P-256 and every signature ECDSA-SHA256; the CA
carries its trust domain as the URI SAN `spiffe://<trust-domain>` and may sign
leaves only (path length 0); a leaf is never a CA, carries the spiffe:// URI
SAN that `sentinel.identity` reads, and the extended key usages its role
needs; a validity window is timezone-aware and never outlives its issuer.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from sentinel.errors import InvalidArgument

CA_VALIDITY = timedelta(days=3650)
LEAF_VALIDITY = timedelta(days=365)
# A certificate made "now" is dated a little earlier, so that a peer whose
# clock runs behind ours does not reject it as not yet valid.
CLOCK_SKEW_ALLOWANCE = timedelta(minutes=5)

_SERVER_AND_CLIENT = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)
_CLIENT_ONLY = (ExtendedKeyUsageOID.CLIENT_AUTH,)
_LOOPBACK = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))


@dataclass(frozen=True, slots=True)
class Validity:
    not_before: datetime
    not_after: datetime

    @classmethod
    def starting(cls, not_before: datetime | None, length: timedelta) -> Validity:
        """`length` from `not_before`, or from now (backdated by the skew allowance)."""
        if length <= timedelta(0):
            raise InvalidArgument(
                f"validity must be positive, got {length}", reason="INVALID_VALIDITY"
            )
        if not_before is None:
            now = datetime.now(UTC)
            return cls(now - CLOCK_SKEW_ALLOWANCE, now + length)
        if not_before.tzinfo is None:
            raise InvalidArgument("not_before must be timezone-aware", reason="INVALID_VALIDITY")
        return cls(not_before, not_before + length)


@dataclass(frozen=True, slots=True)
class LeafSpec:
    """What distinguishes one leaf certificate from another."""

    subject: x509.Name
    names: tuple[x509.GeneralName, ...]
    usages: tuple[ObjectIdentifier, ...]
    validity: Validity


def client_spec(
    spiffe_uri: str, common_name: str, role: str | None, validity: Validity
) -> LeafSpec:
    """A node or user certificate: one URI SAN, clientAuth only, a user's role in O."""
    names = (x509.UniformResourceIdentifier(spiffe_uri),)
    return LeafSpec(_subject(common_name, role), names, _CLIENT_ONLY, validity)


def hub_spec(trust_domain: str, dns_names: list[str], validity: Validity) -> LeafSpec:
    """The hub serves TLS on these names and loopback, and is a TLS client of NATS."""
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    names += [x509.IPAddress(address) for address in _LOOPBACK]
    names.append(x509.UniformResourceIdentifier(f"spiffe://{trust_domain}/hub"))
    return LeafSpec(_subject("hub"), tuple(names), _SERVER_AND_CLIENT, validity)


def nats_server_spec(trust_domain: str, validity: Validity) -> LeafSpec:
    """The embedded nats-server: listens on loopback only, so it is named `localhost` and
    `127.0.0.1`; serverAuth only (it is never a client)."""
    names = (
        x509.DNSName("localhost"),
        x509.IPAddress(_LOOPBACK[0]),
        x509.UniformResourceIdentifier(f"spiffe://{trust_domain}/nats"),
    )
    usages = (ExtendedKeyUsageOID.SERVER_AUTH,)
    return LeafSpec(_subject("nats-server"), names, usages, validity)


def new_private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def build_ca(
    key: ec.EllipticCurvePrivateKey, trust_domain: str, validity: Validity
) -> x509.Certificate:
    name = _subject(f"Sentinel CA {trust_domain}")
    san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"spiffe://{trust_domain}")])
    usage = _key_usage(digital_signature=False, key_cert_sign=True, crl_sign=True)
    builder = (
        _base(name, name, key.public_key(), validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(san, critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    return builder.sign(key, hashes.SHA256())


def build_leaf(
    spec: LeafSpec,
    public_key: ec.EllipticCurvePublicKey,
    issuer: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
) -> x509.Certificate:
    if spec.validity.not_after > issuer.not_valid_after_utc:
        raise InvalidArgument(
            f"requested validity ends {spec.validity.not_after:%Y-%m-%d}, after the CA "
            f"expires ({issuer.not_valid_after_utc:%Y-%m-%d}); ask for a shorter validity",
            reason="VALIDITY_EXCEEDS_CA",
        )
    authority_key_id = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key())
    builder = (
        _base(spec.subject, issuer.subject, public_key, spec.validity)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(spec.usages)), critical=False)
        .add_extension(x509.SubjectAlternativeName(list(spec.names)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(authority_key_id, critical=False)
    )
    return builder.sign(issuer_key, hashes.SHA256())


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def certificate_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _subject(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _base(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    validity: Validity,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity.not_before)
        .not_valid_after(validity.not_after)
    )


def _key_usage(
    *, digital_signature: bool, key_cert_sign: bool = False, crl_sign: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )
