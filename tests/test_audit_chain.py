"""The audit record format and its verifier, without a hub: 1,000 seeded random
tamperings of an export (edit a field, flip a byte, delete, swap, duplicate, truncate,
truncate but keep the seal, edit the seal), each detected at the first bad line."""

from __future__ import annotations

import base64
import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sentinel import audit
from sentinel.envelope import SigningKey, TrustedKey
from sentinel.keyset import AUDIT, COMMAND, ROOT, key_id_for, sign_keyset, trusted

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Keys:
    roots: dict[str, TrustedKey]
    signer: SigningKey
    keyset: bytes


def make_keys() -> Keys:
    root_key, audit_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    root = SigningKey(key_id_for(root_key.public_key(), ROOT), root_key)
    signer = SigningKey(key_id_for(audit_key.public_key(), AUDIT), audit_key)
    command = trusted(Ed25519PrivateKey.generate().public_key(), COMMAND)
    keyset = sign_keyset(
        1,
        [command, trusted(audit_key.public_key(), AUDIT)],
        root,
        issued_at=T0,
        expires_at=T0 + timedelta(days=1),
    )
    return Keys({root.key_id: trusted(root_key.public_key(), ROOT)}, signer, keyset.envelope)


@pytest.fixture(scope="module")
def keys() -> Keys:
    return make_keys()


def build_chain(count: int, signer: SigningKey, *, checkpoint_every: int = 7) -> list[bytes]:
    """`count` records, every `checkpoint_every`-th a signed checkpoint."""
    lines: list[bytes] = []
    prev = audit.ZERO_HASH
    for seq in range(1, count + 1):
        when = T0 + timedelta(seconds=seq)
        if seq % checkpoint_every == 0:
            record = audit.new_record(
                seq,
                prev,
                time=when,
                action=audit.CHECKPOINT,
                actor="hub/test",
                details=audit.checkpoint_details(seq - 1, prev, signer),
            )
        else:
            record = audit.new_record(
                seq,
                prev,
                time=when,
                action=random.Random(seq).choice(["rpc", "command.issued", "policy.changed"]),
                actor="spiffe://sentinel.local/user/admin",
                target=f"cmd-{seq}",
                outcome="OK",
                reason="" if seq % 3 else "POLICY_DENIED",
                policy_version=seq // 5,
                details={"method": "/sentinel.v1.X/Y", "nodes": ["a", "b"], "note": "ünï ✓"},
            )
        lines.append(record.line())
        prev = record.hash
    return lines


def export(lines: list[bytes], keys: Keys) -> list[bytes]:
    head = audit.parse_record(lines[-1]).hash if lines else audit.ZERO_HASH
    seal = audit.make_seal(
        1, len(lines), head, sealed_at=T0, signer=keys.signer, keyset_envelope=keys.keyset
    )
    return [*lines, seal]


def verify(lines: list[bytes], keys: Keys) -> audit.Verification:
    return audit.verify_chain(lines, roots=keys.roots)


def test_a_clean_export_verifies(keys: Keys) -> None:
    result = verify(export(build_chain(50, keys.signer), keys), keys)
    assert result.problem is None
    assert (result.records, result.last_seq, result.checkpoints) == (50, 50, 7)
    assert result.sealed_by == keys.signer.key_id


def test_an_empty_export_verifies(keys: Keys) -> None:
    result = verify(export([], keys), keys)
    assert result.ok and result.records == 0 and result.last_seq == 0


def test_records_are_canonical_and_hashed(keys: Keys) -> None:
    line = build_chain(1, keys.signer)[0]
    value = json.loads(line)
    assert list(value) == sorted(value) and b'": ' not in line and b'", ' not in line
    assert value["prev"] == audit.ZERO_HASH
    assert audit.parse_record(line).line() == line
    with pytest.raises(audit.RecordError, match="canonical"):
        audit.parse_record(json.dumps(value, sort_keys=True).encode())
    with pytest.raises(audit.RecordError, match="floats"):
        audit.parse_record(line.replace(b'"policy_version":0', b'"policy_version":0.0'))
    with pytest.raises(audit.RecordError):
        audit.new_record(1, audit.ZERO_HASH, time=T0, action="x", actor="y", details={"f": 1.5})


