"""Bootstrap enrollment against a real hub: the enrollment port (server-authenticated TLS),
one-time tokens in JetStream KV, CSRs checked by the hub, files an agent then runs from."""

from __future__ import annotations

import asyncio
import socket
import ssl
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

import certs
from edge_agent.app import Agent
from edge_agent.enroll import Enrolled, enroll, fetch_pinned_ca
from edge_agent.settings import AgentSettings, LinkSettings, SamplingSettings
from hub.app import Hub
from hub.registry import ONLINE
from sentinel.audit import AuditRecord, parse_record
from sentinel.durations import to_proto_duration
from sentinel.errors import SentinelError
from sentinel.rpc_errors import reason_of
from sentinel.tls import secure_aio_channel
from sentinel.v1 import enrollment_pb2, enrollment_pb2_grpc, fleet_pb2, fleet_pb2_grpc
from tests.conftest import WAIT_S, Pki, hub_settings
from tests.test_cert_rotation import copy_pki


@dataclass
class Clock:
    """The hub's clock, which a test moves forward (tokens expire by it)."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime.now(UTC))


@pytest.fixture
async def hub(pki: Pki, tmp_path: Path, clock: Clock) -> AsyncIterator[Hub]:
    settings = replace(hub_settings(pki, tmp_path / "hub"), enroll_listen="127.0.0.1:0")
    started = await Hub.start(settings, clock=clock)
    try:
        yield started
    finally:
        await started.stop()


@pytest.fixture
async def admin(pki: Pki, hub: Hub) -> AsyncIterator[enrollment_pb2_grpc.EnrollmentServiceStub]:
    async with secure_aio_channel(hub.address, pki.user("admin")) as channel:
        yield enrollment_pb2_grpc.EnrollmentServiceStub(channel)


async def new_token(
    admin: enrollment_pb2_grpc.EnrollmentServiceStub,
    *,
    node_id: str = "",
    labels: dict[str, str] | None = None,
    manual: bool = False,
    ttl: timedelta = timedelta(minutes=10),
) -> enrollment_pb2.CreateEnrollmentTokenResponse:
    response: enrollment_pb2.CreateEnrollmentTokenResponse = await admin.CreateEnrollmentToken(
        enrollment_pb2.CreateEnrollmentTokenRequest(
            node_id=node_id, labels=labels or {}, ttl=to_proto_duration(ttl), manual_approval=manual
        )
    )
    return response


async def join(
    token: enrollment_pb2.CreateEnrollmentTokenResponse,
    node_id: str,
    data_dir: Path,
    **options: object,
) -> Enrolled:
    """`sentinel agent enroll` as the printed line runs it (blocking: on a thread)."""
    return await asyncio.to_thread(
        enroll,
        token.enroll_address,
        token.token,
        token.ca_hash,
        node_id,
        data_dir,
        **options,  # type: ignore[arg-type]
    )


async def audited(hub: Hub, action: str) -> list[AuditRecord]:
    """The hub's audit records of one action, oldest first."""
    head = await hub.audit.head()
    records = [parse_record(line) async for _, line in hub.audit.read(1, head.seq)]
    return [r for r in records if r.action == action]


def enroll_stub(
    hub: Hub, pki: Pki
) -> tuple[grpc.aio.Channel, enrollment_pb2_grpc.EnrollmentServiceStub]:
    """A raw client of the enrollment port: trusts the CA, presents no certificate."""
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.layout.ca_cert.read_bytes())
    channel = grpc.aio.secure_channel(hub.trust.enroll_address, credentials)
    return channel, enrollment_pb2_grpc.EnrollmentServiceStub(channel)


def csr_for(uri: str) -> bytes:
    key = certs.builder.new_private_key()
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False
        )
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )


def agent_settings(enrolled: Enrolled, data_dir: Path, **labels: str) -> AgentSettings:
    return AgentSettings(
        certs_dir=enrolled.certs_dir,
        data_dir=data_dir,
        labels=labels,
        link=LinkSettings(hub_address=enrolled.hub_address, backoff_max_s=0.5),
        sampling=SamplingSettings(
            batch_interval=timedelta(seconds=5), sample_interval=timedelta(seconds=5)
        ),
    )


