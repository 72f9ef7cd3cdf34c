"""Identities, taken only from X.509 certificates.

Every peer has exactly one URI SAN of the form
`spiffe://<trust-domain>/node/<node-id>` or `spiffe://<trust-domain>/user/<name>`.
A user's role travels in the certificate subject's Organization (O) attribute,
as Kubernetes carries groups: `O=viewer`, `O=operator`, `O=admin` or `O=system`.
A node's role is always `node`; an O attribute on a node certificate is ignored.
Anything else (no URI SAN, several, a foreign trust domain, an unknown role) is
not an identity, and the caller is refused.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from cryptography import x509
from cryptography.x509.oid import NameOID

from sentinel.errors import InvalidArgument, InvalidNodeId, PermissionDenied

DEFAULT_TRUST_DOMAIN = "sentinel.local"

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_USER_NAME = re.compile(r"[a-z0-9]([-a-z0-9._]{0,61}[a-z0-9])?")
_TRUST_DOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


class Role(enum.IntEnum):
    """Roles, ordered so that a higher user role includes the lower ones."""

    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3
    SYSTEM = 4
    NODE = 100  # not part of the user ladder: a node may only call AgentService


USER_ROLES: Mapping[str, Role] = MappingProxyType(
    {"viewer": Role.VIEWER, "operator": Role.OPERATOR, "admin": Role.ADMIN, "system": Role.SYSTEM}
)


class Kind(enum.StrEnum):
    """What a SPIFFE path names: an edge node or a human (or hub-internal) user."""

    NODE = "node"
    USER = "user"


def validate_node_id(node_id: str) -> str:
    """Return `node_id` if it is a DNS label (it becomes a NATS subject token), else raise."""
    if not _DNS_LABEL.fullmatch(node_id):
        raise InvalidNodeId(
            f"invalid node id {node_id!r}: a node id must be a DNS label "
            "(lower-case letters, digits and '-', 1-63 characters, starting and ending "
            "with a letter or digit)",
            node_id=node_id,
        )
    return node_id


def validate_user_name(name: str) -> str:
    if not _USER_NAME.fullmatch(name):
        raise InvalidArgument(
            f"invalid user name {name!r}: use lower-case letters, digits, '-', '.' or '_', "
            "1-63 characters, starting and ending with a letter or digit",
            reason="INVALID_USER_NAME",
        )
    return name


def validate_trust_domain(domain: str) -> str:
    if not _TRUST_DOMAIN.fullmatch(domain):
        raise InvalidArgument(f"invalid trust domain {domain!r}", reason="INVALID_TRUST_DOMAIN")
    return domain


@dataclass(frozen=True, slots=True)
class Identity:
    trust_domain: str
    kind: Kind
    name: str
    role: Role

    @property
    def spiffe_id(self) -> str:
        return spiffe_id(self.trust_domain, self.kind, self.name)

    @property
    def node_id(self) -> str | None:
        return self.name if self.kind is Kind.NODE else None

    def __str__(self) -> str:
        return self.spiffe_id


def spiffe_id(trust_domain: str, kind: Kind, name: str) -> str:
    return f"spiffe://{trust_domain}/{kind.value}/{name}"


def parse_spiffe_id(uri: str) -> tuple[str, Kind, str]:
    """Split `spiffe://td/<kind>/<name>`; raise PermissionDenied if it is anything else."""
    match = re.fullmatch(r"spiffe://([^/]+)/(node|user)/([^/]+)", uri)
    if match is None:
        raise PermissionDenied(f"not a Sentinel identity: {uri!r}", reason="BAD_IDENTITY")
    domain, kind, name = match.groups()
    try:
        if kind == Kind.NODE:
            validate_node_id(name)
        else:
            validate_user_name(name)
    except InvalidArgument as exc:
        raise PermissionDenied(str(exc), reason="BAD_IDENTITY") from exc
    return domain, Kind(kind), name


def identity_from_certificate(cert: x509.Certificate, trust_domain: str) -> Identity:
    """The identity a verified peer certificate carries, for `trust_domain` only."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    spiffe = [u for u in uris if u.startswith("spiffe://")]
    if len(spiffe) != 1:
        raise PermissionDenied(
            f"certificate must carry exactly one spiffe:// URI SAN, found {len(spiffe)}",
            reason="BAD_IDENTITY",
        )
    domain, kind, name = parse_spiffe_id(spiffe[0])
    if domain != trust_domain:
        raise PermissionDenied(
            f"identity {spiffe[0]} is outside trust domain {trust_domain}",
            reason="FOREIGN_TRUST_DOMAIN",
        )
    if kind is Kind.NODE:
        return Identity(domain, kind, name, Role.NODE)
    orgs = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    roles = [USER_ROLES[o] for o in orgs if isinstance(o, str) and o in USER_ROLES]
    if len(roles) != 1:
        raise PermissionDenied(
            f"user certificate {spiffe[0]} must carry exactly one role in its subject O",
            reason="BAD_IDENTITY",
        )
    return Identity(domain, kind, name, roles[0])


def identity_from_pem(pem: bytes, trust_domain: str) -> Identity:
    return identity_from_certificate(x509.load_pem_x509_certificate(pem), trust_domain)


__all__ = [
    "DEFAULT_TRUST_DOMAIN",
    "USER_ROLES",
    "Identity",
    "Kind",
    "Role",
    "identity_from_certificate",
    "identity_from_pem",
    "parse_spiffe_id",
    "spiffe_id",
    "validate_node_id",
    "validate_trust_domain",
    "validate_user_name",
]
