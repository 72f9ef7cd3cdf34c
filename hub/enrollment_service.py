"""EnrollmentService on both listeners.

On the enrollment listener (server-authenticated TLS, no client certificate) only
`Enroll` is served: the bootstrap token is the caller's only credential. On the main
mTLS listener the interceptor refuses `Enroll` and lets admins create tokens, list and
approve enrollments, and revoke certificates. Every enrollment outcome and every
revocation is audited.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc

import certs
from hub.audit_log import AuditLog
from hub.auth import current_identity
from hub.certificates import NodeCertificates
from hub.enrollment import Enrollments
from hub.errors import abort, abort_with_error
from hub.keys import KeyManager
from hub.policy_store import PolicyStore
from hub.revocation import Revocations, normalise_serial
from sentinel.durations import from_proto_duration, to_timestamp
from sentinel.errors import InvalidArgument, SentinelError
from sentinel.v1 import enrollment_pb2, enrollment_pb2_grpc, signing_pb2

log = logging.getLogger(__name__)

MAX_ENROLL_REQUEST_BYTES = 64 * 1024


class EnrollmentService(enrollment_pb2_grpc.EnrollmentServiceServicer):
    def __init__(
        self,
        enrollments: Enrollments,
        certificates: NodeCertificates,
        revocations: Revocations,
        keys: KeyManager,
        policies: PolicyStore,
        *,
        root_public_pem: bytes,
        addresses: Callable[[], tuple[str, str]],
        audit: AuditLog | None,
    ) -> None:
        self._enrollments = enrollments
        self._certificates = certificates
        self._revocations = revocations
        self._keys = keys
        self._policies = policies
        self._root_public_pem = root_public_pem
        # (enroll address, hub address) as agents should dial them.
        self._addresses = addresses
        self._audit = audit

    async def Enroll(
        self, request: enrollment_pb2.EnrollRequest, context: grpc.aio.ServicerContext
    ) -> enrollment_pb2.EnrollResponse:
        peer = context.peer()
        actor = _token_actor(request.token)
        try:
            outcome = await self._enrollments.enroll(
                request.token, request.csr_pem, dict(request.labels), request.enrollment_id
            )
        except SentinelError as exc:
            log.info("enrollment from %s refused (%s): %s", peer, exc.reason, exc)
            await self._record("enrollment.refused", actor, "", "refused", exc.reason, peer=peer)
            await abort_with_error(context, exc)
            raise  # unreachable: abort raises
        enrollment = outcome.enrollment
        response = enrollment_pb2.EnrollResponse(enrollment=enrollment)
        if not outcome.certificate_pem:
            if not request.enrollment_id:
                await self._record(
                    "enrollment.requested", actor, enrollment.node_id, "pending", "", peer=peer
                )
            return response
        if not request.enrollment_id:
            await self._record(
                "enrollment.issued",
                actor,
                enrollment.node_id,
                "issued",
                "",
                serial=enrollment.serial,
                peer=peer,
            )
        response.certificate_pem = outcome.certificate_pem
        response.ca_bundle_pem = self._certificates.ca_pem
        response.root_public_key = self._root_public_pem
        response.keyset.CopyFrom(signing_pb2.SignedEnvelope.FromString(self._keys.keyset.envelope))
        response.policy.CopyFrom(
            signing_pb2.SignedEnvelope.FromString(self._policies.current.envelope)
        )
        response.hub_address = self._addresses()[1]
        return response

    async def CreateEnrollmentToken(
        self,
        request: enrollment_pb2.CreateEnrollmentTokenRequest,
        context: grpc.aio.ServicerContext,
    ) -> enrollment_pb2.CreateEnrollmentTokenResponse:
        if not request.HasField("ttl"):
            raise InvalidArgument("a token needs a ttl", reason="INVALID_TTL")
        created = await self._enrollments.create_token(
            created_by=str(current_identity()),
            ttl=from_proto_duration(request.ttl),
            node_id=request.node_id,
            labels=dict(request.labels),
            manual_approval=request.manual_approval,
        )
        enroll_address, hub_address = self._addresses()
        return enrollment_pb2.CreateEnrollmentTokenResponse(
            token=created.token,
            expires_at=to_timestamp(created.expires_at),
            enroll_address=enroll_address,
            hub_address=hub_address,
            ca_hash=certs.ca_hash(self._certificates.ca_pem),
        )

    async def ListEnrollments(
        self, request: enrollment_pb2.ListEnrollmentsRequest, context: grpc.aio.ServicerContext
    ) -> enrollment_pb2.ListEnrollmentsResponse:
        found = await self._enrollments.list(request.state)
        return enrollment_pb2.ListEnrollmentsResponse(enrollments=found)

    async def ApproveEnrollment(
        self, request: enrollment_pb2.ApproveEnrollmentRequest, context: grpc.aio.ServicerContext
    ) -> enrollment_pb2.ApproveEnrollmentResponse:
        by = str(current_identity())
        enrollment = await self._enrollments.approve(
            request.enrollment_id, by, dict(request.labels)
        )
        await self._record(
            "enrollment.issued", by, enrollment.node_id, "issued", "", serial=enrollment.serial
        )
        return enrollment_pb2.ApproveEnrollmentResponse(enrollment=enrollment)

    async def RevokeCertificate(
        self, request: enrollment_pb2.RevokeCertificateRequest, context: grpc.aio.ServicerContext
    ) -> enrollment_pb2.RevokeCertificateResponse:
        by = str(current_identity())
        subject = request.WhichOneof("subject")
        reason = request.reason or "unspecified"
        if subject == "node_id":
            node_id = request.node_id
            serials = await self._certificates.serials_of(node_id)
            await self._revocations.revoke_node(node_id, by=by, reason=reason)
            for serial in serials:
                await self._revocations.revoke_serial(serial, by=by, reason=reason, node_id=node_id)
            target = node_id
        elif subject == "serial":
            serial = normalise_serial(request.serial)
            node_id = await self._certificates.node_of(serial)
            await self._revocations.revoke_serial(serial, by=by, reason=reason, node_id=node_id)
            serials, target = [serial], node_id or serial
        else:
            raise InvalidArgument("name a node id or a serial to revoke", reason="NO_SUBJECT")
        log.warning("revoked %s (%s) by %s: %s", target, ", ".join(serials) or "-", by, reason)
        await self._record(
            "certificate.revoked", by, target, "revoked", reason, serial=",".join(serials)
        )
        return enrollment_pb2.RevokeCertificateResponse(revoked_serials=serials)

    async def _record(
        self,
        action: str,
        actor: str,
        target: str,
        outcome: str,
        reason: str,
        *,
        serial: str = "",
        peer: str = "",
    ) -> None:
        if self._audit is None:
            return
        details = {k: v for k, v in (("serial", serial), ("peer", peer)) if v}
        await self._audit.append(
            action, actor=actor, target=target, outcome=outcome, reason=reason, details=details
        )


class PublicEnrollmentService(enrollment_pb2_grpc.EnrollmentServiceServicer):
    """What the enrollment listener serves: Enroll, and a refusal for everything else."""

    def __init__(self, service: EnrollmentService) -> None:
        self._service = service

    async def Enroll(
        self, request: enrollment_pb2.EnrollRequest, context: grpc.aio.ServicerContext
    ) -> enrollment_pb2.EnrollResponse:
        return await self._service.Enroll(request, context)

    async def _refuse(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await abort(
            context,
            grpc.StatusCode.PERMISSION_DENIED,
            "the enrollment listener serves EnrollmentService/Enroll only; use the hub's "
            "mTLS address",
            "WRONG_LISTENER",
        )

    CreateEnrollmentToken = _refuse
    ListEnrollments = _refuse
    ApproveEnrollment = _refuse
    RevokeCertificate = _refuse


def _token_actor(token: str) -> str:
    """Who enrolls: the token's public id (its first part, as kubeadm's), never its secret."""
    token_id = token.partition(".")[0]
    if len(token_id) == 6 and token_id.isascii() and token_id.isalnum():
        return f"enrollment-token/{token_id.lower()}"
    return "enrollment-token/invalid"
