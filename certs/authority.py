"""The certificate authority of one trust domain: create it once, then issue from it.

Invariants: `init_ca` never replaces an existing CA or signing key, and checks
before it writes anything, so a refused init leaves the directory untouched;
the trust domain is read back from the CA certificate, never passed around
separately; a name is validated before any file is written; re-issuing a node
or user certificate replaces the previous pair (that is a renewal).
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from certs import builder
from certs.layout import NATS_ADMIN, NATS_OBSERVER, CertLayout
from certs.signing_keys import write_signing_keys
from certs.writer import ensure_directory, write_public, write_secret
from sentinel.errors import ConfigError, FailedPrecondition, InvalidArgument
from sentinel.identity import (
    DEFAULT_TRUST_DOMAIN,
    USER_ROLES,
    Kind,
    spiffe_id,
    validate_trust_domain,
)

# The role each fixed NATS identity has at the hub's gRPC API (its NATS rights are set
# by hub.nats_access, by identity, not by role).
NATS_USERS = {NATS_OBSERVER: "viewer", NATS_ADMIN: "admin"}

_DNS_NAME = re.compile(
    r"(?=.{1,253}$)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)*"
    r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
)


@dataclass(frozen=True, slots=True)
class Authority:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    trust_domain: str


def init_ca(directory: Path, trust_domain: str = DEFAULT_TRUST_DOMAIN) -> None:
    """Create the CA, the hub, admin and NATS certificates and the signing keys under
    `directory`."""
    validate_trust_domain(trust_domain)
    layout = CertLayout(directory)
    _refuse_existing(layout)
    ensure_directory(directory)
    key = builder.new_private_key()
    ca_validity = builder.Validity.starting(None, builder.CA_VALIDITY)
    authority = Authority(builder.build_ca(key, trust_domain, ca_validity), key, trust_domain)
    write_secret(layout.ca_key, builder.private_key_pem(key), overwrite=False)
    write_public(layout.ca_cert, builder.certificate_pem(authority.cert))
    leaf_validity = builder.Validity.starting(None, builder.LEAF_VALIDITY)
    hub = builder.hub_spec(trust_domain, _hub_dns_names(), leaf_validity)
    _issue(authority, hub, layout.hub_cert, layout.hub_key)
    _issue_user(layout, authority, "admin", "admin", leaf_validity)
    _issue_nats_identities(layout, authority, leaf_validity, only_missing=False)
    write_signing_keys(layout)


def ensure_nats_identities(directory: Path) -> list[Path]:
    """Issue the NATS server certificate and the fixed NATS identities that are missing
    (a directory made before NATS was locked down has none); return the files written."""
    layout = CertLayout(directory)
    if all(path.exists() for path in layout.nats_files):
        return []
    window = builder.Validity.starting(None, builder.LEAF_VALIDITY)
    return _issue_nats_identities(layout, load_authority(layout), window, only_missing=True)


def issue_hub_certificate(
    directory: Path, *, validity: timedelta = builder.LEAF_VALIDITY
) -> tuple[Path, Path]:
    """Replace `hub.crt|key` with a new pair; a running hub serves it to new connections
    (see `sentinel.tls.ReloadingServerCredentials`). Return (certificate path, key path)."""
    layout = CertLayout(directory)
    window = builder.Validity.starting(None, validity)
    authority = load_authority(layout)
    spec = builder.hub_spec(authority.trust_domain, _hub_dns_names(), window)
    _issue(authority, spec, layout.hub_cert, layout.hub_key)
    return layout.hub_cert, layout.hub_key


def issue_node_certificate(
    directory: Path,
    node_id: str,
    *,
    validity: timedelta = builder.LEAF_VALIDITY,
    not_before: datetime | None = None,
) -> tuple[Path, Path]:
    """Issue `nodes/<node_id>.crt|.key`; return (certificate path, key path)."""
    layout = CertLayout(directory)
    cert_path, key_path = layout.node_cert(node_id), layout.node_key(node_id)
    window = builder.Validity.starting(not_before, validity)
    authority = load_authority(layout)
    uri = spiffe_id(authority.trust_domain, Kind.NODE, node_id)
    _issue(authority, builder.client_spec(uri, node_id, None, window), cert_path, key_path)
    return cert_path, key_path


def issue_user_certificate(
    directory: Path,
    name: str,
    role: str,
    *,
    validity: timedelta = builder.LEAF_VALIDITY,
    not_before: datetime | None = None,
) -> tuple[Path, Path]:
    """Issue `users/<name>.crt|.key` with `role` in the subject O; return (cert, key) paths."""
    layout = CertLayout(directory)
    layout.user_cert(name)  # validates the name before anything is read or written
    if role not in USER_ROLES:
        raise InvalidArgument(
            f"invalid role {role!r}: choose one of {', '.join(USER_ROLES)}",
            reason="INVALID_ROLE",
        )
    window = builder.Validity.starting(not_before, validity)
    return _issue_user(layout, load_authority(layout), name, role, window)


def load_trust_domain(directory: Path) -> str:
    """The trust domain named by the `spiffe://<trust-domain>` URI SAN of `ca.crt`."""
    layout = CertLayout(directory)
    return _trust_domain_of(_load_ca_certificate(layout), layout.ca_cert)


def trust_domain_of_pem(ca_pem: bytes) -> str:
    """The trust domain a CA certificate (PEM) names, e.g. one received at enrollment."""
    try:
        cert = x509.load_pem_x509_certificate(ca_pem)
    except ValueError as exc:
        raise ConfigError("not a PEM CA certificate", reason="CA_INVALID") from exc
    return _trust_domain_of(cert, Path("<received CA>"))


def _trust_domain_of(cert: x509.Certificate, path: Path) -> str:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = x509.SubjectAlternativeName([])
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    domains = [u.removeprefix("spiffe://") for u in uris if u.startswith("spiffe://")]
    if len(domains) != 1 or "/" in domains[0]:
        raise ConfigError(
            f"{path} must carry exactly one spiffe://<trust-domain> URI SAN", reason="CA_INVALID"
        )
    return validate_trust_domain(domains[0])


def _refuse_existing(layout: CertLayout) -> None:
    for path in (layout.ca_key, layout.ca_cert, layout.root_key, layout.command_key):
        if path.exists():
            raise FailedPrecondition(
                f"{path} already exists; refusing to replace the CA in {layout.directory}",
                reason="CA_EXISTS",
                path=path,
            )


def _load_ca_certificate(layout: CertLayout) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(layout.ca_cert.read_bytes())
    except FileNotFoundError as exc:
        raise ConfigError(
            f"no CA in {layout.directory}: run `sentinel certs init --dir {layout.directory}`",
            reason="CA_MISSING",
        ) from exc
    except ValueError as exc:
        raise ConfigError(
            f"{layout.ca_cert} is not a PEM certificate", reason="CA_INVALID"
        ) from exc


def load_authority(layout: CertLayout) -> Authority:
    """The CA certificate, its key (checked to match) and its trust domain."""
    cert = _load_ca_certificate(layout)
    trust_domain = _trust_domain_of(cert, layout.ca_cert)
    try:
        key = serialization.load_pem_private_key(layout.ca_key.read_bytes(), password=None)
    except FileNotFoundError as exc:
        raise ConfigError(f"CA key {layout.ca_key} is missing", reason="CA_MISSING") from exc
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{layout.ca_key} is not a PEM key", reason="CA_INVALID") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{layout.ca_key} is not an ECDSA key", reason="CA_INVALID")
    if key.public_key() != cert.public_key():
        raise ConfigError(f"{layout.ca_key} does not match {layout.ca_cert}", reason="CA_INVALID")
    return Authority(cert, key, trust_domain)


def _issue_user(
    layout: CertLayout, authority: Authority, name: str, role: str, window: builder.Validity
) -> tuple[Path, Path]:
    uri = spiffe_id(authority.trust_domain, Kind.USER, name)
    cert_path, key_path = layout.user_cert(name), layout.user_key(name)
    _issue(authority, builder.client_spec(uri, name, role, window), cert_path, key_path)
    return cert_path, key_path


def _issue_nats_identities(
    layout: CertLayout, authority: Authority, window: builder.Validity, *, only_missing: bool
) -> list[Path]:
    written: list[Path] = []
    server = (layout.nats_server_cert, layout.nats_server_key)
    if not only_missing or not all(path.exists() for path in server):
        _issue(authority, builder.nats_server_spec(authority.trust_domain, window), *server)
        written += server
    for name, role in NATS_USERS.items():
        pair = (layout.user_cert(name), layout.user_key(name))
        if not only_missing or not all(path.exists() for path in pair):
            written += _issue_user(layout, authority, name, role, window)
    return written


def _issue(authority: Authority, spec: builder.LeafSpec, cert_path: Path, key_path: Path) -> None:
    key = builder.new_private_key()
    cert = builder.build_leaf(spec, key.public_key(), authority.cert, authority.key)
    ensure_directory(cert_path.parent)
    write_secret(key_path, builder.private_key_pem(key), overwrite=True)
    write_public(cert_path, builder.certificate_pem(cert))


def _hub_dns_names() -> list[str]:
    """localhost, this host's name and its FQDN: the names clients may dial the hub by."""
    names = ["localhost"]
    for candidate in (socket.gethostname(), socket.getfqdn()):
        name = candidate.lower().rstrip(".")
        if _DNS_NAME.fullmatch(name) and name not in names:
            names.append(name)
    return names
