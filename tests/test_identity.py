"""sentinel.identity: who a certificate says its holder is, and what it is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sentinel.errors import InvalidNodeId, PermissionDenied
from sentinel.identity import (
    USER_ROLES,
    Kind,
    Role,
    identity_from_certificate,
    parse_spiffe_id,
    spiffe_id,
    validate_node_id,
)

TD = "sentinel.local"


def make_cert(uris: list[str], orgs: tuple[str, ...] = (), cn: str = "x") -> x509.Certificate:
    """A self-signed certificate: identity parsing does not verify signatures, TLS does."""
    key = ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    attributes += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    name = x509.Name(attributes)
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
    )
    if uris:
        sans = [x509.UniformResourceIdentifier(u) for u in uris]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256())


def refusal(cert: x509.Certificate) -> str:
    with pytest.raises(PermissionDenied) as caught:
        identity_from_certificate(cert, TD)
    return caught.value.reason


def test_node_identity_ignores_subject_o() -> None:
    cert = make_cert([f"spiffe://{TD}/node/gpu-01"], orgs=("admin",))
    identity = identity_from_certificate(cert, TD)
    assert (identity.kind, identity.role, identity.node_id) == (Kind.NODE, Role.NODE, "gpu-01")
    assert str(identity) == f"spiffe://{TD}/node/gpu-01"


def test_user_identity_takes_role_from_subject_o() -> None:
    identity = identity_from_certificate(make_cert([f"spiffe://{TD}/user/bob"], ("operator",)), TD)
    assert (identity.kind, identity.name, identity.role) == (Kind.USER, "bob", Role.OPERATOR)
    assert identity.node_id is None


def test_foreign_trust_domain_is_refused() -> None:
    assert refusal(make_cert(["spiffe://evil.example/node/gpu-01"])) == "FOREIGN_TRUST_DOMAIN"


@pytest.mark.parametrize(
    "uris",
    [
        [],
        ["https://example.org/node/gpu-01"],
        [f"spiffe://{TD}/node/a", f"spiffe://{TD}/node/b"],
        [f"spiffe://{TD}/hub"],
        [f"spiffe://{TD}/node/Bad_Node"],
        [f"spiffe://{TD}/node/a/b"],
    ],
)
def test_anything_but_one_valid_spiffe_id_is_refused(uris: list[str]) -> None:
    assert refusal(make_cert(uris)) == "BAD_IDENTITY"


@pytest.mark.parametrize("orgs", [(), ("root",), ("viewer", "admin")])
def test_user_without_exactly_one_known_role_is_refused(orgs: tuple[str, ...]) -> None:
    assert refusal(make_cert([f"spiffe://{TD}/user/bob"], orgs)) == "BAD_IDENTITY"


def test_user_roles_are_ordered_and_exclude_node() -> None:
    assert Role.VIEWER < Role.OPERATOR < Role.ADMIN < Role.SYSTEM
    assert sorted(USER_ROLES.values()) == [Role.VIEWER, Role.OPERATOR, Role.ADMIN, Role.SYSTEM]
    assert Role.NODE not in USER_ROLES.values()


@pytest.mark.parametrize("node_id", ["a", "gpu-01", "0", "a" * 63])
def test_valid_node_ids(node_id: str) -> None:
    assert validate_node_id(node_id) == node_id


@pytest.mark.parametrize("node_id", ["", "Bad_Node", "-x", "x-", "a.b", "a" * 64, "gpu 1"])
def test_invalid_node_ids(node_id: str) -> None:
    with pytest.raises(InvalidNodeId) as caught:
        validate_node_id(node_id)
    assert caught.value.reason == "INVALID_NODE_ID"
    assert str(caught.value).startswith("invalid node id")


def test_spiffe_id_round_trip() -> None:
    uri = spiffe_id(TD, Kind.NODE, "gpu-01")
    assert parse_spiffe_id(uri) == (TD, Kind.NODE, "gpu-01")
