"""Certificate rotation: the agent's renewal schedule (injected clock and randomness), the
hub's RenewCertificate and its refusals, the crash-safe switch of the agent's files, the
hub's certificate reloaded for new connections, and 50 agent rotations under live
telemetry against a real hub over real TLS."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from nats.aio.msg import Msg
from prometheus_client import CollectorRegistry

import certs
from edge_agent.app import Agent
from edge_agent.cert_files import finish_interrupted_switch, save_node_credentials
from edge_agent.identity import NodeCredentials, load_node_credentials
from edge_agent.renewal import CertRenewer, RenewalMetrics, renewal_at
from edge_agent.settings import AgentSettings, RenewalSettings, SamplingSettings
from hub.app import Hub
from hub.ingest import IngestResult
from hub.registry import ONLINE
from hub.settings import ServerLimits
from sentinel import subjects
from sentinel.errors import ConfigError
from sentinel.files import replace_durably
from sentinel.identity import Kind, identity_from_pem, spiffe_id
from sentinel.rpc_errors import reason_of
from sentinel.tls import TlsFiles
from sentinel.v1 import agent_pb2, agent_pb2_grpc, telemetry_pb2
from tests.conftest import Pki, counter, eventually, hub_settings, nats_admin, within
from tests.test_durability import agent_process
from tests.test_metrics import promtool_findings, scrape
from tests.test_observe_path import agent_settings, open_stream, send_batch

Channels = Callable[[TlsFiles], grpc.aio.Channel]
LIFETIME = timedelta(seconds=60)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def copy_pki(pki: Pki, target: Path) -> Path:
    """A private copy of the test PKI: these tests replace certificates in it."""
    shutil.copytree(pki.directory, target)
    return target


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def serial_of(cert_pem: bytes) -> str:
    return certs.serial_hex(x509.load_pem_x509_certificate(cert_pem))


# --- the schedule, with an injected clock -------------------------------------------------


class FakeTime:
    """A wall clock that moves only when the code under test sleeps."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def clock(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        await asyncio.sleep(0)


@dataclass
class FakeHub:
    """Signs each CSR with the test CA for LIFETIME from the fake clock's now."""

    directory: Path
    time: FakeTime
    failures: list[Exception]
    calls: int = 0
    # Calls after the first `free_calls` wait until `gate` is set.
    gate: asyncio.Event | None = None
    free_calls: int = 0

    async def call(self, tls: TlsFiles, csr_pem: bytes) -> agent_pb2.RenewCertificateResponse:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        if self.gate is not None and self.calls > self.free_calls:
            await self.gate.wait()
        request = certs.read_node_request(csr_pem, certs.load_trust_domain(self.directory))
        cert = certs.sign_node_certificate(
            self.directory,
            request.node_id,
            request.public_key,
            validity=LIFETIME,
            not_before=self.time.now,
        )
        return agent_pb2.RenewCertificateResponse(
            certificate_pem=pem(cert), ca_bundle_pem=tls.ca_pem
        )


def credentials_for(directory: Path, node_id: str, not_before: datetime) -> NodeCredentials:
    """A node pair valid for LIFETIME from `not_before`, written where the agent keeps it."""
    certs.issue_node_certificate(directory, node_id, validity=LIFETIME, not_before=not_before)
    return load_node_credentials(directory, node_id)


def renewer_for(
    directory: Path,
    credentials: NodeCredentials,
    fake: FakeTime,
    hub: FakeHub,
    *,
    seed: int,
    on_renewed: Callable[[NodeCredentials], None],
    registry: CollectorRegistry | None = None,
) -> CertRenewer:
    return CertRenewer(
        credentials,
        directory,
        "unused:0",
        on_renewed=on_renewed,
        metrics=RenewalMetrics(registry or CollectorRegistry()),
        settings=RenewalSettings(backoff_initial_s=1.0, backoff_max_s=4.0),
        clock=fake.clock,
        sleep=fake.sleep,
        rand=random.Random(seed).random,
        call=hub.call,
    )