def test_a_seal_whose_base64_padding_bits_changed_is_caught(keys: Keys) -> None:
    """base64 decoders ignore padding bits: 'QQ==' and 'QR==' are the same byte."""
    lines = export(build_chain(3, keys.signer), keys)
    seal = json.loads(lines[-1])
    signature = seal["seal"]["signature"]
    last = signature.rstrip("=")[-1]
    twin = base64.b64encode(base64.b64decode(signature)).decode()
    assert twin == signature
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    sibling = alphabet[alphabet.index(last) ^ 1]
    seal["seal"]["signature"] = signature.rstrip("=")[:-1] + sibling + "=="
    assert base64.b64decode(seal["seal"]["signature"]) == base64.b64decode(signature)
    lines[-1] = audit.canonical(seal)
    assert verify(lines, keys).problem == audit.Problem(
        4, 4, "seal signature is not canonical base64 (edited)", in_seal=True
    )


def test_a_rewritten_chain_is_caught_at_the_next_checkpoint(keys: Keys) -> None:
    """An attacker without the audit key rewrites record 10 and re-hashes everything after
    it, checkpoints included: the first checkpoint after the edit does not verify."""
    lines = build_chain(30, keys.signer, checkpoint_every=7)
    forger = SigningKey("audit-forged", Ed25519PrivateKey.generate())
    records = [audit.parse_record(line) for line in lines]
    prev = records[8].hash
    for index in range(9, 30):
        old = records[index]
        details = old.details
        if old.action == audit.CHECKPOINT:
            details = audit.checkpoint_details(old.seq - 1, prev, keys.signer)
            details["signature"] = audit.checkpoint_details(old.seq - 1, prev, forger)["signature"]
        rewritten = audit.new_record(
            old.seq,
            prev,
            time=T0,
            action=old.action,
            actor="someone-else" if index == 9 else old.actor,
            target=old.target,
            details=details,
        )
        lines[index] = rewritten.line()
        prev = rewritten.hash
    problem = verify(export(lines, keys), keys).problem
    assert problem == audit.Problem(14, 14, "checkpoint signature does not verify")


def test_a_seal_from_another_key_or_root_is_refused(keys: Keys) -> None:
    lines = build_chain(5, keys.signer)
    other = make_keys()
    head = audit.parse_record(lines[-1]).hash
    forged = audit.make_seal(
        1, 5, head, sealed_at=T0, signer=other.signer, keyset_envelope=keys.keyset
    )
    problem = verify([*lines, forged], keys).problem
    assert problem is not None and problem.line == 6 and "not an audit key" in problem.message
    own_root = audit.make_seal(
        1, 5, head, sealed_at=T0, signer=other.signer, keyset_envelope=other.keyset
    )
    problem = verify([*lines, own_root], keys).problem
    assert problem is not None and "root key" in problem.message


# -- 1,000 random tamperings ------------------------------------------------------------


def _mutate_value(value: Any, rng: random.Random) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + rng.choice([-1, 1, 7, 1000])
    if isinstance(value, str):
        return _mutate_text(value, rng)
    if isinstance(value, dict):
        changed = dict(value)
        if changed and rng.random() < 0.6:
            key = rng.choice(sorted(changed))
            changed[key] = _mutate_value(changed[key], rng)
        else:
            changed[f"extra{rng.randrange(9)}"] = "added"
        return changed
    return [*value, "added"] if isinstance(value, list) else "changed"


def _mutate_text(value: str, rng: random.Random) -> str:
    if len(value) == 64 and all(c in "0123456789abcdef" for c in value):  # a hash
        position = rng.randrange(64)
        digit = rng.choice([c for c in "0123456789abcdef" if c != value[position]])
        return value[:position] + digit + value[position + 1 :]
    return value + rng.choice(["x", " ", "é", "0"]) if rng.random() < 0.7 else value[:-1]


def edit_field(lines: list[bytes], rng: random.Random) -> tuple[list[bytes], int]:
    index = rng.randrange(len(lines) - 1)
    value = json.loads(lines[index])
    name = rng.choice(sorted(value))
    mutated = _mutate_value(value[name], rng)
    if mutated == value[name]:  # e.g. "" shortened
        mutated = f"{value[name]}!"
    value[name] = mutated
    return [*lines[:index], audit.canonical(value), *lines[index + 1 :]], index + 1


