"""The keyset: signed by a pinned root, versions only go up, never expired, and every
key in it is named by its own key id and is a command or policy key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sentinel.durations import to_timestamp
from sentinel.envelope import SigningKey, TrustedKey, seal
from sentinel.errors import ConfigError, FailedPrecondition, InvalidArgument
from sentinel.keyset import (
    COMMAND,
    PAYLOAD_TYPE,
    POLICY,
    ROOT,
    Keyset,
    accept,
    key_id_for,
    load_root_public_key,
    open_keyset,
    raw_public_bytes,
    sign_keyset,
    trusted,
)
from sentinel.v1 import signing_pb2

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def private_key(seed: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)


ROOT_KEY = private_key(100)
OTHER_ROOT_KEY = private_key(101)
ROOT_SIGNER = SigningKey(key_id_for(ROOT_KEY.public_key(), ROOT), ROOT_KEY)
ROOTS = {ROOT_SIGNER.key_id: trusted(ROOT_KEY.public_key(), ROOT)}
COMMAND_KEY = trusted(private_key(1).public_key(), COMMAND)
SECOND_COMMAND_KEY = trusted(private_key(2).public_key(), COMMAND)
POLICY_KEY = trusted(private_key(3).public_key(), POLICY)


def make(
    version: int,
    keys: tuple[TrustedKey, ...] = (COMMAND_KEY, POLICY_KEY),
    *,
    root: SigningKey = ROOT_SIGNER,
    issued_at: datetime = T0,
    expires_at: datetime = T0 + 30 * DAY,
) -> Keyset:
    return sign_keyset(version, keys, root, issued_at=issued_at, expires_at=expires_at)


def seal_raw(message: signing_pb2.Keyset, root: SigningKey = ROOT_SIGNER) -> bytes:
    """A root-signed keyset that bypasses sign_keyset's own checks."""
    return seal(message.SerializeToString(), [root], PAYLOAD_TYPE)


def raw_message(version: int = 1, **key: object) -> signing_pb2.Keyset:
    message = signing_pb2.Keyset(
        version=version, issued_at=to_timestamp(T0), expires_at=to_timestamp(T0 + DAY)
    )
    if key:
        message.keys.add(**key)
    return message


# --- key ids ------------------------------------------------------------------------


def test_key_id_names_purpose_and_public_key() -> None:
    public = private_key(1).public_key()
    command_id = key_id_for(public, COMMAND)
    assert command_id.startswith("command-")
    assert len(command_id) == len("command-") + 16
    assert key_id_for(public, POLICY) == "policy-" + command_id.removeprefix("command-")
    assert key_id_for(public, ROOT).startswith("root-")
    assert key_id_for(private_key(2).public_key(), COMMAND) != command_id
    assert trusted(public, COMMAND) == TrustedKey(command_id, COMMAND, public)


# --- sign and open ------------------------------------------------------------------


def test_sign_then_open_round_trips() -> None:
    signed = make(3, (COMMAND_KEY, SECOND_COMMAND_KEY, POLICY_KEY))
    opened = open_keyset(signed.envelope, ROOTS)
    assert opened.version == 3
    assert opened.issued_at == T0
    assert opened.expires_at == T0 + 30 * DAY
    assert opened.envelope == signed.envelope
    assert set(opened.keys) == {COMMAND_KEY.key_id, SECOND_COMMAND_KEY.key_id, POLICY_KEY.key_id}
    for key in (COMMAND_KEY, SECOND_COMMAND_KEY, POLICY_KEY):
        held = opened.keys[key.key_id]
        assert held.purpose == key.purpose
        assert raw_public_bytes(held.public_key) == raw_public_bytes(key.public_key)
    assert opened.key_ids(COMMAND) == sorted([COMMAND_KEY.key_id, SECOND_COMMAND_KEY.key_id])
    assert opened.key_ids(POLICY) == [POLICY_KEY.key_id]
    assert opened.key_ids(ROOT) == []


