"""The audit record format: a hash chain of canonical JSON lines, checkpoints and seals.

A record is one line of canonical JSON — keys sorted, no whitespace, UTF-8, integers
and strings only (no floats, so one value has one encoding) — with the fields
`seq time actor action target outcome reason policy_version details prev hash`.
`hash` is the SHA-256 (hex) of the canonical encoding of every other field; `prev`
is the `hash` of the record before it, 64 zeros before the first. Any change to a
line's bytes is therefore detected: it either stops being canonical, or changes a
field and with it the hash, or breaks the next record's `prev`.

Two signatures (Ed25519, an `audit` key from the root-signed keyset) make truncation
detectable:
- a **checkpoint** is a record in the chain (action `audit.checkpoint`) whose details
  sign `through_seq` (the record before it) and `head` (that record's hash);
- a **seal** is the last line of an export, `{"seal": {...}}`, outside the chain: it
  signs the range exported and its head hash, and carries the keyset (base64 of the
  signed envelope), so a verifier needs only the pinned root key. Cutting lines off
  an export removes or contradicts the seal.
The two signatures use different domain strings, so neither can stand in for the other.

`verify_chain` names the first bad line: its position (line number) and the sequence
that belongs there. This module is pure: no I/O beyond what a caller hands it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature

from sentinel.envelope import SigningKey, TrustedKey
from sentinel.errors import InvalidArgument, SentinelError
from sentinel.keyset import AUDIT, open_keyset

ZERO_HASH = "0" * 64
CHECKPOINT = "audit.checkpoint"
CHECKPOINT_DOMAIN = b"sentinel-audit-checkpoint\0"
SEAL_DOMAIN = b"sentinel-audit-seal\0"
_STRINGS = ("time", "actor", "action", "target", "outcome", "reason")
_FIELDS = frozenset({*_STRINGS, "seq", "policy_version", "details", "prev", "hash"})
_SEAL_FIELDS = frozenset(
    {"from_seq", "through_seq", "head", "sealed_at", "key_id", "signature", "keyset"}
)
_HEX = frozenset("0123456789abcdef")


class RecordError(InvalidArgument):
    """A line that is not a well-formed record (or seal)."""

    reason = "AUDIT_RECORD_INVALID"


@dataclass(frozen=True, slots=True)
class AuditRecord:
    seq: int
    time: str
    actor: str
    action: str
    target: str
    outcome: str
    reason: str
    policy_version: int
    details: dict[str, Any]
    prev: str
    hash: str

    def line(self) -> bytes:
        """The record as stored, exported and hashed (no newline)."""
        return canonical({**_body(self), "hash": self.hash})


def canonical(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8; raises RecordError on a float or a non-JSON type."""
    _check_json(value)
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode()
    except UnicodeEncodeError as exc:  # a lone surrogate
        raise RecordError(f"not encodable as UTF-8: {exc}") from exc


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with microseconds: one length, so records sort as text."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_record(
    seq: int,
    prev: str,
    *,
    time: datetime,
    action: str,
    actor: str,
    target: str = "",
    outcome: str = "",
    reason: str = "",
    policy_version: int = 0,
    details: Mapping[str, Any] | None = None,
) -> AuditRecord:
    """The record that follows the one whose hash is `prev`, with its own hash."""
    record = _check_fields(
        {
            "seq": seq,
            "time": format_time(time),
            "actor": actor,
            "action": action,
            "target": target,
            "outcome": outcome,
            "reason": reason,
            "policy_version": policy_version,
            "details": dict(details or {}),
            "prev": prev,
            "hash": ZERO_HASH,
        }
    )
    return replace(record, hash=record_hash(record))


def record_hash(record: AuditRecord) -> str:
    return hashlib.sha256(canonical(_body(record))).hexdigest()


def parse_record(line: bytes) -> AuditRecord:
    """A record from its exact line; RecordError unless it is canonical and its hash holds."""
    value = _json(line)
    if not isinstance(value, dict) or "seal" in value:
        raise RecordError("not a record")
    record = _check_fields(value)
    if canonical(value) != line:
        raise RecordError("not in canonical form (edited)")
    if record_hash(record) != record.hash:
        raise RecordError("hash mismatch (record edited)")
    return record


def damaged_head_hash(line: bytes) -> str:
    """What a record that does not parse is chained past: the SHA-256 of its bytes. The
    verifier still names that record; the chain after it stays checkable."""
    return hashlib.sha256(line).hexdigest()


