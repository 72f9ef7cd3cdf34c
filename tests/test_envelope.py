"""Signed envelopes: size cap, parse, signatures over the exact payload bytes, and only
then the payload; unknown or wrong-purpose keys never count."""

from __future__ import annotations

import random

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sentinel.envelope import (
    MAX_ENVELOPE_BYTES,
    MAX_SIGNATURES,
    SigningKey,
    TrustedKey,
    seal,
    unwrap,
    verify,
)
from sentinel.keyset import COMMAND, POLICY, ROOT, key_id_for, trusted
from sentinel.refusals import CommandRefused, Reason
from sentinel.v1 import signing_pb2

PAYLOAD = b"\x0a\x24the exact payload bytes, never decoded here"
PAYLOAD_TYPE = "sentinel.v1.CommandPayload"


def private_key(seed: int) -> Ed25519PrivateKey:
    """A deterministic key: the same seed gives the same key in every run."""
    return Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)


def signer(seed: int, purpose: signing_pb2.KeyPurpose = COMMAND) -> SigningKey:
    key = private_key(seed)
    return SigningKey(key_id_for(key.public_key(), purpose), key)


def trust(*seeds: int, purpose: signing_pb2.KeyPurpose = COMMAND) -> dict[str, TrustedKey]:
    keys = [trusted(private_key(seed).public_key(), purpose) for seed in seeds]
    return {k.key_id: k for k in keys}


def open_envelope(
    data: bytes,
    trusted_keys: dict[str, TrustedKey],
    purpose: signing_pb2.KeyPurpose = COMMAND,
    threshold: int = 1,
) -> bytes:
    return verify(unwrap(data), trusted_keys, purpose, threshold=threshold)


def refusal(
    data: bytes,
    trusted_keys: dict[str, TrustedKey],
    purpose: signing_pb2.KeyPurpose = COMMAND,
    threshold: int = 1,
) -> CommandRefused:
    with pytest.raises(CommandRefused) as caught:
        open_envelope(data, trusted_keys, purpose, threshold)
    return caught.value


def envelope_of(data: bytes) -> signing_pb2.SignedEnvelope:
    envelope = signing_pb2.SignedEnvelope()
    envelope.ParseFromString(data)
    return envelope


# --- happy path ---------------------------------------------------------------------


def test_seal_then_verify_returns_the_exact_payload_bytes() -> None:
    data = seal(PAYLOAD, [signer(1)], PAYLOAD_TYPE)
    assert open_envelope(data, trust(1)) == PAYLOAD


def test_seal_records_payload_type_key_id_and_a_signature_over_the_payload() -> None:
    key = signer(1)
    envelope = envelope_of(seal(PAYLOAD, [key], PAYLOAD_TYPE))
    assert envelope.payload == PAYLOAD
    assert envelope.payload_type == PAYLOAD_TYPE
    assert [s.key_id for s in envelope.signatures] == [key.key_id]
    key.private_key.public_key().verify(envelope.signatures[0].signature, PAYLOAD)


def test_verify_does_not_decode_the_payload_nor_trust_payload_type() -> None:
    # Bytes that are no protobuf at all, labelled with a type they are not: the
    # envelope layer hands them back untouched, it never looks inside.
    garbage = b"\xff\xff\xff\xff not a protobuf \x00\x01"
    data = seal(garbage, [signer(1)], "sentinel.v1.Keyset")
    assert open_envelope(data, trust(1)) == garbage


def test_unwrap_leaves_the_payload_opaque() -> None:
    envelope = unwrap(seal(b"\xff\xfe", [signer(1)], "anything"))
    assert envelope.payload == b"\xff\xfe"


def test_an_extra_signature_by_an_unknown_key_does_not_hurt() -> None:
    data = seal(PAYLOAD, [signer(9), signer(1)], PAYLOAD_TYPE)
    assert open_envelope(data, trust(1)) == PAYLOAD


def test_two_distinct_trusted_keys_meet_a_threshold_of_two() -> None:
    data = seal(PAYLOAD, [signer(1), signer(2)], PAYLOAD_TYPE)
    assert open_envelope(data, trust(1, 2), threshold=2) == PAYLOAD