def test_signing_is_deterministic() -> None:
    # The hub re-sends the same keyset on every connect: same content, same bytes.
    assert make(2).envelope == make(2).envelope


def test_an_empty_keyset_is_valid() -> None:
    assert open_keyset(make(1, ()).envelope, ROOTS).keys == {}


def test_usable_is_empty_from_expires_at_on() -> None:
    keyset = make(1, expires_at=T0 + DAY)
    assert set(keyset.usable(T0)) == {COMMAND_KEY.key_id, POLICY_KEY.key_id}
    assert set(keyset.usable(T0 + DAY - timedelta(microseconds=1))) == set(keyset.keys)
    assert keyset.usable(T0 + DAY) == {}
    assert keyset.usable(T0 + 365 * DAY) == {}


def test_signed_by_another_root_is_keyset_invalid() -> None:
    other = SigningKey(key_id_for(OTHER_ROOT_KEY.public_key(), ROOT), OTHER_ROOT_KEY)
    with pytest.raises(InvalidArgument) as caught:
        open_keyset(make(1, root=other).envelope, ROOTS)
    assert caught.value.reason == "KEYSET_INVALID"
    assert "keyset rejected" in str(caught.value)


def test_another_root_forging_the_pinned_root_key_id_is_keyset_invalid() -> None:
    forger = SigningKey(ROOT_SIGNER.key_id, OTHER_ROOT_KEY)
    with pytest.raises(InvalidArgument) as caught:
        open_keyset(make(1, root=forger).envelope, ROOTS)
    assert caught.value.reason == "KEYSET_INVALID"
    assert "does not verify" in str(caught.value)


def test_a_command_key_cannot_sign_a_keyset() -> None:
    command_signer = SigningKey(COMMAND_KEY.key_id, private_key(1))
    data = seal_raw(raw_message(), command_signer)
    with pytest.raises(InvalidArgument) as caught:
        open_keyset(data, {COMMAND_KEY.key_id: COMMAND_KEY})
    assert caught.value.reason == "KEYSET_INVALID"


def test_a_previous_root_pinned_alongside_verifies_during_rotation() -> None:
    previous = SigningKey(key_id_for(OTHER_ROOT_KEY.public_key(), ROOT), OTHER_ROOT_KEY)
    roots = {**ROOTS, previous.key_id: trusted(OTHER_ROOT_KEY.public_key(), ROOT)}
    assert open_keyset(make(4, root=previous).envelope, roots).version == 4


@pytest.mark.parametrize("data", [b"", b"\xff\xff", b"garbage that is not an envelope"])
def test_bytes_that_are_no_envelope_are_keyset_invalid(data: bytes) -> None:
    with pytest.raises(InvalidArgument) as caught:
        open_keyset(data, ROOTS)
    assert caught.value.reason == "KEYSET_INVALID"


def test_a_tampered_keyset_payload_is_keyset_invalid() -> None:
    data = bytearray(make(1).envelope)
    data[10] ^= 0x01  # inside the signed payload
    with pytest.raises(InvalidArgument) as caught:
        open_keyset(bytes(data), ROOTS)
    assert caught.value.reason == "KEYSET_INVALID"
    assert "does not verify" in str(caught.value)


def test_root_signed_garbage_payload_is_keyset_invalid() -> None:
    data = seal(b"\xff\xff\xff", [ROOT_SIGNER], PAYLOAD_TYPE)
    with pytest.raises(InvalidArgument) as caught:
        open_keyset(data, ROOTS)
    assert caught.value.reason == "KEYSET_INVALID"
    assert "does not decode" in str(caught.value)


def test_a_key_id_that_does_not_match_its_key_is_keyset_invalid() -> None:
    message = raw_message(
        key_id=SECOND_COMMAND_KEY.key_id,  # the id of another key
        purpose=COMMAND,
        ed25519_public_key=raw_public_bytes(COMMAND_KEY.public_key),
    )
    with pytest.raises(InvalidArgument) as caught:
        open_keyset(seal_raw(message), ROOTS)
    assert caught.value.reason == "KEYSET_INVALID"
    assert "does not match its key" in str(caught.value)