# -- checkpoints and seals ------------------------------------------------------------


def checkpoint_details(through_seq: int, head: str, signer: SigningKey) -> dict[str, Any]:
    """The details of an `audit.checkpoint` record appended right after `through_seq`."""
    signature = signer.private_key.sign(_checkpoint_message(through_seq, head))
    return {
        "through_seq": through_seq,
        "head": head,
        "key_id": signer.key_id,
        "signature": base64.b64encode(signature).decode(),
    }


@dataclass(frozen=True, slots=True)
class Seal:
    from_seq: int
    through_seq: int
    head: str
    sealed_at: str
    key_id: str
    signature: bytes
    keyset: bytes

    def message(self) -> bytes:
        """What the seal signs: the range, its head, the time, and the exact keyset bytes
        (an envelope's `payload_type` is unsigned, so the keyset's own signature alone
        would let those bytes change)."""
        keyset = hashlib.sha256(self.keyset).hexdigest()
        text = f"{self.from_seq}\0{self.through_seq}\0{self.head}\0{self.sealed_at}\0{keyset}"
        return SEAL_DOMAIN + text.encode()


def make_seal(
    from_seq: int,
    through_seq: int,
    head: str,
    *,
    sealed_at: datetime,
    signer: SigningKey,
    keyset_envelope: bytes,
) -> bytes:
    """The seal line of an export of records `from_seq..through_seq` ending in `head`."""
    unsigned = Seal(
        from_seq, through_seq, head, format_time(sealed_at), signer.key_id, b"", keyset_envelope
    )
    signature = signer.private_key.sign(unsigned.message())
    return canonical(
        {
            "seal": {
                "from_seq": from_seq,
                "through_seq": through_seq,
                "head": head,
                "sealed_at": unsigned.sealed_at,
                "key_id": signer.key_id,
                "signature": base64.b64encode(signature).decode(),
                "keyset": base64.b64encode(keyset_envelope).decode(),
            }
        }
    )


def parse_seal(line: bytes) -> Seal:
    value = _json(line)
    if not isinstance(value, dict) or set(value) != {"seal"} or not isinstance(value["seal"], dict):
        raise RecordError("not a seal")
    body = value["seal"]
    if set(body) != _SEAL_FIELDS:
        raise RecordError(f"seal fields are {sorted(body)}, not {sorted(_SEAL_FIELDS)}")
    if canonical(value) != line:
        raise RecordError("seal not in canonical form (edited)")
    for name in ("from_seq", "through_seq"):
        if not _is_int(body[name]) or body[name] < 0:
            raise RecordError(f"seal {name} is not a sequence")
    if not _is_hash(body["head"]):
        raise RecordError("seal head is not a hash")
    for name in ("sealed_at", "key_id", "signature", "keyset"):
        if not isinstance(body[name], str):
            raise RecordError(f"seal {name} is not a string")
    return Seal(
        body["from_seq"],
        body["through_seq"],
        body["head"],
        body["sealed_at"],
        body["key_id"],
        _b64(body["signature"], "seal signature"),
        _b64(body["keyset"], "seal keyset"),
    )


# -- verification ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    """The first bad line: `seq` is the sequence that belongs at `line` (1-based)."""

    seq: int
    line: int
    message: str
    in_seal: bool = False


@dataclass(frozen=True, slots=True)
class Verification:
    records: int
    first_seq: int
    last_seq: int
    head: str
    checkpoints: int
    sealed_by: str
    problem: Problem | None

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass
class _Walk:
    expected: int
    prev: str | None
    line: int = 0
    records: int = 0
    # (seq, line, details) of every checkpoint, checked once the seal gave the keys.
    checkpoints: list[tuple[int, int, dict[str, Any]]] = field(default_factory=list)
    seal: tuple[int, bytes] | None = None
    problem: Problem | None = None