def test_renewal_at_is_between_70_and_90_percent_of_the_lifetime() -> None:
    rand = random.Random(7).random
    offsets = [(renewal_at(T0, T0 + LIFETIME, rand) - T0).total_seconds() for _ in range(1000)]
    assert min(offsets) >= 42.0 and max(offsets) <= 54.0
    assert renewal_at(T0, T0 + LIFETIME, lambda: 0.0) == T0 + timedelta(seconds=42)
    assert renewal_at(T0, T0 + LIFETIME, lambda: 0.999999) < T0 + timedelta(seconds=54)


async def test_a_hundred_agents_renew_60_s_certificates_between_42_and_54_s(
    pki: Pki, tmp_path: Path
) -> None:
    directory = copy_pki(pki, tmp_path / "certs")
    renewed_after: dict[str, float] = {}
    done = asyncio.Event()
    tasks = []
    for index in range(100):
        node_id = f"node-{index}"
        fake = FakeTime(T0)
        hub = FakeHub(directory, fake, [])

        def record(new: NodeCredentials, fake: FakeTime = fake) -> None:
            renewed_after.setdefault(new.node_id, (fake.now - T0).total_seconds())
            if len(renewed_after) == 100:
                done.set()

        credentials = credentials_for(directory, node_id, T0)
        renewer = renewer_for(directory, credentials, fake, hub, seed=index, on_renewed=record)
        tasks.append(asyncio.create_task(renewer.run()))
    try:
        await within(done.wait())
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    offsets = sorted(renewed_after.values())
    assert offsets[0] >= 42.0 and offsets[-1] <= 54.0, offsets
    # The jitter really spreads the fleet: every 3-second quarter of the window is used.
    quarters = [sum(1 for o in offsets if 42 + 3 * q <= o < 45 + 3 * q) for q in range(4)]
    assert all(count >= 10 for count in quarters), quarters
    assert offsets[-1] - offsets[0] >= 10.0


async def test_the_renewer_renews_when_due_and_reschedules_from_the_new_certificate(
    pki: Pki, tmp_path: Path
) -> None:
    directory = copy_pki(pki, tmp_path / "certs")
    fake = FakeTime(T0)
    hub = FakeHub(directory, fake, [], gate=asyncio.Event(), free_calls=3)
    credentials = credentials_for(directory, "node-x", T0)
    renewed: list[tuple[datetime, NodeCredentials]] = []
    registry = CollectorRegistry()
    renewer = renewer_for(
        directory,
        credentials,
        fake,
        hub,
        seed=42,
        on_renewed=lambda new: renewed.append((fake.now, new)),
        registry=registry,
    )
    task = asyncio.create_task(renewer.run())
    try:
        await eventually(lambda: hub.calls == 4)  # three renewals, the fourth waits
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    expected_rand = random.Random(42)
    issued_at = T0
    assert len(renewed) == 3
    for at, new in renewed:
        due = renewal_at(issued_at, issued_at + LIFETIME, expected_rand.random)
        assert abs((at - due).total_seconds()) < 0.001
        cert = x509.load_pem_x509_certificate(new.tls.cert_pem)
        assert cert.not_valid_before_utc == at.replace(microsecond=0)  # X.509 keeps seconds
        issued_at = cert.not_valid_before_utc
    last = renewer.credentials
    on_disk = load_node_credentials(directory, "node-x")
    assert on_disk.tls.cert_pem == last.tls.cert_pem and on_disk.tls.key_pem == last.tls.key_pem
    assert (
        registry.get_sample_value("sentinel_agent_certificate_renewals_total", {"result": "ok"})
        == 3.0
    )
    expiry = x509.load_pem_x509_certificate(last.tls.cert_pem).not_valid_after_utc
    assert (
        registry.get_sample_value("sentinel_agent_certificate_expiry_timestamp_seconds")
        == expiry.timestamp()
    )