def test_a_key_id_for_another_purpose_is_keyset_invalid() -> None:
    # A command key's id relabelled as a policy key: the id no longer matches.
    message = raw_message(
        key_id=COMMAND_KEY.key_id,
        purpose=POLICY,
        ed25519_public_key=raw_public_bytes(COMMAND_KEY.public_key),
    )
    with pytest.raises(InvalidArgument) as caught:
        open_keyset(seal_raw(message), ROOTS)
    assert caught.value.reason == "KEYSET_INVALID"


def test_sign_keyset_refuses_a_mislabelled_key() -> None:
    wrong = TrustedKey("command-0000000000000000", COMMAND, COMMAND_KEY.public_key)
    with pytest.raises(InvalidArgument) as caught:
        make(1, (wrong,))
    assert caught.value.reason == "KEYSET_INVALID"


@pytest.mark.parametrize(
    "purpose", [signing_pb2.KEY_PURPOSE_ROOT, signing_pb2.KEY_PURPOSE_UNSPECIFIED]
)
def test_a_root_or_unspecified_purpose_inside_a_keyset_is_keyset_invalid(
    purpose: signing_pb2.KeyPurpose,
) -> None:
    public = private_key(7).public_key()
    key_id = key_id_for(public, ROOT)
    message = raw_message(
        key_id=key_id, purpose=purpose, ed25519_public_key=raw_public_bytes(public)
    )
    with pytest.raises(InvalidArgument) as caught:
        open_keyset(seal_raw(message), ROOTS)
    assert caught.value.reason == "KEYSET_INVALID"
    assert "has purpose" in str(caught.value)


def test_sign_keyset_refuses_a_root_key_inside() -> None:
    with pytest.raises(InvalidArgument) as caught:
        make(1, (trusted(private_key(7).public_key(), ROOT),))
    assert caught.value.reason == "KEYSET_INVALID"


def test_a_public_key_of_the_wrong_length_is_keyset_invalid() -> None:
    message = raw_message(key_id="command-0", purpose=COMMAND, ed25519_public_key=b"\x01" * 31)
    with pytest.raises(InvalidArgument) as caught:
        open_keyset(seal_raw(message), ROOTS)
    assert caught.value.reason == "KEYSET_INVALID"
    assert "not an Ed25519 key" in str(caught.value)


def test_version_zero_or_no_expiry_is_keyset_invalid() -> None:
    with pytest.raises(InvalidArgument) as caught:
        open_keyset(seal_raw(raw_message(version=0)), ROOTS)
    assert caught.value.reason == "KEYSET_INVALID"
    no_expiry = raw_message()
    no_expiry.ClearField("expires_at")
    with pytest.raises(InvalidArgument) as caught:
        open_keyset(seal_raw(no_expiry), ROOTS)
    assert caught.value.reason == "KEYSET_INVALID"


def test_an_out_of_range_expiry_is_keyset_invalid() -> None:
    message = raw_message()
    message.expires_at.seconds = 10**12  # about year 33658
    with pytest.raises(InvalidArgument) as caught:
        open_keyset(seal_raw(message), ROOTS)
    assert caught.value.reason == "KEYSET_INVALID"


# --- accept -------------------------------------------------------------------------


def test_accept_with_nothing_held_takes_a_valid_keyset() -> None:
    offered = make(1)
    taken = accept(None, offered.envelope, ROOTS, T0)
    assert taken.version == 1
    assert taken.envelope == offered.envelope


def test_accept_takes_a_higher_version() -> None:
    held = make(1)
    taken = accept(held, make(2, (SECOND_COMMAND_KEY,)).envelope, ROOTS, T0)
    assert taken.version == 2
    assert set(taken.keys) == {SECOND_COMMAND_KEY.key_id}


def test_accept_may_skip_versions() -> None:
    assert accept(make(1), make(9).envelope, ROOTS, T0).version == 9