def flip_byte(lines: list[bytes], rng: random.Random) -> tuple[list[bytes], int]:
    index = rng.randrange(len(lines))
    line = bytearray(lines[index])
    position = rng.randrange(len(line))
    line[position] = rng.choice([b for b in range(256) if b != line[position]])
    # A flipped-in newline splits the line: the file is what a reader sees.
    data = b"\n".join([*lines[:index], bytes(line), *lines[index + 1 :]]) + b"\n"
    return audit.split_lines(data), index + 1


def delete_line(lines: list[bytes], rng: random.Random) -> tuple[list[bytes], int]:
    index = rng.randrange(len(lines))
    return [*lines[:index], *lines[index + 1 :]], index + 1


def swap_lines(lines: list[bytes], rng: random.Random) -> tuple[list[bytes], int]:
    first, second = sorted(rng.sample(range(len(lines)), 2))
    swapped = list(lines)
    swapped[first], swapped[second] = swapped[second], swapped[first]
    return swapped, first + 1


def duplicate_line(lines: list[bytes], rng: random.Random) -> tuple[list[bytes], int]:
    index = rng.randrange(len(lines))
    copy = [*lines[: index + 1], lines[index], *lines[index + 1 :]]
    # A copied record is bad where it lands; a copied seal makes the first seal not last.
    return copy, index + 2 if index < len(lines) - 1 else index + 1


def truncate(lines: list[bytes], rng: random.Random) -> tuple[list[bytes], int]:
    data = b"\n".join(lines) + b"\n"
    cut = rng.randrange(len(data) - 1)  # at least the last line's content is cut
    end = 0
    for number, line in enumerate(lines, start=1):
        end += len(line)
        if end > cut:  # this line's content is not all there
            return audit.split_lines(data[:cut]), number
        end += 1
    raise AssertionError("unreachable")


def truncate_keep_seal(lines: list[bytes], rng: random.Random) -> tuple[list[bytes], int]:
    keep = rng.randrange(len(lines) - 1)
    return [*lines[:keep], lines[-1]], keep + 1


def edit_seal(lines: list[bytes], rng: random.Random) -> tuple[list[bytes], int]:
    value = json.loads(lines[-1])
    name = rng.choice(sorted(value["seal"]))
    old = value["seal"][name]
    if name in ("signature", "keyset"):
        raw = bytearray(base64.b64decode(old))
        raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        value["seal"][name] = base64.b64encode(bytes(raw)).decode()
    else:
        value["seal"][name] = _mutate_value(old, rng)
    return [*lines[:-1], audit.canonical(value)], len(lines)


TAMPERINGS = (
    edit_field,
    flip_byte,
    delete_line,
    swap_lines,
    duplicate_line,
    truncate,
    truncate_keep_seal,
    edit_seal,
)


def test_a_thousand_random_tamperings_are_each_caught_at_the_first_bad_line(keys: Keys) -> None:
    rng = random.Random(20260301)
    clean = export(build_chain(40, keys.signer, checkpoint_every=6), keys)
    assert verify(clean, keys).ok
    seen: dict[str, int] = {}
    for trial in range(1000):
        tamper = TAMPERINGS[trial % len(TAMPERINGS)]
        tampered, first_bad_line = tamper(clean, rng)
        assert tampered != clean, tamper.__name__
        result = verify(tampered, keys)
        problem = result.problem
        assert problem is not None, (trial, tamper.__name__)
        # Every line is one record (seq = line number) up to the seal at line 41.
        assert (problem.line, problem.seq) == (first_bad_line, first_bad_line), (
            trial,
            tamper.__name__,
            problem,
        )
        seen[tamper.__name__] = seen.get(tamper.__name__, 0) + 1
    assert set(seen) == {t.__name__ for t in TAMPERINGS}


def test_an_agent_journal_verifies_without_a_seal(keys: Keys) -> None:
    lines = build_chain(10, keys.signer)
    assert audit.verify_chain(lines, require_seal=False).ok
    problem = audit.verify_chain(lines[:4] + lines[5:], require_seal=False).problem
    assert problem == audit.Problem(5, 5, "seq 5 missing: this line holds seq 6 (deleted or moved)")