# --- size cap and parse (before any signature) -------------------------------------


def test_oversized_envelope_is_refused_with_the_exact_message() -> None:
    data = b"\x00" * (MAX_ENVELOPE_BYTES + 1)
    with pytest.raises(CommandRefused) as caught:
        unwrap(data)
    assert caught.value.code is Reason.MALFORMED
    assert caught.value.reason == "MALFORMED"
    assert str(caught.value) == "envelope of 65537 bytes exceeds the 65536-byte cap"


def test_size_is_checked_before_parsing_even_for_a_valid_envelope() -> None:
    # A perfectly signed envelope one byte over the cap: refused on size alone.
    data = sealed_of_length(MAX_ENVELOPE_BYTES + 1)
    with pytest.raises(CommandRefused) as caught:
        unwrap(data)
    assert caught.value.code is Reason.MALFORMED
    assert "exceeds the 65536-byte cap" in str(caught.value)


def test_an_envelope_exactly_at_the_cap_is_accepted() -> None:
    data = sealed_of_length(MAX_ENVELOPE_BYTES)
    assert len(data) == MAX_ENVELOPE_BYTES
    assert len(open_envelope(data, trust(1))) > 60_000


def test_max_bytes_is_a_parameter() -> None:
    data = seal(PAYLOAD, [signer(1)], PAYLOAD_TYPE)
    assert unwrap(data, max_bytes=len(data)).payload == PAYLOAD
    with pytest.raises(CommandRefused) as caught:
        unwrap(data, max_bytes=len(data) - 1)
    assert str(caught.value) == (
        f"envelope of {len(data)} bytes exceeds the {len(data) - 1}-byte cap"
    )


def sealed_of_length(length: int) -> bytes:
    for size in range(length - 200, length):
        data = seal(b"x" * size, [signer(1)], PAYLOAD_TYPE)
        if len(data) == length:
            return data
    raise AssertionError(f"no payload size gives an envelope of {length} bytes")


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xff\xff\xff",  # invalid tag
        b"\x0a\x10short",  # a length beyond the end
        b"\x0b",  # a start-group tag for the payload field
        b"\x12\x03\x0a\xff",  # a truncated signature message
    ],
)
def test_garbage_bytes_are_malformed(data: bytes) -> None:
    with pytest.raises(CommandRefused) as caught:
        unwrap(data)
    assert caught.value.code is Reason.MALFORMED


def test_random_garbage_is_always_malformed_or_unsigned() -> None:
    rng = random.Random(20240611)
    for _ in range(300):
        data = rng.randbytes(rng.randrange(0, 200))
        with pytest.raises(CommandRefused) as caught:
            open_envelope(data, trust(1))
        # Garbage can happen to parse as an envelope with a payload and an unsigned
        # signature list; it never verifies.
        assert caught.value.code in (Reason.MALFORMED, Reason.UNKNOWN_KEY, Reason.BAD_SIGNATURE)


@pytest.mark.parametrize(
    "data", [b"", signing_pb2.SignedEnvelope(payload_type="x").SerializeToString()]
)
def test_an_envelope_without_payload_is_malformed(data: bytes) -> None:
    with pytest.raises(CommandRefused) as caught:
        unwrap(data)
    assert caught.value.code is Reason.MALFORMED
    assert "no payload" in str(caught.value)


def test_no_signature_is_unknown_key() -> None:
    data = seal(PAYLOAD, [], PAYLOAD_TYPE)
    with pytest.raises(CommandRefused) as caught:
        unwrap(data)
    assert caught.value.code is Reason.UNKNOWN_KEY
    assert str(caught.value) == "envelope carries no signature"


def test_more_than_max_signatures_is_malformed() -> None:
    signers = [signer(seed) for seed in range(1, MAX_SIGNATURES + 2)]
    data = seal(PAYLOAD, signers, PAYLOAD_TYPE)
    with pytest.raises(CommandRefused) as caught:
        unwrap(data)
    assert caught.value.code is Reason.MALFORMED
    assert str(caught.value) == f"envelope carries more than {MAX_SIGNATURES} signatures"