def test_accept_refuses_a_lower_version_as_rollback() -> None:
    held = make(5)
    with pytest.raises(FailedPrecondition) as caught:
        accept(held, make(4).envelope, ROOTS, T0)
    assert caught.value.reason == "KEYSET_ROLLBACK"
    assert str(caught.value) == "keyset version 4 is not newer than the held 5"


def test_accept_same_version_same_bytes_is_a_no_op() -> None:
    held = make(2)
    assert accept(held, make(2).envelope, ROOTS, T0) is held


def test_accept_same_version_other_content_is_rollback() -> None:
    held = make(2)
    other = make(2, (SECOND_COMMAND_KEY,))
    assert other.envelope != held.envelope
    with pytest.raises(FailedPrecondition) as caught:
        accept(held, other.envelope, ROOTS, T0)
    assert caught.value.reason == "KEYSET_ROLLBACK"


def test_accept_refuses_an_expired_keyset() -> None:
    expired = make(1, expires_at=T0 + DAY)
    with pytest.raises(FailedPrecondition) as caught:
        accept(None, expired.envelope, ROOTS, T0 + 2 * DAY)
    assert caught.value.reason == "KEYSET_EXPIRED"
    assert "expired at 2026-03-02T12:00:00+00:00" in str(caught.value)


def test_accept_refuses_a_keyset_expiring_exactly_now() -> None:
    with pytest.raises(FailedPrecondition) as caught:
        accept(None, make(1, expires_at=T0).envelope, ROOTS, T0)
    assert caught.value.reason == "KEYSET_EXPIRED"
    assert accept(None, make(1, expires_at=T0).envelope, ROOTS, T0 - timedelta(seconds=1))


def test_accept_refuses_a_newer_but_expired_keyset_over_a_held_one() -> None:
    held = make(1, expires_at=T0 + 10 * DAY)
    with pytest.raises(FailedPrecondition) as caught:
        accept(held, make(2, expires_at=T0 + DAY).envelope, ROOTS, T0 + 2 * DAY)
    assert caught.value.reason == "KEYSET_EXPIRED"


def test_accept_refuses_another_root_before_looking_at_versions() -> None:
    other = SigningKey(key_id_for(OTHER_ROOT_KEY.public_key(), ROOT), OTHER_ROOT_KEY)
    with pytest.raises(InvalidArgument) as caught:
        accept(make(1), make(2, root=other).envelope, ROOTS, T0)
    assert caught.value.reason == "KEYSET_INVALID"


# --- the pinned root key file -------------------------------------------------------


def write_pem(path: Path, public_key: Ed25519PublicKey | ec.EllipticCurvePublicKey) -> Path:
    pem = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path.write_bytes(pem)
    return path


def test_load_root_public_key_reads_an_ed25519_pem(tmp_path: Path) -> None:
    path = write_pem(tmp_path / "root.pub", ROOT_KEY.public_key())
    root = load_root_public_key(path)
    assert root.key_id == ROOT_SIGNER.key_id
    assert root.purpose == ROOT
    assert raw_public_bytes(root.public_key) == raw_public_bytes(ROOT_KEY.public_key())
    assert open_keyset(make(1).envelope, {root.key_id: root}).version == 1


def test_load_root_public_key_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_root_public_key(tmp_path / "absent.pub")
    assert caught.value.reason == "ROOT_KEY_MISSING"
    assert "does not exist" in str(caught.value)


@pytest.mark.parametrize(
    "content",
    [b"", b"not a pem at all\n", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"],
)
def test_load_root_public_key_not_pem(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "root.pub"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_root_public_key(path)
    assert caught.value.reason == "ROOT_KEY_INVALID"


def test_load_root_public_key_refuses_an_ecdsa_key(tmp_path: Path) -> None:
    ecdsa = ec.derive_private_key(12345, ec.SECP256R1())
    path = write_pem(tmp_path / "root.pub", ecdsa.public_key())
    with pytest.raises(ConfigError) as caught:
        load_root_public_key(path)
    assert caught.value.reason == "ROOT_KEY_INVALID"
    assert "not an Ed25519 key" in str(caught.value)