def verify_chain(
    lines: Iterable[bytes],
    *,
    roots: Mapping[str, TrustedKey] | None = None,
    require_seal: bool = True,
    first_seq: int = 1,
) -> Verification:
    """Check a run of records (lines without their newline) that should start at
    `first_seq`: each canonical, hashed, numbered and chained to the one before; every
    checkpoint covering the record before it; with `require_seal`, a last line sealing
    exactly this range. With `roots` (the pinned root keys) the seal's keyset, the
    seal and every checkpoint signature are verified too. Returns the first problem."""
    walk = _Walk(expected=first_seq, prev=ZERO_HASH if first_seq == 1 else None)
    for raw in lines:
        walk.line += 1
        if walk.problem is not None:
            _remember_seal(walk, raw)  # only to find the keys for earlier checkpoints
            continue
        if walk.seal is not None:
            walk.problem = Problem(
                walk.expected, walk.seal[0], "the seal is not the last line", in_seal=True
            )
            _remember_seal(walk, raw)
            continue
        _step(walk, raw)
    if walk.problem is None and walk.seal is None and require_seal:
        walk.problem = Problem(
            walk.expected,
            walk.line + 1,
            f"the export ends without its seal: truncated after seq {walk.expected - 1}",
        )
    sealed_by, keys = "", None
    if walk.seal is not None:
        sealed_by, keys = _check_seal(walk, roots, first_seq)
    if keys is not None:
        _check_checkpoint_signatures(walk, keys)
    return Verification(
        records=walk.records,
        first_seq=first_seq,
        last_seq=walk.expected - 1,
        head=walk.prev or "",
        checkpoints=len(walk.checkpoints),
        sealed_by=sealed_by,
        problem=walk.problem,
    )


def _step(walk: _Walk, raw: bytes) -> None:
    """One line while the chain still holds: a record, or the seal."""
    if raw.startswith(b'{"seal":'):
        try:
            parse_seal(raw)
        except RecordError as exc:
            walk.problem = Problem(walk.expected, walk.line, str(exc), in_seal=True)
            return
        walk.seal = (walk.line, raw)
        return
    try:
        record = parse_record(raw)
    except RecordError as exc:
        walk.problem = Problem(walk.expected, walk.line, str(exc))
        return
    expected = walk.expected
    if record.seq != expected:
        how = (
            "deleted or moved"
            if record.seq > expected
            else "a copy, or moved (duplicated or reordered)"
        )
        walk.problem = Problem(
            expected, walk.line, f"seq {expected} missing: this line holds seq {record.seq} ({how})"
        )
        return
    if walk.prev is not None and record.prev != walk.prev:
        walk.problem = Problem(
            expected, walk.line, f"prev is not the hash of seq {expected - 1} (chain broken)"
        )
        return
    if record.action == CHECKPOINT:
        why = _checkpoint_shape(record)
        if why:
            walk.problem = Problem(expected, walk.line, why)
            return
        walk.checkpoints.append((record.seq, walk.line, record.details))
    walk.prev, walk.expected, walk.records = record.hash, expected + 1, walk.records + 1


def _remember_seal(walk: _Walk, raw: bytes) -> None:
    if raw.startswith(b'{"seal":'):
        try:
            parse_seal(raw)
        except RecordError:
            return
        if walk.seal is None or walk.seal[0] < walk.line:
            walk.seal = (walk.line, raw)


def _check_seal(
    walk: _Walk, roots: Mapping[str, TrustedKey] | None, first_seq: int
) -> tuple[str, dict[str, TrustedKey] | None]:
    """The seal's key id and the audit keys of its keyset (None without roots, or when
    the keyset does not verify); records a problem if the seal does not hold."""
    line, raw = walk.seal  # type: ignore[misc]
    seal = parse_seal(raw)
    keys: dict[str, TrustedKey] | None = None
    found: str | None = None
    if roots is not None:
        try:
            keyset = open_keyset(seal.keyset, roots)
        except SentinelError:
            found = "the seal's keyset does not verify against the root key"
        else:
            keys = {k: v for k, v in keyset.keys.items() if v.purpose == AUDIT}
            key = keys.get(seal.key_id)
            if key is None:
                found = f"the seal is signed by {seal.key_id!r}, not an audit key of its keyset"
            elif not _signed(key, seal.signature, seal.message()):
                found = "the seal's signature does not verify (seal edited)"
    if found is None and walk.problem is None:
        found = _seal_coverage(walk, seal, first_seq)
    if found is not None and walk.problem is None:
        walk.problem = Problem(walk.expected, line, found, in_seal=True)
    return seal.key_id, keys


def _seal_coverage(walk: _Walk, seal: Seal, first_seq: int) -> str | None:
    last = walk.expected - 1
    if seal.from_seq != first_seq:
        return f"the seal covers seq {seal.from_seq} on, but the records start at seq {first_seq}"
    if seal.through_seq > last:
        return (
            f"seq {last + 1}..{seal.through_seq} missing: truncated (the seal covers "
            f"through seq {seal.through_seq})"
        )
    if seal.through_seq < last:
        extra = seal.through_seq + 1
        walk.problem = Problem(
            extra,
            extra - first_seq + 1,
            f"seq {extra} lies beyond the sealed range (added after the export was sealed)",
        )
        return None
    if seal.head != (walk.prev or ZERO_HASH):  # an empty range's head is all zeros
        return f"the seal's head is not the hash of seq {last} (records rewritten)"
    return None


