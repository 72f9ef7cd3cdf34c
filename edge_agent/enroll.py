"""`sentinel agent enroll`: join a fleet with a bootstrap token (kubeadm's join, for agents).

1. Open TLS to the hub's enrollment port without trusting anything yet, take the
   certificate chain it sends, and find in it the CA whose SubjectPublicKeyInfo hashes
   to `--ca-hash`, and which signed the hub's certificate. Nothing else is trusted.
2. Make the node's key here (it never leaves this machine) and a CSR for
   `spiffe://<trust-domain>/node/<id>`.
3. Call `EnrollmentService/Enroll` over TLS verified against that CA, with the token;
   with manual approval, poll until an admin approves.
4. Check the answer (the certificate is for our key and our id, from the pinned CA; the
   keyset verifies against the root key; the policy against the keyset), then write
   everything under the data directory, where `sentinel agent run` finds it.

Invariants: nothing is written before every check passed; a data directory that
already holds a node certificate is never overwritten.
"""

from __future__ import annotations

import hmac
import logging
import socket
import ssl
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import certs
from certs.builder import private_key_pem
from certs.writer import ensure_directory, write_public, write_secret
from edge_agent.policy_cache import PolicyCache
from edge_agent.trust import TrustStore
from sentinel.errors import (
    ConfigError,
    FailedPrecondition,
    PermissionDenied,
    SentinelError,
    Unavailable,
)
from sentinel.identity import Kind, identity_from_certificate, validate_node_id
from sentinel.rpc_errors import describe, reason_of
from sentinel.tls import CLIENT_CHANNEL_OPTIONS
from sentinel.v1 import enrollment_pb2, enrollment_pb2_grpc

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
ISSUED = enrollment_pb2.ENROLLMENT_STATE_ISSUED
PENDING = enrollment_pb2.ENROLLMENT_STATE_PENDING_APPROVAL


@dataclass(frozen=True, slots=True)
class Enrolled:
    node_id: str
    hub_address: str
    certs_dir: Path
    serial: str


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"invalid address {address!r}: expected HOST:PORT", reason="BAD_ADDRESS")
    return host.strip("[]"), int(port)


