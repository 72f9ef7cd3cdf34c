"""Bootstrap enrollment (the kubelet TLS-bootstrap model): one-time tokens, CSRs, approval.

A token is `<id>.<secret>` (6 and 16 characters of [a-z0-9], as kubeadm's); the hub
keeps only the SHA-256 of the secret, in JetStream KV (`sentinel_enroll_tokens`), so
every hub replica honours it and none can leak it.

Invariants:
- a token enrolls at most one node: it is marked used by a compare-and-set on its KV
  revision, so two concurrent uses cannot both win; an expired, unknown or wrong token
  enrolls nothing, and a refusal for a bad CSR leaves the token usable;
- a token bound to a node id enrolls only that id; an unbound one enrolls the id the CSR
  asks for, if it is a valid node id that no node holds yet (the claim is a KV create,
  atomic across hubs);
- a CSR may ask only for a node identity of this trust domain; the certificate is
  built by the hub (`hub.certificates`), never copied from the CSR;
- with manual approval the token is consumed by the request, and the certificate is
  issued only when an admin approves; the node polls with its enrollment id and token;
- labels from the token or the approving admin are the node's assigned labels, which
  win over the labels it reports.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

import certs
from certs.builder import certificate_pem
from hub.certificates import NodeCertificates
from hub.registry import Registry
from hub.state import bucket_keys, ensure_bucket, store_unavailable
from hub.storage_budget import StorageBudget
from sentinel import subjects
from sentinel.durations import to_timestamp
from sentinel.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from sentinel.identity import validate_node_id
from sentinel.selectors import validate_label
from sentinel.v1 import enrollment_pb2

log = logging.getLogger(__name__)

_TOKEN = re.compile(r"([a-z0-9]{6})\.([a-z0-9]{16})")
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
MAX_TOKEN_TTL = timedelta(days=7)
PENDING = enrollment_pb2.ENROLLMENT_STATE_PENDING_APPROVAL
ISSUED = enrollment_pb2.ENROLLMENT_STATE_ISSUED


class _Token(msgspec.Struct, frozen=True):
    secret_sha256: str
    node_id: str
    labels: dict[str, str]
    expires_at: float
    manual_approval: bool
    created_by: str
    # The enrollment that used it; "" while unused.
    used_by: str = ""


class _Enrollment(msgspec.Struct, frozen=True):
    enrollment_id: str
    node_id: str
    state: int
    labels: dict[str, str]
    reported_labels: dict[str, str]
    requested_at: float
    token_id: str
    csr_pem: bytes
    approved_by: str = ""
    certificate_pem: bytes = b""
    serial: str = ""

    def message(self) -> enrollment_pb2.Enrollment:
        return enrollment_pb2.Enrollment(
            enrollment_id=self.enrollment_id,
            node_id=self.node_id,
            state=self.state,  # type: ignore[arg-type]
            labels=self.labels,
            reported_labels=self.reported_labels,
            requested_at=to_timestamp(datetime.fromtimestamp(self.requested_at, UTC)),
            approved_by=self.approved_by,
            serial=self.serial,
        )


@dataclass(frozen=True, slots=True)
class NewToken:
    token: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Outcome:
    """What Enroll answers: the enrollment, and the certificate once issued."""

    enrollment: enrollment_pb2.Enrollment
    certificate_pem: bytes = b""


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _random(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def _labels(labels: Mapping[str, str]) -> dict[str, str]:
    for key, value in labels.items():
        validate_label(key, value)
    return dict(labels)


class Enrollments:
    def __init__(
        self,
        js: JetStreamContext,
        tokens: KeyValue,
        records: KeyValue,
        *,
        certificates: NodeCertificates,
        registry: Registry,
        clock: Callable[[], datetime],
    ) -> None:
        self._js = js
        self._tokens = tokens
        self._records = records
        self._certificates = certificates
        self._registry = registry
        self._clock = clock

    @classmethod
    async def open(
        cls,
        js: JetStreamContext,
        *,
        certificates: NodeCertificates,
        registry: Registry,
        clock: Callable[[], datetime],
        budget: StorageBudget | None = None,
    ) -> Enrollments:
        # Reserved shares: enrolling is never refused for room another stream took.
        budget = budget or StorageBudget()
        token_ttl_s = (MAX_TOKEN_TTL + timedelta(days=1)).total_seconds()
        tokens = await ensure_bucket(
            js, budget.bucket_config(budget.enrollment_tokens, ttl_s=token_ttl_s)
        )
        records = await ensure_bucket(js, budget.bucket_config(budget.enrollments))
        return cls(
            js,
            tokens,
            records,
            certificates=certificates,
            registry=registry,
            clock=clock,
        )

    async def create_token(
        self,
        *,
        created_by: str,
        ttl: timedelta,
        node_id: str = "",
        labels: Mapping[str, str] | None = None,
        manual_approval: bool = False,
    ) -> NewToken:
        if not timedelta(0) < ttl <= MAX_TOKEN_TTL:
            raise InvalidArgument(
                f"token ttl must be positive and at most {MAX_TOKEN_TTL.days} days, got {ttl}",
                reason="INVALID_TTL",
            )
        if node_id:
            validate_node_id(node_id)
            await self._refuse_existing(node_id)
        expires_at = self._clock() + ttl
        token_id, secret = _random(6), _random(16)
        record = _Token(
            secret_sha256=_hash(secret),
            node_id=node_id,
            labels=_labels(labels or {}),
            expires_at=expires_at.timestamp(),
            manual_approval=manual_approval,
            created_by=created_by,
        )
        with store_unavailable("storing an enrollment token"):
            await self._tokens.create(token_id, msgspec.json.encode(record))
        log.info(
            "enrollment token %s created by %s (node %s)", token_id, created_by, node_id or "*"
        )
        return NewToken(f"{token_id}.{secret}", expires_at)

    async def enroll(
        self,
        token: str,
        csr_pem: bytes,
        reported_labels: Mapping[str, str],
        enrollment_id: str = "",
    ) -> Outcome:
        """One Enroll call: a first request, or a poll of one awaiting approval."""
        token_id, stored, revision = await self._check_token(token, polling=bool(enrollment_id))
        if enrollment_id:
            return await self._poll(enrollment_id, token_id)
        request = certs.read_node_request(csr_pem, self._certificates.trust_domain)
        node_id = request.node_id
        if stored.node_id and node_id != stored.node_id:
            raise PermissionDenied(
                f"this token enrolls node {stored.node_id!r} only; the CSR asks for {node_id!r}",
                reason="TOKEN_NODE_MISMATCH",
            )
        await self._refuse_existing(node_id)
        enrollment_id = uuid.uuid4().hex
        await self._use_token(token_id, stored, revision, enrollment_id)
        await self._claim(node_id, enrollment_id)
        record = _Enrollment(
            enrollment_id=enrollment_id,
            node_id=node_id,
            state=PENDING,
            labels=stored.labels,
            reported_labels=_labels(reported_labels),
            requested_at=self._clock().timestamp(),
            token_id=token_id,
            csr_pem=csr_pem,
        )
        if stored.manual_approval:
            await self._save(record)
            log.info("enrollment %s of node %s awaits approval", enrollment_id, node_id)
            return Outcome(record.message())
        issued = await self._issue(record, approved_by="")
        return Outcome(issued.message(), issued.certificate_pem)

    async def approve(
        self, enrollment_id: str, approved_by: str, labels: Mapping[str, str]
    ) -> enrollment_pb2.Enrollment:
        record, _ = await self._load(enrollment_id)
        if record.state != PENDING:
            raise FailedPrecondition(
                f"enrollment {enrollment_id} is not awaiting approval",
                reason="ENROLLMENT_NOT_PENDING",
            )
        merged = {**record.labels, **_labels(labels)}
        record = msgspec.structs.replace(record, labels=merged)
        return (await self._issue(record, approved_by=approved_by)).message()

    async def list(self, state: int = 0) -> list[enrollment_pb2.Enrollment]:
        with store_unavailable("listing enrollments"):
            keys = await bucket_keys(self._js, subjects.ENROLLMENTS_BUCKET)
        found = []
        for key in keys:
            if key.startswith("enrollment."):
                record, _ = await self._load(key.removeprefix("enrollment."))
                if not state or record.state == state:
                    found.append(record)
        found.sort(key=lambda r: r.requested_at)
        return [r.message() for r in found]

    async def _issue(self, record: _Enrollment, *, approved_by: str) -> _Enrollment:
        request = certs.read_node_request(record.csr_pem, self._certificates.trust_domain)
        cert = await self._certificates.issue(record.node_id, request.public_key, reason="enroll")
        issued = msgspec.structs.replace(
            record,
            state=ISSUED,
            approved_by=approved_by,
            certificate_pem=certificate_pem(cert),
            serial=certs.serial_hex(cert),
        )
        await self._save(issued)
        await self._registry.enrolled(
            record.node_id, record.labels, record.reported_labels, self._clock()
        )
        log.info("node %s enrolled (certificate %s)", record.node_id, issued.serial)
        return issued

    async def _poll(self, enrollment_id: str, token_id: str) -> Outcome:
        record, _ = await self._load(enrollment_id)
        if record.token_id != token_id:
            raise PermissionDenied(
                "this token did not request that enrollment", reason="TOKEN_INVALID"
            )
        return Outcome(record.message(), record.certificate_pem)

    async def _check_token(self, token: str, *, polling: bool) -> tuple[str, _Token, int]:
        match = _TOKEN.fullmatch(token)
        if match is None:
            raise PermissionDenied(
                "not an enrollment token (expected <6 chars>.<16 chars>)", reason="TOKEN_INVALID"
            )
        token_id, secret = match.groups()
        with store_unavailable("reading an enrollment token"):
            try:
                entry = await self._tokens.get(token_id)
            except KeyNotFoundError:
                entry = None
        if entry is None or entry.value is None or entry.revision is None:
            raise PermissionDenied("unknown enrollment token", reason="TOKEN_INVALID")
        stored = msgspec.json.decode(entry.value, type=_Token)
        if not hmac.compare_digest(stored.secret_sha256, _hash(secret)):
            raise PermissionDenied("unknown enrollment token", reason="TOKEN_INVALID")
        if polling:
            return token_id, stored, entry.revision
        if stored.used_by:
            raise PermissionDenied(
                "this enrollment token was already used; create a new one",
                reason="TOKEN_USED",
            )
        if self._clock().timestamp() >= stored.expires_at:
            raise PermissionDenied(
                "this enrollment token has expired; create a new one", reason="TOKEN_EXPIRED"
            )
        return token_id, stored, entry.revision

    async def _use_token(
        self, token_id: str, stored: _Token, revision: int, enrollment_id: str
    ) -> None:
        used = msgspec.structs.replace(stored, used_by=enrollment_id)
        with store_unavailable("using an enrollment token"):
            try:
                await self._tokens.update(token_id, msgspec.json.encode(used), last=revision)
            except KeyWrongLastSequenceError as exc:
                raise PermissionDenied(
                    "this enrollment token was already used; create a new one",
                    reason="TOKEN_USED",
                ) from exc

    async def _refuse_existing(self, node_id: str) -> None:
        """Known to the registry (it connected, or enrolled) or claimed by an enrollment
        (the claim is shared by every hub)."""
        with store_unavailable("checking a node id"):
            try:
                claimed = await self._records.get(f"node.{node_id}")
            except KeyNotFoundError:
                claimed = None
        if self._registry.get(node_id) is not None or claimed is not None:
            raise FailedPrecondition(
                f"node {node_id!r} already exists; enroll a new node under a new id",
                reason="NODE_EXISTS",
                node_id=node_id,
            )

    async def _claim(self, node_id: str, enrollment_id: str) -> None:
        with store_unavailable("claiming a node id"):
            try:
                await self._records.create(f"node.{node_id}", enrollment_id.encode())
            except KeyWrongLastSequenceError as exc:
                raise FailedPrecondition(
                    f"node {node_id!r} already exists; enroll a new node under a new id",
                    reason="NODE_EXISTS",
                    node_id=node_id,
                ) from exc

    async def _save(self, record: _Enrollment) -> None:
        with store_unavailable("storing an enrollment"):
            await self._records.put(
                f"enrollment.{record.enrollment_id}", msgspec.json.encode(record)
            )

    async def _load(self, enrollment_id: str) -> tuple[_Enrollment, int]:
        if not re.fullmatch(r"[0-9a-f]{32}", enrollment_id):
            raise NotFound(f"no enrollment {enrollment_id!r}", reason="ENROLLMENT_NOT_FOUND")
        with store_unavailable("reading an enrollment"):
            try:
                entry = await self._records.get(f"enrollment.{enrollment_id}")
            except KeyNotFoundError:
                entry = None
        if entry is None or entry.value is None:
            raise NotFound(f"no enrollment {enrollment_id!r}", reason="ENROLLMENT_NOT_FOUND")
        return msgspec.json.decode(entry.value, type=_Enrollment), entry.revision or 0