async def test_a_node_enrolls_with_a_token_and_runs_from_what_it_wrote(
    hub: Hub, admin: enrollment_pb2_grpc.EnrollmentServiceStub, pki: Pki, tmp_path: Path
) -> None:
    token = await new_token(admin, labels={"zone": "assigned", "pool": "a100"})
    assert token.ca_hash == certs.ca_hash(pki.layout.ca_cert.read_bytes())
    assert token.enroll_address == hub.trust.enroll_address
    data_dir = tmp_path / "edge"
    enrolled = await join(token, "edge-1", data_dir, labels={"zone": "reported", "rack": "r7"})

    assert enrolled.node_id == "edge-1"
    assert enrolled.hub_address == hub.address
    layout = certs.CertLayout(data_dir / "certs")
    key_mode = stat.S_IMODE(layout.node_key("edge-1").stat().st_mode)
    assert key_mode == 0o600
    assert layout.root_pub.read_bytes() == pki.layout.root_pub.read_bytes()
    assert (data_dir / "keyset.bin").exists() and (data_dir / "policy.bin").exists()
    issued = await hub.certificates.serials_of("edge-1")
    assert issued == [enrolled.serial]
    [record] = await audited(hub, "enrollment.issued")
    # The token's public id is the actor (never its secret); the peer address is kept too.
    assert record.actor == f"enrollment-token/{token.token.split('.')[0]}"
    assert token.token.split(".")[1] not in record.line().decode()
    assert (record.target, record.outcome, record.details["serial"]) == (
        "edge-1",
        "issued",
        enrolled.serial,
    )
    assert record.details["peer"].startswith("ipv4:127.0.0.1:")

    agent = await Agent.start(agent_settings(enrolled, data_dir, zone="self", rack="r9"))
    try:
        await hub.registry.wait_for(
            lambda: (n := hub.registry.get("edge-1")) is not None and n.state == ONLINE
        )
        async with secure_aio_channel(hub.address, pki.user("viewer")) as channel:
            reply = await fleet_pb2_grpc.FleetServiceStub(channel).GetNode(
                fleet_pb2.GetNodeRequest(node_id="edge-1")
            )
    finally:
        await agent.stop()
    # The token's labels win over what the agent reports; the hub shows both.
    node = reply.node
    assert dict(node.assigned_labels) == {"zone": "assigned", "pool": "a100"}
    assert dict(node.reported_labels) == {"zone": "self", "rack": "r9"}
    assert dict(node.labels) == {"zone": "assigned", "pool": "a100", "rack": "r9"}


async def test_a_token_enrolls_once(
    hub: Hub, admin: enrollment_pb2_grpc.EnrollmentServiceStub, tmp_path: Path
) -> None:
    token = await new_token(admin)
    await join(token, "edge-1", tmp_path / "one")
    second = tmp_path / "two"
    with pytest.raises(SentinelError) as caught:
        await join(token, "edge-2", second)
    assert caught.value.reason == "TOKEN_USED"
    assert [r.reason for r in await audited(hub, "enrollment.refused")] == ["TOKEN_USED"]
    assert not (second / "certs").exists()
    assert hub.registry.get("edge-2") is None
    assert await hub.certificates.serials_of("edge-2") == []


async def test_two_enrollments_racing_for_one_token_issue_one_certificate(
    hub: Hub, admin: enrollment_pb2_grpc.EnrollmentServiceStub, pki: Pki
) -> None:
    token = await new_token(admin)
    channel, stub = enroll_stub(hub, pki)
    async with channel:
        results = await asyncio.gather(
            *(
                stub.Enroll(
                    enrollment_pb2.EnrollRequest(
                        token=token.token,
                        csr_pem=certs.new_node_request("sentinel.local", f"race-{i}")[1],
                    )
                )
                for i in range(4)
            ),
            return_exceptions=True,
        )
    issued = [r for r in results if isinstance(r, enrollment_pb2.EnrollResponse)]
    failed = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(issued) == 1 and len(failed) == 3
    assert {reason_of(e) for e in failed} == {"TOKEN_USED"}
    assert len(await hub.certificates.issued_nodes()) == 1


async def test_an_expired_token_enrolls_nothing(
    hub: Hub, admin: enrollment_pb2_grpc.EnrollmentServiceStub, clock: Clock, tmp_path: Path
) -> None:
    token = await new_token(admin, ttl=timedelta(minutes=5))
    clock.now += timedelta(minutes=5, seconds=1)
    with pytest.raises(SentinelError) as caught:
        await join(token, "edge-1", tmp_path / "edge")
    assert caught.value.reason == "TOKEN_EXPIRED"
    assert await hub.certificates.issued_nodes() == set()


