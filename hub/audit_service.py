"""AuditService: list the audit log's records and export them, sealed. Admins only.

Records travel as their exact stored line, so an export written to a file holds the
bytes that were hashed. `ExportAudit` streams `from_seq` through the head as it was
when the call began, then a seal signed by the hub's audit key, carrying the keyset
that vouches for that key (see `sentinel.audit`). `ListAuditRecords` pages forward
from a sequence, optionally filtered by action prefix and actor; one page scans at
most `MAX_SCAN` records, so a rare filter returns short pages with a token.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from datetime import datetime

import grpc

from hub.audit_log import AuditLog
from hub.keys import KeyManager
from sentinel.audit import ZERO_HASH, RecordError, damaged_head_hash, make_seal, parse_record
from sentinel.errors import InvalidArgument
from sentinel.v1 import audit_pb2, audit_pb2_grpc

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_SCAN = 10_000


class AuditService(audit_pb2_grpc.AuditServiceServicer):
    def __init__(self, audit: AuditLog, keys: KeyManager, clock: Callable[[], datetime]) -> None:
        self._audit = audit
        self._keys = keys
        self._clock = clock

    async def ListAuditRecords(
        self, request: audit_pb2.ListAuditRecordsRequest, context: grpc.aio.ServicerContext
    ) -> audit_pb2.ListAuditRecordsResponse:
        if not 0 <= request.page_size <= MAX_PAGE_SIZE:
            raise InvalidArgument(f"page_size must be 0..{MAX_PAGE_SIZE}", reason="BAD_PAGE_SIZE")
        page_size = request.page_size or DEFAULT_PAGE_SIZE
        start = _decode_token(request.page_token) if request.page_token else request.from_seq
        start = max(1, start)
        head = await self._audit.head()
        response = audit_pb2.ListAuditRecordsResponse(head_seq=head.seq)
        last = min(head.seq, start + MAX_SCAN - 1)
        scanned = start - 1
        async with contextlib.aclosing(self._audit.read(start, last)) as records:
            async for seq, data in records:
                scanned = seq
                if _matches(data, request):
                    response.records.add(seq=seq, line=_text(data))
                    if len(response.records) == page_size:
                        break
        if scanned < head.seq:
            response.next_page_token = _encode_token(scanned + 1)
        return response

    async def ExportAudit(
        self, request: audit_pb2.ExportAuditRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[audit_pb2.ExportAuditResponse]:
        start = max(1, request.from_seq)
        head = await self._audit.head()
        if start > head.seq + 1:
            raise InvalidArgument(
                f"from_seq {start} lies beyond the head (seq {head.seq})", reason="BAD_FROM_SEQ"
            )
        through, last_hash = start - 1, ZERO_HASH
        async with contextlib.aclosing(self._audit.read(start, head.seq)) as records:
            async for seq, data in records:
                yield audit_pb2.ExportAuditResponse(
                    record=audit_pb2.AuditRecord(seq=seq, line=_text(data))
                )
                through, last_hash = seq, _hash_of(data)
        seal = make_seal(
            start,
            through,
            last_hash,
            sealed_at=self._clock(),
            signer=self._keys.audit_signer,
            keyset_envelope=self._keys.keyset.envelope,
        )
        yield audit_pb2.ExportAuditResponse(seal=seal.decode())


def _matches(data: bytes, request: audit_pb2.ListAuditRecordsRequest) -> bool:
    if not request.action and not request.actor:
        return True
    try:
        value = json.loads(data)
    except ValueError:
        return False
    if not isinstance(value, dict):
        return False
    action, actor = value.get("action"), value.get("actor")
    if request.action and not (isinstance(action, str) and action.startswith(request.action)):
        return False
    return not request.actor or actor == request.actor


def _hash_of(data: bytes) -> str:
    try:
        return parse_record(data).hash
    except RecordError:
        return damaged_head_hash(data)


def _text(data: bytes) -> str:
    # Records are UTF-8 by construction; a damaged one is shown, and fails verification.
    return data.decode(errors="replace")


def _encode_token(seq: int) -> str:
    return base64.urlsafe_b64encode(f"audit:{seq}".encode()).decode()


def _decode_token(token: str) -> int:
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
        prefix, _, seq = text.partition(":")
        if prefix != "audit":
            raise ValueError(text)
        return int(seq)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidArgument(
            "page_token is not one this hub issued", reason="BAD_PAGE_TOKEN"
        ) from exc