def fetch_pinned_ca(address: str, ca_hash: str) -> bytes:
    """The PEM of the CA in the chain the enrollment port sends whose SPKI hash is
    `ca_hash`, after checking that it signed the certificate the port presented."""
    if not ca_hash.startswith("sha256:") or len(ca_hash) != 71:
        raise ConfigError(
            f"invalid --ca-hash {ca_hash!r}: expected sha256:<64 hex digits>",
            reason="BAD_CA_HASH",
        )
    host, port = split_address(address)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # nothing is trusted until the hash matches
    context.set_alpn_protocols(["h2"])
    try:
        with (
            socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            chain = [x509.load_der_x509_certificate(der) for der in _unverified_chain(tls)]
    except (OSError, ssl.SSLError) as exc:
        raise Unavailable(
            f"cannot reach the enrollment port {address}: {exc}", reason="HUB_UNREACHABLE"
        ) from exc
    if not chain:
        raise PermissionDenied(f"{address} sent no certificate", reason="CA_HASH_MISMATCH")
    leaf = chain[0]
    for candidate in chain[1:]:
        pem = candidate.public_bytes(serialization.Encoding.PEM)
        if hmac.compare_digest(certs.ca_hash(pem), ca_hash):
            try:
                leaf.verify_directly_issued_by(candidate)
            except Exception as exc:  # any failure: the pinned CA did not sign this server
                raise PermissionDenied(
                    f"the certificate {address} presented is not signed by the pinned CA",
                    reason="CA_HASH_MISMATCH",
                ) from exc
            return pem
    raise PermissionDenied(
        f"{address} does not present a CA with hash {ca_hash}: wrong hub, or a "
        "machine in the middle; check the hash with the hub's admin",
        reason="CA_HASH_MISMATCH",
    )


def _unverified_chain(tls: ssl.SSLSocket) -> list[bytes]:
    """DER certificates as the peer sent them. Python 3.13 makes this public; before it,
    the same method lives on the C object."""
    method = getattr(tls, "get_unverified_chain", None)
    if method is None:
        method = tls._sslobj.get_unverified_chain  # type: ignore[attr-defined]
    chain = method() or []
    return [c if isinstance(c, bytes) else c.public_bytes(ssl._ssl.ENCODING_DER) for c in chain]  # type: ignore[attr-defined]


def enroll(
    address: str,
    token: str,
    ca_hash: str,
    node_id: str,
    data_dir: Path,
    *,
    labels: Mapping[str, str] | None = None,
    wait_s: float = 3600.0,
    poll_s: float = 2.0,
    on_pending: Callable[[str], None] = lambda enrollment_id: None,
) -> Enrolled:
    validate_node_id(node_id)
    certs_dir = data_dir / "certs"
    layout = certs.CertLayout(certs_dir)
    existing = sorted(layout.nodes_dir.glob("*.crt")) if layout.nodes_dir.is_dir() else []
    if existing:
        raise FailedPrecondition(
            f"{data_dir} is already enrolled ({existing[0].name}); use another --data-dir",
            reason="ALREADY_ENROLLED",
        )
    ca_pem = fetch_pinned_ca(address, ca_hash)
    trust_domain = certs.trust_domain_of_pem(ca_pem)
    key, csr_pem = certs.new_node_request(trust_domain, node_id)
    credentials = grpc.ssl_channel_credentials(root_certificates=ca_pem)
    request = enrollment_pb2.EnrollRequest(token=token, csr_pem=csr_pem, labels=labels or {})
    deadline = time.monotonic() + wait_s
    with grpc.secure_channel(address, credentials, options=CLIENT_CHANNEL_OPTIONS) as channel:
        stub = enrollment_pb2_grpc.EnrollmentServiceStub(channel)
        response = _call(stub, request)
        while response.enrollment.state == PENDING:
            if not request.enrollment_id:
                request.enrollment_id = response.enrollment.enrollment_id
                on_pending(request.enrollment_id)
            if time.monotonic() >= deadline:
                raise Unavailable(
                    f"enrollment {request.enrollment_id} was not approved in {wait_s:.0f} s",
                    reason="APPROVAL_TIMEOUT",
                )
            time.sleep(poll_s)
            response = _call(stub, request)
    if response.enrollment.state != ISSUED or not response.certificate_pem:
        raise PermissionDenied("the hub did not issue a certificate", reason="ENROLLMENT_DENIED")
    cert = _check_certificate(response.certificate_pem, key.public_key(), ca_pem, trust_domain)
    if identity_from_certificate(cert, trust_domain).name != node_id:
        raise PermissionDenied(
            "the hub issued a certificate for another node id", reason="ENROLLMENT_MISMATCH"
        )
    if ca_pem.strip() not in response.ca_bundle_pem:
        raise PermissionDenied(
            "the CA bundle from the hub does not hold the pinned CA", reason="CA_HASH_MISMATCH"
        )
    _write(layout, data_dir, node_id, key, response)
    log.info("enrolled as node %s (certificate %s)", node_id, certs.serial_hex(cert))
    return Enrolled(node_id, response.hub_address, certs_dir, certs.serial_hex(cert))


def _call(
    stub: enrollment_pb2_grpc.EnrollmentServiceStub, request: enrollment_pb2.EnrollRequest
) -> enrollment_pb2.EnrollResponse:
    try:
        response: enrollment_pb2.EnrollResponse = stub.Enroll(request, timeout=30)
    except grpc.RpcError as exc:
        code = exc.code() if isinstance(exc, grpc.Call) else None
        reason = reason_of(exc) or "ENROLLMENT_REFUSED"
        if code == grpc.StatusCode.UNAVAILABLE:
            raise Unavailable(f"enrollment failed: {describe(exc)}", reason=reason) from exc
        raise PermissionDenied(f"enrollment refused: {describe(exc)}", reason=reason) from exc
    return response


def _check_certificate(
    pem: bytes, public_key: ec.EllipticCurvePublicKey, ca_pem: bytes, trust_domain: str
) -> x509.Certificate:
    cert = x509.load_pem_x509_certificate(pem)
    ca = x509.load_pem_x509_certificate(ca_pem)
    try:
        cert.verify_directly_issued_by(ca)
    except Exception as exc:  # any failure: not from the pinned CA
        raise PermissionDenied(
            "the issued certificate is not from the pinned CA", reason="ENROLLMENT_MISMATCH"
        ) from exc
    if cert.public_key() != public_key:
        raise PermissionDenied(
            "the issued certificate is not for this node's key", reason="ENROLLMENT_MISMATCH"
        )
    if identity_from_certificate(cert, trust_domain).kind is not Kind.NODE:
        raise PermissionDenied(
            "the hub issued a non-node certificate", reason="ENROLLMENT_MISMATCH"
        )
    return cert


def _write(
    layout: certs.CertLayout,
    data_dir: Path,
    node_id: str,
    key: ec.EllipticCurvePrivateKey,
    response: enrollment_pb2.EnrollResponse,
) -> None:
    """Verify the keyset and policy exactly as the agent will (in a scratch directory),
    then write every file."""
    now = datetime.now(UTC)
    keyset = response.keyset.SerializeToString()
    bundle = response.policy.SerializeToString()
    ensure_directory(data_dir)
    with tempfile.TemporaryDirectory(dir=data_dir, prefix=".enroll-") as scratch:
        root = Path(scratch) / "root.pub"
        root.write_bytes(response.root_public_key)
        try:
            trust = TrustStore.open(Path(scratch), root)
            trust.offer(keyset, now)
            PolicyCache.open(Path(scratch), trust, now).offer(bundle, now)
        except SentinelError as exc:
            raise PermissionDenied(
                f"the keyset or policy from the hub does not verify: {exc}",
                reason="ENROLLMENT_MISMATCH",
            ) from exc
    ensure_directory(layout.signing_dir)
    ensure_directory(layout.nodes_dir)
    write_public(layout.root_pub, response.root_public_key)
    trust = TrustStore.open(data_dir, layout.root_pub)
    trust.offer(keyset, now)
    PolicyCache.open(data_dir, trust, now).offer(bundle, now)
    write_public(layout.ca_cert, response.ca_bundle_pem)
    write_secret(layout.node_key(node_id), private_key_pem(key), overwrite=False)
    write_public(layout.node_cert(node_id), response.certificate_pem)