async def test_a_failed_renewal_keeps_the_old_certificate_retries_and_logs_once(
    pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = copy_pki(pki, tmp_path / "certs")
    fake = FakeTime(T0)
    refused = ConfigError("hub says no", reason="TEST")
    failures = [refused, ConfigError("hub says no", reason="TEST"), OSError("down")]
    hub = FakeHub(directory, fake, failures, gate=asyncio.Event(), free_calls=3)
    credentials = credentials_for(directory, "node-x", T0)
    old_cert = credentials.tls.cert_pem
    renewed: list[NodeCredentials] = []
    registry = CollectorRegistry()
    renewer = renewer_for(
        directory, credentials, fake, hub, seed=1, on_renewed=renewed.append, registry=registry
    )
    task = asyncio.create_task(renewer.run())
    try:
        await eventually(lambda: hub.calls == 4)  # three failed, the fourth waits
        assert load_node_credentials(directory, "node-x").tls.cert_pem == old_cert
        assert renewer.credentials.tls.cert_pem == old_cert
        assert hub.gate is not None
        hub.free_calls = 4  # let the fourth through (a waiter once woken stays woken)
        hub.gate.set()
        hub.gate.clear()
        await eventually(lambda: hub.calls == 5)  # renewed; the next renewal waits
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert len(renewed) == 1
    failed = registry.get_sample_value(
        "sentinel_agent_certificate_renewals_total", {"result": "failed"}
    )
    assert failed == 3.0
    warnings = [r.getMessage() for r in caplog.records if "renewal failed" in r.getMessage()]
    assert len(warnings) == 2, warnings  # "hub says no" once, "down" once
    assert load_node_credentials(directory, "node-x").tls.cert_pem == renewed[0].tls.cert_pem


async def test_renew_now_cuts_the_wait_short(pki: Pki, tmp_path: Path) -> None:
    directory = copy_pki(pki, tmp_path / "certs")
    fake = FakeTime(T0)
    hub = FakeHub(directory, fake, [])
    credentials = credentials_for(directory, "node-x", T0)
    renewed: list[NodeCredentials] = []

    async def never(_: float) -> None:
        await asyncio.Event().wait()

    renewer = CertRenewer(
        credentials,
        directory,
        "unused:0",
        on_renewed=renewed.append,
        metrics=RenewalMetrics(CollectorRegistry()),
        clock=fake.clock,
        sleep=never,
        call=hub.call,
    )
    task = asyncio.create_task(renewer.run())
    try:
        await eventually(lambda: renewer.next_renewal is not None)
        assert not renewed
        renewer.renew_now()
        await eventually(lambda: len(renewed) == 1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert fake.now == T0  # renewed without waiting for the schedule


# --- the crash-safe switch of the agent's files -------------------------------------------


class Crash(Exception):
    """Stands for the process dying at this point."""


@pytest.fixture
def node_pair(pki: Pki, tmp_path: Path) -> tuple[Path, NodeCredentials, bytes, bytes]:
    """A certificate directory holding node-x's pair, and a renewed pair not yet saved."""
    directory = copy_pki(pki, tmp_path / "certs")
    shutil.rmtree(directory / "nodes")  # node-x is the only node here
    certs.issue_node_certificate(directory, "node-x")
    old = load_node_credentials(directory, "node-x")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = certs.sign_node_certificate(
        directory, "node-x", key.public_key(), validity=timedelta(days=1)
    )
    return directory, old, pem(cert), key_pem(key)


# os.replace calls of a switch: key.next staged, cert.next staged, key installed, cert
# installed. A crash before call N, then a start.
@pytest.mark.parametrize(
    ("crash_before", "expected"), [(1, "old"), (2, "old"), (3, "new"), (4, "new"), (5, "new")]
)
def test_a_crash_at_any_point_of_a_switch_leaves_a_matching_pair(
    node_pair: tuple[Path, NodeCredentials, bytes, bytes],
    monkeypatch: pytest.MonkeyPatch,
    crash_before: int,
    expected: str,
) -> None:
    directory, old, new_cert, new_key = node_pair
    layout = certs.CertLayout(directory)
    real_replace = os.replace
    calls = 0

    def replace_or_crash(source: os.PathLike[str] | str, target: os.PathLike[str] | str) -> None:
        nonlocal calls
        calls += 1
        if calls == crash_before:
            raise Crash
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace_or_crash)
    if crash_before == 5:  # after every rename, before the directory is synced
        monkeypatch.setattr("edge_agent.cert_files.sync_directory", _crash)
    with pytest.raises(Crash):
        save_node_credentials(layout, "node-x", new_cert, new_key)
    monkeypatch.undo()

    loaded = load_node_credentials(directory, "node-x")  # checks the pair matches
    want = (new_cert, new_key) if expected == "new" else (old.tls.cert_pem, old.tls.key_pem)
    assert (loaded.tls.cert_pem, loaded.tls.key_pem) == want
    assert sorted(p.name for p in layout.nodes_dir.iterdir()) == ["node-x.crt", "node-x.key"]


def _crash(_: Path) -> None:
    raise Crash


def test_temporaries_left_by_a_crash_while_staging_are_removed(
    node_pair: tuple[Path, NodeCredentials, bytes, bytes],
) -> None:
    directory, old, _, new_key = node_pair
    layout = certs.CertLayout(directory)
    (layout.nodes_dir / ".node-x.key.next.0badc0de.tmp").write_bytes(new_key[:40])
    (layout.nodes_dir / ".node-x.crt.next.0badc0de.tmp").write_bytes(b"")
    assert load_node_credentials(directory, None).tls == old.tls  # also found without --node-id
    assert sorted(p.name for p in layout.nodes_dir.iterdir()) == ["node-x.crt", "node-x.key"]


def test_a_staged_certificate_matching_no_key_is_discarded(
    node_pair: tuple[Path, NodeCredentials, bytes, bytes],
) -> None:
    directory, old, new_cert, _ = node_pair
    layout = certs.CertLayout(directory)
    replace_durably(layout.node_cert_next("node-x"), new_cert)
    assert finish_interrupted_switch(layout, "node-x") == "discarded"
    assert load_node_credentials(directory, "node-x").tls == old.tls


def test_an_interrupted_switch_is_finished_without_a_node_id(
    node_pair: tuple[Path, NodeCredentials, bytes, bytes],
) -> None:
    directory, _, new_cert, new_key = node_pair
    layout = certs.CertLayout(directory)
    replace_durably(layout.node_key_next("node-x"), new_key)
    replace_durably(layout.node_cert_next("node-x"), new_cert)
    loaded = load_node_credentials(directory, None)
    assert (loaded.tls.cert_pem, loaded.tls.key_pem) == (new_cert, new_key)


def test_a_key_that_does_not_match_the_certificate_is_refused_at_start(
    node_pair: tuple[Path, NodeCredentials, bytes, bytes],
) -> None:
    directory, _, _, new_key = node_pair
    replace_durably(certs.CertLayout(directory).node_key("node-x"), new_key)
    with pytest.raises(ConfigError) as refused:
        load_node_credentials(directory, "node-x")
    assert refused.value.reason == "NODE_KEY_MISMATCH"


# --- the hub's RenewCertificate -----------------------------------------------------------


def csr_for(uri: str) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return key, csr.public_bytes(serialization.Encoding.PEM)


async def renew(channel: grpc.aio.Channel, csr_pem: bytes) -> agent_pb2.RenewCertificateResponse:
    stub = agent_pb2_grpc.AgentServiceStub(channel)
    request = agent_pb2.RenewCertificateRequest(csr_pem=csr_pem)
    response: agent_pb2.RenewCertificateResponse = await stub.RenewCertificate(request, timeout=10)
    return response


async def test_renew_certificate_issues_the_callers_own_identity(
    hub: Hub, pki: Pki, channel_to: Channels
) -> None:
    trust_domain = certs.load_trust_domain(pki.directory)
    key, csr = certs.new_node_request(trust_domain, "node-a")
    response = await renew(channel_to(pki.node("node-a")), csr)
    cert = x509.load_pem_x509_certificate(response.certificate_pem)
    assert cert.public_key() == key.public_key()
    assert identity_from_pem(response.certificate_pem, trust_domain).spiffe_id == spiffe_id(
        trust_domain, Kind.NODE, "node-a"
    )
    assert response.ca_bundle_pem == pki.layout.ca_cert.read_bytes()
    assert response.not_after.ToDatetime(UTC) == cert.not_valid_after_utc
    assert cert.not_valid_after_utc - datetime.now(UTC) > hub.settings.node_cert_validity - (
        timedelta(minutes=1)
    )
    assert await hub.certificates.serials_of("node-a") == [certs.serial_hex(cert)]


REFUSALS = {
    "csr-for-another-node": ("node-a", "node-b", "PERMISSION_DENIED", "CSR_IDENTITY_MISMATCH"),
    "csr-for-a-user": ("node-a", "user", "PERMISSION_DENIED", "CSR_NOT_A_NODE"),
    "garbage": ("node-a", "garbage", "INVALID_ARGUMENT", "CSR_INVALID"),
    "user-certificate-calling": ("admin", "node-a", "PERMISSION_DENIED", "NODE_ONLY"),
}


@pytest.mark.parametrize("case", REFUSALS)
async def test_renew_certificate_refusals_issue_nothing(
    hub: Hub, pki: Pki, channel_to: Channels, case: str
) -> None:
    caller, csr, code, reason = REFUSALS[case]
    trust_domain = certs.load_trust_domain(pki.directory)
    if csr == "garbage":
        csr_pem = b"-----BEGIN CERTIFICATE REQUEST-----\nnot a CSR\n"
    elif csr == "user":
        csr_pem = csr_for(spiffe_id(trust_domain, Kind.USER, "admin"))[1]
    else:
        csr_pem = certs.new_node_request(trust_domain, csr)[1]
    tls = pki.user(caller) if caller == "admin" else pki.node(caller)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await renew(channel_to(tls), csr_pem)
    assert (refused.value.code().name, reason_of(refused.value)) == (code, reason)
    assert await hub.certificates.issued_nodes() == set()


# --- the hub's own certificate, reloaded for new connections ------------------------------


def peer_serial(address: str, pki_dir: Path) -> str:
    """The serial of the certificate the hub presents to a new TLS connection."""
    layout = certs.CertLayout(pki_dir)
    context = ssl.create_default_context(cafile=str(layout.ca_cert))
    context.load_cert_chain(layout.user_cert("admin"), layout.user_key("admin"))
    context.set_alpn_protocols(["h2"])
    host, port = address.rsplit(":", 1)
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return certs.serial_hex(x509.load_der_x509_certificate(der))


def hub_expiries(hub: Hub) -> dict[str, float]:
    """The hub's `sentinel_hub_certificate_expiry_timestamp_seconds`, by certificate."""
    result = scrape(hub.metrics_url)
    name = "sentinel_hub_certificate_expiry_timestamp_seconds"
    return {which: result.value(name, certificate=which) for which in ("server", "ca")}


def expiries_of(layout: certs.CertLayout) -> dict[str, float]:
    """When the hub certificate and the CA on disk expire, Unix seconds."""
    return {
        which: x509.load_pem_x509_certificate(path.read_bytes()).not_valid_after_utc.timestamp()
        for which, path in (("server", layout.hub_cert), ("ca", layout.ca_cert))
    }


async def test_a_replaced_hub_certificate_serves_new_connections_and_spares_open_streams(
    pki: Pki, tmp_path: Path
) -> None:
    directory = copy_pki(pki, tmp_path / "certs")
    layout = certs.CertLayout(directory)
    hub = await Hub.start(
        replace(
            hub_settings(pki, tmp_path / "hub"),
            certs_dir=directory,
            metrics_listen="127.0.0.1:0",
            # 12 streams from 3 node certificates: 4 each, above a node's usual budget.
            limits=ServerLimits(node_streams_per_identity=4),
        )
    )
    channels: list[grpc.aio.Channel] = []
    try:
        first_serial = serial_of(layout.hub_cert.read_bytes())
        assert await asyncio.to_thread(peer_serial, hub.address, directory) == first_serial
        assert hub_expiries(hub) == expiries_of(layout)
        streams = []
        for index in range(12):  # each on its own connection, made with the first certificate
            node = ("node-a", "node-b", "node-c")[index % 3]
            channel = grpc.aio.secure_channel(
                hub.address,
                grpc.ssl_channel_credentials(
                    pki.node(node).ca_pem, pki.node(node).key_pem, pki.node(node).cert_pem
                ),
                options=[("grpc.use_local_subchannel_pool", 1)],
            )
            channels.append(channel)
            boot = f"boot-{index}"
            call, _ = await open_stream(channel, node, boot_id=boot)
            assert (await send_batch(call, 1, boot_id=boot)).seq == 1
            streams.append((call, boot))

        certs.issue_hub_certificate(directory, validity=timedelta(days=90))
        second_serial = serial_of(layout.hub_cert.read_bytes())
        assert await asyncio.to_thread(peer_serial, hub.address, directory) == second_serial
        assert hub.server_tls.reloads == 1
        # /metrics shows the pair in use: the new certificate's expiry, 90 days out.
        assert hub_expiries(hub) == expiries_of(layout)
        assert hub_expiries(hub)["server"] - time.time() == pytest.approx(90 * 86400, abs=3600)
        for call, boot in streams:  # the open streams go on with the first certificate
            assert (await send_batch(call, 2, boot_id=boot)).seq == 2

        # A pair that does not match is logged and not used; the good one stays.
        replace_durably(layout.hub_key, key_pem(ec.generate_private_key(ec.SECP256R1())))
        assert await asyncio.to_thread(peer_serial, hub.address, directory) == second_serial
        replace_durably(layout.hub_cert, b"not a certificate")
        assert await asyncio.to_thread(peer_serial, hub.address, directory) == second_serial
        assert hub.server_tls.reloads == 1
        certs.issue_hub_certificate(directory)
        third_serial = serial_of(layout.hub_cert.read_bytes())
        assert await asyncio.to_thread(peer_serial, hub.address, directory) == third_serial
        for call, boot in streams:
            assert (await send_batch(call, 3, boot_id=boot)).seq == 3
    finally:
        for channel in channels:
            await channel.close()
        await hub.stop()


# --- the agent's move to a new channel ----------------------------------------------------

ROTATIONS = 50


async def stored_seqs(hub: Hub, node_id: str) -> list[int]:
    """Every batch seq JetStream holds for `node_id`, in stream order."""
    nc = await nats_admin(hub)
    try:
        js = nc.jetstream()
        subject = subjects.telemetry_subject(node_id)
        info = await js.stream_info(subjects.TELEMETRY_STREAM, subjects_filter=subject)
        count = int((info.state.subjects or {}).get(subject, 0))
        subscription = await js.subscribe(subject, ordered_consumer=True)
        seqs = []
        for _ in range(count):
            message = await subscription.next_msg(timeout=10)
            seqs.append(telemetry_pb2.TelemetryBatch.FromString(message.data).seq)
        await subscription.unsubscribe()
        return seqs
    finally:
        await nc.close()


class SlowStore:
    """The hub's telemetry writes, delayed (a store some way off) or held until opened."""

    def __init__(self, hub: Hub, monkeypatch: pytest.MonkeyPatch, latency_s: float = 0.0) -> None:
        ingest = hub._agent_service._ingest
        self._accept = ingest.accept
        self.latency_s = latency_s
        self.opened = asyncio.Event()
        self.opened.set()
        self.held = 0
        self.calls = 0
        monkeypatch.setattr(ingest, "accept", self.accept)

    async def accept(self, batch: telemetry_pb2.TelemetryBatch) -> IngestResult:
        self.calls += 1
        self.held += 1
        try:
            if self.latency_s:
                await asyncio.sleep(self.latency_s)  # injected latency, not a wait
            await self.opened.wait()
        finally:
            self.held -= 1
        return await self._accept(batch)


def rotating_agent_settings(
    pki: Pki, hub: Hub, tmp_path: Path, node_id: str, *, switch_drain_s: float = 5.0
) -> AgentSettings:
    """An agent with its own certificate directory (renewals replace its pair) that seals
    a batch every 50 ms."""
    agent_certs = copy_pki(pki, tmp_path / "agent-certs")
    certs.issue_node_certificate(agent_certs, node_id)
    settings = agent_settings(pki, hub, tmp_path / "agent", node_id)
    return replace(
        settings,
        certs_dir=agent_certs,
        link=replace(settings.link, switch_drain_s=switch_drain_s),
        sampling=SamplingSettings(
            batch_interval=timedelta(seconds=0.05),
            sample_interval=timedelta(seconds=0.025),
            nvml_replay="builtin:h200",
        ),
    )


async def test_a_switch_waits_for_the_batches_in_flight_and_sends_nothing_new_meanwhile(
    hub: Hub, pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SlowStore(hub, monkeypatch)
    settings = rotating_agent_settings(pki, hub, tmp_path, "node-sw")
    agent = await Agent.start(replace(settings, metrics_listen="127.0.0.1:0"))
    try:
        await eventually(lambda: agent.link.session_tls is not None and store.calls > 0)
        old_tls = agent.link.session_tls
        store.opened.clear()
        await eventually(lambda: store.held == 1 and len(agent.spool) >= 3)
        agent.renewer.renew_now()
        await eventually(lambda: agent.renewer.renewals == 1)
        sent = store.calls
        sealed = agent.sequence.last_allocated
        # Draining: batches keep being sealed, none is sent, the old session stays.
        await eventually(lambda: agent.sequence.last_allocated >= sealed + 3)
        assert store.calls == sent
        assert agent.link.session_tls is old_tls
        store.opened.set()
        await eventually(lambda: agent.link.session_tls is agent.credentials.tls)
        await eventually(lambda: len(agent.spool) <= 2)
        assert agent.metrics_server is not None
        metrics = await asyncio.to_thread(scrape, agent.metrics_server.url)
        assert await asyncio.to_thread(promtool_findings, metrics.text, tolerate_dcgm=True) == []
        renewed = x509.load_pem_x509_certificate(agent.credentials.tls.cert_pem)
        assert metrics.value("sentinel_agent_certificate_renewals_total", result="ok") == 1
        assert metrics.value("sentinel_agent_certificate_renewals_total", result="failed") == 0
        expiry = metrics.value("sentinel_agent_certificate_expiry_timestamp_seconds")
        assert expiry == renewed.not_valid_after_utc.timestamp()
    finally:
        store.opened.set()
        await agent.stop()
    assert counter(hub, "node-sw", "duplicates_dropped") == 0
    last = agent.sequence.last_allocated
    assert await stored_seqs(hub, "node-sw") == list(range(1, last + 1))


async def test_a_switch_goes_on_after_the_drain_bound_and_loses_nothing(
    hub: Hub, pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SlowStore(hub, monkeypatch)
    settings = rotating_agent_settings(pki, hub, tmp_path, "node-sw", switch_drain_s=0.2)
    agent = await Agent.start(settings)
    try:
        await eventually(lambda: agent.link.session_tls is not None and store.calls > 0)
        store.opened.clear()
        await eventually(lambda: store.held == 1 and len(agent.spool) >= 3)
        agent.renewer.renew_now()
        # No ack comes: after the drain bound the agent moves on with batches unacknowledged.
        await eventually(
            lambda: agent.renewer.renewals == 1 and agent.link.session_tls is agent.credentials.tls
        )
        assert len(agent.spool) >= 3  # still unacknowledged: sent again, and stored once
        store.opened.set()
        await eventually(lambda: len(agent.spool) <= 2)
    finally:
        store.opened.set()
        await agent.stop()
    last = agent.sequence.last_allocated
    assert await stored_seqs(hub, "node-sw") == list(range(1, last + 1))


async def test_fifty_rotations_under_live_telemetry_lose_and_duplicate_nothing(
    hub: Hub, pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node_id = "node-rot"
    settings = rotating_agent_settings(pki, hub, tmp_path, node_id)
    agent_certs = settings.certs_dir
    # A store 20 ms away: a switch often finds a batch in flight and must wait for its ack.
    SlowStore(hub, monkeypatch, latency_s=0.02)
    nc = await nats_admin(hub)
    offline: list[Msg] = []

    async def on_offline(message: Msg) -> None:
        offline.append(message)

    await nc.subscribe(f"sentinel.events.node.offline.{node_id}", cb=on_offline)
    agent = await Agent.start(settings)
    stopped = False
    try:
        boot_id = agent.sequence.boot_id
        await eventually(lambda: agent.link.session_tls is not None)
        durations = []

        def renewed_and_in_use(count: int) -> Callable[[], bool]:
            return lambda: (
                agent.renewer.renewals == count and agent.link.session_tls is agent.credentials.tls
            )

        def sealed_beyond(seq: int) -> Callable[[], bool]:
            return lambda: agent.sequence.last_allocated > seq

        for rotation in range(1, ROTATIONS + 1):
            sealed_before = agent.sequence.last_allocated
            started = time.perf_counter()
            agent.renewer.renew_now()
            await eventually(renewed_and_in_use(rotation))
            durations.append(time.perf_counter() - started)
            # Telemetry keeps flowing across rotations.
            await eventually(sealed_beyond(sealed_before + 1))
            node = hub.registry.get(node_id)
            assert node is not None and node.state == ONLINE
        assert agent.sequence.boot_id == boot_id
        # Make before break: the hub never saw the node go offline (what the hub published
        # has reached this subscriber once both connections made a round trip).
        await hub.state.nc.flush()
        await nc.flush()
        assert not offline, [message.data for message in offline]
        await agent.stop()
        stopped = True
        assert len(agent.spool) == 0
        last = agent.sequence.last_allocated
    finally:
        if not stopped:
            await agent.stop()
        await nc.close()

    assert await stored_seqs(hub, node_id) == list(range(1, last + 1))
    serials = await hub.certificates.serials_of(node_id)
    assert len(set(serials)) == ROTATIONS
    assert serial_of(agent.credentials.tls.cert_pem) in serials
    on_disk = load_node_credentials(agent_certs, node_id)
    assert on_disk.tls.cert_pem == agent.credentials.tls.cert_pem
    node = hub.registry.get(node_id)
    assert node is not None and node.boot_id == boot_id
    durations.sort()
    print(
        f"\n{ROTATIONS} rotations, {last} batches: per rotation median "
        f"{durations[len(durations) // 2] * 1000:.0f} ms, max {durations[-1] * 1000:.0f} ms"
    )


async def test_sigusr1_renews_a_running_agents_certificate(
    hub: Hub, pki: Pki, tmp_path: Path
) -> None:
    node_id = "node-usr1"
    agent_certs = copy_pki(pki, tmp_path / "agent-certs")
    cert_path, _ = certs.issue_node_certificate(agent_certs, node_id)
    first_serial = serial_of(cert_path.read_bytes())
    process = await agent_process(agent_certs, hub.address, tmp_path / "agent", node_id)
    try:
        await eventually(lambda: counter(hub, node_id, "batches_received") >= 1)
        process.send_signal(signal.SIGUSR1)
        await eventually(lambda: serial_of(cert_path.read_bytes()) != first_serial)
        renewed_serial = serial_of(cert_path.read_bytes())
        assert await hub.certificates.serials_of(node_id) == [renewed_serial]
        sent = counter(hub, node_id, "batches_received")
        await eventually(lambda: counter(hub, node_id, "batches_received") >= sent + 3)
        assert process.returncode is None  # the same process, never restarted
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
    assert await within(process.wait()) == 0
