"""The `certs` package and `sentinel certs`: real keys and certificates in tmp_path."""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import certs
from certs import CertLayout
from cli.main import main
from sentinel.errors import ConfigError, FailedPrecondition, InvalidArgument, InvalidNodeId
from sentinel.identity import Kind, Role, identity_from_certificate, identity_from_pem
from sentinel.tls import TlsFiles, check_server_files
from sentinel.v1 import signing_pb2

TD = "sentinel.local"


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "pki"
    certs.init_ca(directory)
    return directory


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def eku(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def san(cert: x509.Certificate) -> x509.SubjectAlternativeName:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def test_public_names_are_locked() -> None:
    assert sorted(certs.__all__) == [
        "CertLayout",
        "NATS_ADMIN",
        "NATS_OBSERVER",
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


def test_init_creates_every_file_and_keys_are_owner_only(ca_dir: Path) -> None:
    layout = CertLayout(ca_dir)
    assert len(layout.init_files) == 16
    for path in layout.init_files:
        assert path.is_file(), path
    keys = sorted(ca_dir.rglob("*.key"))
    assert len(keys) == 8
    assert {mode(key) for key in keys} == {0o600}
    assert mode(layout.signing_dir) == 0o700
    assert not list(ca_dir.rglob("*.tmp"))


def test_ca_is_a_self_signed_p256_ca_valid_ten_years(ca_dir: Path) -> None:
    ca = load_cert(CertLayout(ca_dir).ca_cert)
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign
    public_key = ca.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert public_key.curve.name == "secp256r1"
    ca.verify_directly_issued_by(ca)
    lifetime = ca.not_valid_after_utc - ca.not_valid_before_utc
    assert timedelta(days=3649) < lifetime < timedelta(days=3651)
    assert san(ca).get_values_for_type(x509.UniformResourceIdentifier) == [f"spiffe://{TD}"]


def test_hub_certificate_names_and_usages(ca_dir: Path) -> None:
    hub = load_cert(CertLayout(ca_dir).hub_cert)
    names = san(hub)
    dns = names.get_values_for_type(x509.DNSName)
    assert "localhost" in dns
    assert socket.gethostname().lower() in dns
    assert set(names.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == [f"spiffe://{TD}/hub"]
    assert eku(hub) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}


def test_nats_server_certificate_names_loopback_only_and_serves_only(ca_dir: Path) -> None:
    layout = CertLayout(ca_dir)
    server = load_cert(layout.nats_server_cert)
    server.verify_directly_issued_by(load_cert(layout.ca_cert))
    names = san(server)
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert eku(server) == {ExtendedKeyUsageOID.SERVER_AUTH}


def test_nats_identities_are_users_and_missing_ones_are_issued_again(ca_dir: Path) -> None:
    layout = CertLayout(ca_dir)
    for name, role in ((certs.NATS_OBSERVER, Role.VIEWER), (certs.NATS_ADMIN, Role.ADMIN)):
        identity = identity_from_pem(layout.user_cert(name).read_bytes(), TD)
        assert (identity.kind, identity.name, identity.role) == (Kind.USER, name, role)
    assert certs.ensure_nats_identities(ca_dir) == []  # nothing missing: nothing touched
    kept = layout.user_cert(certs.NATS_ADMIN).read_bytes()
    # A directory made before NATS was locked down has none of them.
    for path in (layout.nats_server_key, layout.user_cert(certs.NATS_OBSERVER)):
        path.unlink()
    written = certs.ensure_nats_identities(ca_dir)
    assert written == [
        layout.nats_server_cert,
        layout.nats_server_key,
        layout.user_cert(certs.NATS_OBSERVER),
        layout.user_key(certs.NATS_OBSERVER),
    ]
    assert all(path.is_file() for path in layout.nats_files)
    assert layout.user_cert(certs.NATS_ADMIN).read_bytes() == kept
    assert mode(layout.nats_server_key) == 0o600


def test_every_issued_certificate_is_signed_by_the_ca(ca_dir: Path) -> None:
    layout = CertLayout(ca_dir)
    node_cert, _ = certs.issue_node_certificate(ca_dir, "gpu-01")
    ca = load_cert(layout.ca_cert)
    for path in (layout.hub_cert, layout.user_cert("admin"), node_cert):
        leaf = load_cert(path)
        leaf.verify_directly_issued_by(ca)
        assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_admin_identity(ca_dir: Path) -> None:
    pem = CertLayout(ca_dir).user_cert("admin").read_bytes()
    identity = identity_from_pem(pem, TD)
    assert (identity.kind, identity.name, identity.role) == (Kind.USER, "admin", Role.ADMIN)
    subject = x509.load_pem_x509_certificate(pem).subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "admin"
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "admin"


def test_node_certificate_identity_and_key(ca_dir: Path) -> None:
    cert_path, key_path = certs.issue_node_certificate(ca_dir, "gpu-01")
    assert (cert_path, key_path) == (
        CertLayout(ca_dir).node_cert("gpu-01"),
        CertLayout(ca_dir).node_key("gpu-01"),
    )
    identity = identity_from_pem(cert_path.read_bytes(), TD)
    assert (identity.role, identity.node_id) == (Role.NODE, "gpu-01")
    assert identity.spiffe_id == f"spiffe://{TD}/node/gpu-01"
    cert = load_cert(cert_path)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "gpu-01"
    assert eku(cert) == {ExtendedKeyUsageOID.CLIENT_AUTH}
    assert mode(key_path) == 0o600
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert key.public_key() == cert.public_key()


def test_validity_window_is_injectable(ca_dir: Path) -> None:
    start = datetime(2030, 1, 1, tzinfo=UTC)
    cert_path, _ = certs.issue_node_certificate(
        ca_dir, "gpu-01", validity=timedelta(days=7), not_before=start
    )
    cert = load_cert(cert_path)
    assert cert.not_valid_before_utc == start
    assert cert.not_valid_after_utc == start + timedelta(days=7)


@pytest.mark.parametrize(
    ("validity", "not_before", "reason"),
    [
        (timedelta(0), None, "INVALID_VALIDITY"),
        (timedelta(days=1), datetime(2030, 1, 1), "INVALID_VALIDITY"),  # naive
        (timedelta(days=3660), None, "VALIDITY_EXCEEDS_CA"),
    ],
)
def test_bad_validity_is_refused(
    ca_dir: Path, validity: timedelta, not_before: datetime | None, reason: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        certs.issue_node_certificate(ca_dir, "gpu-01", validity=validity, not_before=not_before)
    assert caught.value.reason == reason
    assert not CertLayout(ca_dir).nodes_dir.exists()


def test_reissue_renews_the_pair(ca_dir: Path) -> None:
    cert_path, key_path = certs.issue_node_certificate(ca_dir, "gpu-01")
    first_cert, first_key = cert_path.read_bytes(), key_path.read_bytes()
    certs.issue_node_certificate(ca_dir, "gpu-01")
    assert cert_path.read_bytes() != first_cert
    assert key_path.read_bytes() != first_key
    assert mode(key_path) == 0o600


@pytest.mark.parametrize(
    ("role", "expected"), [("viewer", Role.VIEWER), ("operator", Role.OPERATOR)]
)
def test_cli_issues_user_certificates(
    ca_dir: Path, capsys: pytest.CaptureFixture[str], role: str, expected: Role
) -> None:
    assert main(["certs", "issue", "--dir", str(ca_dir), "--user", "alice", "--role", role]) == 0
    layout = CertLayout(ca_dir)
    assert capsys.readouterr().out.splitlines() == [
        str(layout.user_cert("alice")),
        str(layout.user_key("alice")),
    ]
    identity = identity_from_pem(layout.user_cert("alice").read_bytes(), TD)
    assert (identity.kind, identity.name, identity.role) == (Kind.USER, "alice", expected)


def test_cli_renews_the_hub_certificate(ca_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    layout = CertLayout(ca_dir)
    before = x509.load_pem_x509_certificate(layout.hub_cert.read_bytes())
    ca_before = layout.ca_cert.read_bytes()
    assert main(["certs", "issue", "--dir", str(ca_dir), "--hub", "--days", "90"]) == 0
    assert capsys.readouterr().out.splitlines() == [str(layout.hub_cert), str(layout.hub_key)]
    after = x509.load_pem_x509_certificate(layout.hub_cert.read_bytes())
    assert after.serial_number != before.serial_number
    left = after.not_valid_after_utc - datetime.now(UTC)
    assert timedelta(days=90) - timedelta(minutes=1) < left <= timedelta(days=90)
    san = x509.SubjectAlternativeName
    assert after.extensions.get_extension_for_class(san).value == (
        before.extensions.get_extension_for_class(san).value
    )
    check_server_files(TlsFiles.load(layout.ca_cert, layout.hub_cert, layout.hub_key))
    assert mode(layout.hub_key) == 0o600
    assert layout.ca_cert.read_bytes() == ca_before
    # --role belongs to --user only: one clear line, nothing written.
    assert main(["certs", "issue", "--dir", str(ca_dir), "--hub", "--role", "admin"]) == 1
    assert "--role applies to --user only" in capsys.readouterr().err
    assert x509.load_pem_x509_certificate(layout.hub_cert.read_bytes()) == after


def test_cli_init_prints_one_line_per_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["certs", "init", "--dir", str(tmp_path / "pki")]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed == [str(path) for path in CertLayout(tmp_path / "pki").init_files]


def test_init_twice_refuses_and_keeps_the_first_ca(
    ca_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = CertLayout(ca_dir)
    before = {path: path.read_bytes() for path in layout.init_files}
    assert main(["certs", "init", "--dir", str(ca_dir)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert err[0].startswith("sentinel: error: ") and "already exists" in err[0]
    assert {path: path.read_bytes() for path in layout.init_files} == before
    with pytest.raises(FailedPrecondition) as caught:
        certs.init_ca(ca_dir)
    assert caught.value.reason == "CA_EXISTS"


@pytest.mark.parametrize("node_id", ["Bad_Node", "-x", "a" * 64, "a.b", ""])
def test_cli_refuses_invalid_node_ids(
    ca_dir: Path, capsys: pytest.CaptureFixture[str], node_id: str
) -> None:
    assert main(["certs", "issue", "--dir", str(ca_dir), f"--node={node_id}"]) == 1
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert len(err) == 1
    assert err[0].startswith("sentinel: error: invalid node id")
    assert captured.out == ""
    assert not CertLayout(ca_dir).nodes_dir.exists()


def test_api_refuses_invalid_node_id(ca_dir: Path) -> None:
    with pytest.raises(InvalidNodeId):
        certs.issue_node_certificate(ca_dir, "../escape")


def test_invalid_role_is_refused(ca_dir: Path) -> None:
    with pytest.raises(InvalidArgument) as caught:
        certs.issue_user_certificate(ca_dir, "alice", "root")
    assert caught.value.reason == "INVALID_ROLE"
    assert not CertLayout(ca_dir).user_cert("alice").exists()


def test_cli_user_needs_a_role(ca_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["certs", "issue", "--dir", str(ca_dir), "--user", "alice"]) == 1
    assert capsys.readouterr().err == "sentinel: error: --role is required with --user\n"


def test_issue_without_ca_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        certs.issue_node_certificate(tmp_path, "gpu-01")
    assert caught.value.reason == "CA_MISSING"
    assert not CertLayout(tmp_path).nodes_dir.exists()


def test_custom_trust_domain_round_trip(tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    assert main(["certs", "init", "--dir", str(directory), "--trust-domain", "example.org"]) == 0
    assert main(["certs", "issue", "--dir", str(directory), "--node", "gpu-07"]) == 0
    assert certs.load_trust_domain(directory) == "example.org"
    pem = CertLayout(directory).node_cert("gpu-07").read_bytes()
    assert identity_from_pem(pem, "example.org").spiffe_id == "spiffe://example.org/node/gpu-07"


def test_invalid_trust_domain_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "pki"
    assert main(["certs", "init", "--dir", str(directory), "--trust-domain", "Bad_Domain"]) == 1
    assert capsys.readouterr().err == "sentinel: error: invalid trust domain 'Bad_Domain'\n"
    assert not directory.exists()


def test_signing_keys_and_key_ids(ca_dir: Path) -> None:
    layout = CertLayout(ca_dir)
    for purpose, key_path, pub_path in (
        ("root", layout.root_key, layout.root_pub),
        ("command", layout.command_key, layout.command_pub),
    ):
        private = certs.load_signing_key(key_path)
        public = serialization.load_pem_public_key(pub_path.read_bytes())
        assert isinstance(public, Ed25519PublicKey)
        assert public == private.public_key()
        signer = certs.load_signer(key_path, getattr(signing_pb2, f"KEY_PURPOSE_{purpose.upper()}"))
        assert re.fullmatch(rf"{purpose}-[0-9a-f]{{16}}", signer.key_id)
    root = certs.load_signer(layout.root_key, signing_pb2.KEY_PURPOSE_ROOT)
    command = certs.load_signer(layout.command_key, signing_pb2.KEY_PURPOSE_ROOT)
    assert root.key_id != command.key_id


def test_load_signing_key_refuses_a_non_ed25519_key(ca_dir: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        certs.load_signing_key(CertLayout(ca_dir).ca_key)
    assert caught.value.reason == "INVALID_SIGNING_KEY"


def _tls_context(purpose: ssl.Purpose, layout: CertLayout, cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(purpose, cafile=str(layout.ca_cert))
    context.load_cert_chain(cert, key)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def test_hub_and_node_certificates_complete_a_mutual_tls_handshake(ca_dir: Path) -> None:
    layout = CertLayout(ca_dir)
    node_cert, node_key = certs.issue_node_certificate(ca_dir, "gpu-01")
    server_context = _tls_context(ssl.Purpose.CLIENT_AUTH, layout, layout.hub_cert, layout.hub_key)
    client_context = _tls_context(ssl.Purpose.SERVER_AUTH, layout, node_cert, node_key)
    server_in, server_out, client_in, client_out = (ssl.MemoryBIO() for _ in range(4))
    server = server_context.wrap_bio(server_in, server_out, server_side=True)
    client = client_context.wrap_bio(client_in, client_out, server_hostname="localhost")
    done = {server: False, client: False}
    for _ in range(10):  # a TLS 1.3 handshake needs about three flights
        for tls in (client, server):
            try:
                tls.do_handshake()
                done[tls] = True
            except ssl.SSLWantReadError:
                pass
        server_in.write(client_out.read())
        client_in.write(server_out.read())
    assert all(done.values())
    peer = server.getpeercert(binary_form=True)
    assert peer is not None
    identity = identity_from_certificate(x509.load_der_x509_certificate(peer), TD)
    assert identity.node_id == "gpu-01"