def test_exactly_max_signatures_is_allowed() -> None:
    signers = [signer(seed) for seed in range(1, MAX_SIGNATURES + 1)]
    data = seal(PAYLOAD, signers, PAYLOAD_TYPE)
    assert open_envelope(data, trust(MAX_SIGNATURES)) == PAYLOAD


# --- key lookup ---------------------------------------------------------------------


def test_unknown_key_id_is_unknown_key() -> None:
    other = signer(7)
    error = refusal(seal(PAYLOAD, [other], PAYLOAD_TYPE), trust(1))
    assert error.code is Reason.UNKNOWN_KEY
    assert str(error) == f"no trusted key signed this (signed by {other.key_id})"


def test_empty_trust_is_unknown_key() -> None:
    error = refusal(seal(PAYLOAD, [signer(1)], PAYLOAD_TYPE), {})
    assert error.code is Reason.UNKNOWN_KEY


def test_an_empty_key_id_is_named_in_the_refusal() -> None:
    data = seal(PAYLOAD, [SigningKey("", private_key(1))], PAYLOAD_TYPE)
    error = refusal(data, trust(1))
    assert error.code is Reason.UNKNOWN_KEY
    assert "(signed by (empty))" in str(error)


def test_a_policy_key_signing_a_command_is_unknown_key() -> None:
    # The policy key is trusted, with a valid signature, but not for commands.
    policy = signer(3, POLICY)
    data = seal(PAYLOAD, [policy], PAYLOAD_TYPE)
    keys = trust(3, purpose=POLICY)
    assert open_envelope(data, keys, purpose=POLICY) == PAYLOAD
    error = refusal(data, keys, purpose=COMMAND)
    assert error.code is Reason.UNKNOWN_KEY
    assert policy.key_id in str(error)


def test_a_trusted_key_id_bound_to_another_purpose_does_not_count() -> None:
    # Same key id in the map, but the TrustedKey says ROOT: no command may pass.
    key = private_key(4)
    key_id = key_id_for(key.public_key(), COMMAND)
    keys = {key_id: TrustedKey(key_id, ROOT, key.public_key())}
    error = refusal(seal(PAYLOAD, [SigningKey(key_id, key)], PAYLOAD_TYPE), keys)
    assert error.code is Reason.UNKNOWN_KEY


# --- bad signatures -----------------------------------------------------------------


def flip(data: bytes, index: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[index] ^= 1 << bit
    return bytes(out)


def test_a_bit_flip_in_the_payload_is_bad_signature() -> None:
    key = signer(1)
    data = seal(PAYLOAD, [key], PAYLOAD_TYPE)
    index = data.index(PAYLOAD) + len(PAYLOAD) // 2
    error = refusal(flip(data, index), trust(1))
    assert error.code is Reason.BAD_SIGNATURE
    assert str(error) == f"signature by {key.key_id} does not verify"
    assert error.details == {"key_id": key.key_id}


def test_a_bit_flip_in_the_signature_is_bad_signature() -> None:
    key = signer(1)
    data = seal(PAYLOAD, [key], PAYLOAD_TYPE)
    signature = envelope_of(data).signatures[0].signature
    start = data.index(signature)
    for offset in (0, 31, 32, 63):  # both halves (R and S) and their edges
        for bit in (0, 7):
            error = refusal(flip(data, start + offset, bit), trust(1))
            assert error.code is Reason.BAD_SIGNATURE, (offset, bit)


def test_a_trusted_key_id_with_a_signature_by_another_private_key_is_bad_signature() -> None:
    trusted_key = signer(1)
    impostor = SigningKey(trusted_key.key_id, private_key(2))
    error = refusal(seal(PAYLOAD, [impostor], PAYLOAD_TYPE), trust(1))
    assert error.code is Reason.BAD_SIGNATURE
    assert error.details["key_id"] == trusted_key.key_id


def test_a_truncated_signature_is_bad_signature() -> None:
    envelope = envelope_of(seal(PAYLOAD, [signer(1)], PAYLOAD_TYPE))
    envelope.signatures[0].signature = envelope.signatures[0].signature[:-1]
    error = refusal(envelope.SerializeToString(), trust(1))
    assert error.code is Reason.BAD_SIGNATURE


def test_a_payload_swapped_under_a_valid_signature_is_bad_signature() -> None:
    envelope = envelope_of(seal(PAYLOAD, [signer(1)], PAYLOAD_TYPE))
    envelope.payload = b"another payload"
    error = refusal(envelope.SerializeToString(), trust(1))
    assert error.code is Reason.BAD_SIGNATURE


# --- thresholds ---------------------------------------------------------------------


def test_threshold_two_with_one_valid_signature_is_unknown_key() -> None:
    key = signer(1)
    error = refusal(seal(PAYLOAD, [key], PAYLOAD_TYPE), trust(1, 2), threshold=2)
    assert error.code is Reason.UNKNOWN_KEY
    assert str(error) == f"1 of 2 required trusted signatures (signed by {key.key_id})"


def test_the_same_key_twice_counts_once_toward_a_threshold() -> None:
    key = signer(1)
    error = refusal(seal(PAYLOAD, [key, key], PAYLOAD_TYPE), trust(1, 2), threshold=2)
    assert error.code is Reason.UNKNOWN_KEY
    assert str(error).startswith("1 of 2 required trusted signatures")


def test_threshold_two_with_one_valid_and_one_untrusted_is_unknown_key() -> None:
    error = refusal(seal(PAYLOAD, [signer(1), signer(5)], PAYLOAD_TYPE), trust(1, 2), threshold=2)
    assert error.code is Reason.UNKNOWN_KEY
    assert "1 of 2" in str(error)


def test_threshold_two_with_one_valid_and_one_forged_is_bad_signature() -> None:
    forged = SigningKey(signer(2).key_id, private_key(6))
    error = refusal(seal(PAYLOAD, [signer(1), forged], PAYLOAD_TYPE), trust(1, 2), threshold=2)
    assert error.code is Reason.BAD_SIGNATURE
    assert error.details["key_id"] == forged.key_id


# --- single-bit flips anywhere ------------------------------------------------------


def test_no_single_bit_flip_verifies_as_another_payload() -> None:
    """Any one-bit change to a sealed envelope is refused, or (for a flip in the
    unsigned payload_type) still yields exactly the original payload."""
    payload = bytes(range(0, 256, 4))
    data = seal(payload, [signer(1), signer(2)], PAYLOAD_TYPE)
    keys = trust(1, 2)
    unsigned_start = data.index(PAYLOAD_TYPE.encode()) - 2  # tag and one-byte length
    assert data[unsigned_start] == 0x1A  # field 3, length-delimited
    # Exhaustive rather than sampled: every bit of the envelope, once (over 2000 flips).
    positions = [(i, b) for i in range(len(data)) for b in range(8)]
    outcomes: dict[str, int] = {}
    for index, bit in positions:
        mutated = flip(data, index, bit)
        for threshold in (1, 2):
            try:
                result = open_envelope(mutated, keys, threshold=threshold)
            except CommandRefused as error:
                outcomes[error.reason] = outcomes.get(error.reason, 0) + 1
                continue
            assert result == payload, (index, bit, threshold)
            outcomes["same payload"] = outcomes.get("same payload", 0) + 1
            if threshold == 2:
                # Both signatures still verify, so the flip hit the unsigned tail: the
                # payload_type field (its tag, length or text), serialized last.
                assert index >= unsigned_start, (index, bit)
    assert len(positions) >= 2000
    # The loop really exercised refusals of several kinds and unsigned-field flips.
    assert outcomes["BAD_SIGNATURE"] > 0
    assert outcomes["MALFORMED"] > 0
    assert outcomes["UNKNOWN_KEY"] > 0
    assert outcomes["same payload"] > 0