async def test_a_bound_token_enrolls_only_its_node(
    hub: Hub, admin: enrollment_pb2_grpc.EnrollmentServiceStub, tmp_path: Path
) -> None:
    token = await new_token(admin, node_id="gpu-7")
    with pytest.raises(SentinelError) as caught:
        await join(token, "gpu-8", tmp_path / "wrong")
    assert caught.value.reason == "TOKEN_NODE_MISMATCH"
    assert await hub.certificates.issued_nodes() == set()
    # The refusal did not use the token up: the right node still enrolls with it.
    enrolled = await join(token, "gpu-7", tmp_path / "right")
    assert enrolled.node_id == "gpu-7"


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("spiffe://sentinel.local/user/admin", "CSR_NOT_A_NODE"),
        ("spiffe://sentinel.local/hub", "CSR_NOT_A_NODE"),
        ("spiffe://other.domain/node/edge-1", "CSR_NOT_A_NODE"),
        ("spiffe://sentinel.local/node/Not_A_Label", "CSR_NOT_A_NODE"),
    ],
)
async def test_a_csr_for_anything_but_a_new_node_is_refused(
    hub: Hub, admin: enrollment_pb2_grpc.EnrollmentServiceStub, pki: Pki, uri: str, reason: str
) -> None:
    token = await new_token(admin)
    channel, stub = enroll_stub(hub, pki)
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Enroll(enrollment_pb2.EnrollRequest(token=token.token, csr_pem=csr_for(uri)))
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert reason_of(caught.value) == reason
        with pytest.raises(grpc.aio.AioRpcError) as garbage:
            await stub.Enroll(enrollment_pb2.EnrollRequest(token=token.token, csr_pem=b"junk"))
        assert reason_of(garbage.value) == "CSR_INVALID"
    assert await hub.certificates.issued_nodes() == set()


async def test_a_csr_for_an_existing_node_is_refused(
    hub: Hub, admin: enrollment_pb2_grpc.EnrollmentServiceStub, tmp_path: Path
) -> None:
    await join(await new_token(admin), "edge-1", tmp_path / "first")
    with pytest.raises(SentinelError) as caught:
        await join(await new_token(admin), "edge-1", tmp_path / "again")
    assert caught.value.reason == "NODE_EXISTS"
    assert len(await hub.certificates.serials_of("edge-1")) == 1
    with pytest.raises(grpc.aio.AioRpcError) as bound:
        await new_token(admin, node_id="edge-1")
    assert reason_of(bound.value) == "NODE_EXISTS"


async def test_a_wrong_ca_hash_trusts_nothing_and_writes_nothing(
    hub: Hub, admin: enrollment_pb2_grpc.EnrollmentServiceStub, pki: Pki, tmp_path: Path
) -> None:
    token = await new_token(admin)
    rogue_hash = certs.ca_hash(certs.CertLayout(pki.rogue).ca_cert.read_bytes())
    data_dir = tmp_path / "edge"
    with pytest.raises(SentinelError) as caught:
        await asyncio.to_thread(
            enroll, token.enroll_address, token.token, rogue_hash, "edge-1", data_dir
        )
    assert caught.value.reason == "CA_HASH_MISMATCH"
    assert not data_dir.exists()
    # The token was never sent, so it still works.
    await join(token, "edge-1", tmp_path / "edge-ok")