def _check_checkpoint_signatures(walk: _Walk, keys: Mapping[str, TrustedKey]) -> None:
    for seq, line, details in walk.checkpoints:
        if walk.problem is not None and walk.problem.line <= line:
            return
        key = keys.get(details["key_id"])
        message = _checkpoint_message(details["through_seq"], details["head"])
        signature = _b64_or_empty(details["signature"])
        if key is None or not _signed(key, signature, message):
            walk.problem = Problem(seq, line, "checkpoint signature does not verify")
            return


def _checkpoint_shape(record: AuditRecord) -> str:
    details = record.details
    if set(details) != {"through_seq", "head", "key_id", "signature"}:
        return "checkpoint details are malformed"
    through = details["through_seq"]
    if not _is_int(through) or through != record.seq - 1 or details["head"] != record.prev:
        return "checkpoint does not cover the record before it"
    if not isinstance(details["key_id"], str) or not isinstance(details["signature"], str):
        return "checkpoint details are malformed"
    return ""


def _checkpoint_message(through_seq: int, head: str) -> bytes:
    return CHECKPOINT_DOMAIN + f"{through_seq}\0{head}".encode()


def _signed(key: TrustedKey, signature: bytes, message: bytes) -> bool:
    try:
        key.public_key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


# -- parsing helpers ------------------------------------------------------------------


def _body(record: AuditRecord) -> dict[str, Any]:
    return {
        "seq": record.seq,
        "time": record.time,
        "actor": record.actor,
        "action": record.action,
        "target": record.target,
        "outcome": record.outcome,
        "reason": record.reason,
        "policy_version": record.policy_version,
        "details": record.details,
        "prev": record.prev,
    }


def _json(line: bytes) -> Any:
    try:
        return json.loads(line.decode(), parse_float=_no_float, parse_constant=_no_float)
    except (UnicodeDecodeError, ValueError) as exc:
        raise RecordError("unparseable (not a JSON line)") from exc


def _no_float(text: str) -> Any:
    raise RecordError(f"{text}: a record holds no floats (one value, one encoding)")


def _check_fields(value: dict[str, Any]) -> AuditRecord:
    if set(value) != _FIELDS:
        missing, extra = _FIELDS - set(value), set(value) - _FIELDS
        raise RecordError(f"malformed record (missing {sorted(missing)}, extra {sorted(extra)})")
    for name in _STRINGS:
        if not isinstance(value[name], str):
            raise RecordError(f"malformed record: {name} is not a string")
    if not _is_int(value["seq"]) or value["seq"] < 1:
        raise RecordError("malformed record: seq is not a positive integer")
    if not _is_int(value["policy_version"]) or value["policy_version"] < 0:
        raise RecordError("malformed record: policy_version is not an integer")
    if not isinstance(value["details"], dict):
        raise RecordError("malformed record: details is not an object")
    if not _is_hash(value["prev"]) or not _is_hash(value["hash"]):
        raise RecordError("malformed record: prev or hash is not a SHA-256 hex digest")
    _check_json(value["details"])
    return AuditRecord(**value)


def _check_json(value: Any) -> None:
    if value is None or isinstance(value, bool | str) or _is_int(value):
        return
    if isinstance(value, list):
        for item in value:
            _check_json(item)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise RecordError(f"key {key!r} is not a string")
            _check_json(item)
        return
    raise RecordError(f"{type(value).__name__} has no canonical encoding here (use str or int)")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_hash(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


def _b64(text: str, what: str) -> bytes:
    """Strict base64: decoders ignore the padding bits, so two texts can decode to the
    same bytes; only the canonical one is accepted, or an edit could go unnoticed."""
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RecordError(f"{what} is not base64") from exc
    if base64.b64encode(data).decode() != text:
        raise RecordError(f"{what} is not canonical base64 (edited)")
    return data


def _b64_or_empty(text: str) -> bytes:
    try:
        return _b64(text, "signature")
    except RecordError:
        return b""


def split_lines(data: bytes) -> list[bytes]:
    """The lines of an export file, without their newlines (a last newline ends the file)."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines
