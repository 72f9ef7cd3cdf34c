"""CSRs as the CA reads them: only a self-signed P-256 request for one node identity of
this trust domain; the CA pins by the SHA-256 of the CA's SubjectPublicKeyInfo."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

import certs
from hub.revocation import normalise_serial
from sentinel.errors import SentinelError
from tests.conftest import Pki


def request(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, *uris: str) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "n")])
    )
    if uris:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]),
            critical=False,
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def reason(csr: bytes) -> str:
    with pytest.raises(SentinelError) as caught:
        certs.read_node_request(csr, "sentinel.local")
    return caught.value.reason


def test_a_node_request_round_trips() -> None:
    key, csr = certs.new_node_request("sentinel.local", "gpu-1")
    read = certs.read_node_request(csr, "sentinel.local")
    assert read.node_id == "gpu-1"
    assert read.public_key == key.public_key()


def test_requests_for_anything_else_are_refused() -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    node = "spiffe://sentinel.local/node/gpu-1"
    assert reason(request(ec_key)) == "CSR_NOT_A_NODE"
    assert reason(request(ec_key, node, "spiffe://sentinel.local/node/gpu-2")) == "CSR_NOT_A_NODE"
    assert reason(request(ec_key, node, "https://example.com")) == "CSR_NOT_A_NODE"
    assert reason(request(ec_key, "spiffe://sentinel.local/user/admin")) == "CSR_NOT_A_NODE"
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert reason(request(rsa_key, node)) == "CSR_KEY_UNSUPPORTED"
    p384 = ec.generate_private_key(ec.SECP384R1())
    assert reason(request(p384, node)) == "CSR_KEY_UNSUPPORTED"
    assert reason(b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n") == "CSR_INVALID"
    assert reason(b"x" * 20_000) == "CSR_INVALID"
    # A request whose signature does not match its key (a copied public key).
    good = request(ec_key, node)
    tampered = good.replace(good[200:204], good[204:208])
    assert reason(tampered) in {"CSR_INVALID"}


def test_the_ca_hash_is_sha256_of_the_spki_as_openssl_computes_it(pki: Pki, tmp_path: Path) -> None:
    ca_pem = pki.layout.ca_cert.read_bytes()
    der = subprocess.run(
        ["openssl", "x509", "-pubkey", "-noout"], input=ca_pem, capture_output=True, check=True
    ).stdout
    spki = subprocess.run(
        ["openssl", "pkey", "-pubin", "-outform", "DER"], input=der, capture_output=True, check=True
    ).stdout
    assert certs.ca_hash(ca_pem) == "sha256:" + hashlib.sha256(spki).hexdigest()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0A:1b", "a1b"), ("0x00ff", "ff"), ("ABC", "abc"), ("0", "0")],
)
def test_serials_are_normalised(text: str, expected: str) -> None:
    assert normalise_serial(text) == expected


@pytest.mark.parametrize("text", ["", "xyz", "1" * 41, "12 34"])
def test_bad_serials_are_refused(text: str) -> None:
    with pytest.raises(SentinelError) as caught:
        normalise_serial(text)
    assert caught.value.reason == "INVALID_SERIAL"