async def test_manual_approval_waits_for_an_admin(
    hub: Hub, admin: enrollment_pb2_grpc.EnrollmentServiceStub, pki: Pki, tmp_path: Path
) -> None:
    token = await new_token(admin, manual=True, labels={"zone": "z1"})
    pending: asyncio.Queue[str] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    joining = asyncio.create_task(
        join(
            token,
            "edge-9",
            tmp_path / "edge",
            poll_s=0.05,
            on_pending=lambda i: loop.call_soon_threadsafe(pending.put_nowait, i),
        )
    )
    enrollment_id = await asyncio.wait_for(pending.get(), WAIT_S)
    listed = await admin.ListEnrollments(
        enrollment_pb2.ListEnrollmentsRequest(
            state=enrollment_pb2.ENROLLMENT_STATE_PENDING_APPROVAL
        )
    )
    assert [(e.enrollment_id, e.node_id) for e in listed.enrollments] == [(enrollment_id, "edge-9")]
    assert await hub.certificates.issued_nodes() == set()
    assert not joining.done()
    # Not an admin: refused.
    async with secure_aio_channel(hub.address, pki.user("operator")) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as low:
            await enrollment_pb2_grpc.EnrollmentServiceStub(channel).ApproveEnrollment(
                enrollment_pb2.ApproveEnrollmentRequest(enrollment_id=enrollment_id)
            )
        assert reason_of(low.value) == "ROLE_TOO_LOW"
    approved = await admin.ApproveEnrollment(
        enrollment_pb2.ApproveEnrollmentRequest(enrollment_id=enrollment_id, labels={"rack": "r1"})
    )
    assert approved.enrollment.approved_by == "spiffe://sentinel.local/user/admin"
    enrolled = await asyncio.wait_for(joining, WAIT_S)
    assert enrolled.node_id == "edge-9"
    assert dict(hub.registry.get("edge-9").assigned_labels) == {"zone": "z1", "rack": "r1"}  # type: ignore[union-attr]
    with pytest.raises(grpc.aio.AioRpcError) as again:
        await admin.ApproveEnrollment(
            enrollment_pb2.ApproveEnrollmentRequest(enrollment_id=enrollment_id)
        )
    assert reason_of(again.value) == "ENROLLMENT_NOT_PENDING"


async def test_each_listener_serves_only_its_half(
    hub: Hub, admin: enrollment_pb2_grpc.EnrollmentServiceStub, pki: Pki
) -> None:
    token = await new_token(admin)
    csr = certs.new_node_request("sentinel.local", "edge-1")[1]
    with pytest.raises(grpc.aio.AioRpcError) as main:
        await admin.Enroll(enrollment_pb2.EnrollRequest(token=token.token, csr_pem=csr))
    assert reason_of(main.value) == "WRONG_LISTENER"
    channel, stub = enroll_stub(hub, pki)
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as public:
            await stub.CreateEnrollmentToken(
                enrollment_pb2.CreateEnrollmentTokenRequest(ttl=to_proto_duration(timedelta(1)))
            )
        assert reason_of(public.value) == "WRONG_LISTENER"
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.Enroll(enrollment_pb2.EnrollRequest(token="abcdef.0123456789abcdef"))
        assert reason_of(bad.value) == "TOKEN_INVALID"
    assert await hub.certificates.issued_nodes() == set()


async def test_the_enrollment_port_asks_for_no_client_certificate_and_names_the_ca(
    hub: Hub, pki: Pki
) -> None:
    node = pki.node("node-a")
    # A client certificate changes nothing there; the port still serves Enroll only.
    async with grpc.aio.secure_channel(
        hub.trust.enroll_address,
        grpc.ssl_channel_credentials(node.ca_pem, node.key_pem, node.cert_pem),
    ) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await enrollment_pb2_grpc.EnrollmentServiceStub(channel).Enroll(
                enrollment_pb2.EnrollRequest(token="nope")
            )
    assert reason_of(caught.value) == "TOKEN_INVALID"


async def test_the_enrollment_port_serves_a_replaced_hub_certificate(
    pki: Pki, tmp_path: Path
) -> None:
    directory = copy_pki(pki, tmp_path / "certs")
    ca_hash = certs.ca_hash(certs.CertLayout(directory).ca_cert.read_bytes())
    settings = replace(
        hub_settings(pki, tmp_path / "hub"), certs_dir=directory, enroll_listen="127.0.0.1:0"
    )
    hub = await Hub.start(settings)
    try:
        address = hub.trust.enroll_address
        first = await asyncio.to_thread(presented_serial, address)
        certs.issue_hub_certificate(directory)
        second = await asyncio.to_thread(presented_serial, address)
        # The pinned CA still comes with it, so new nodes keep enrolling.
        assert await asyncio.to_thread(fetch_pinned_ca, address, ca_hash)
    finally:
        await hub.stop()
    assert first != second
    assert second == certs.serial_hex(
        x509.load_pem_x509_certificate(certs.CertLayout(directory).hub_cert.read_bytes())
    )


def presented_serial(address: str) -> str:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    host, port = address.rsplit(":", 1)
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return certs.serial_hex(x509.load_der_x509_certificate(der))
