"""AgentService: the agent's Connect stream, and certificate renewal.

Invariants: the first message is a hello whose node_id equals the certificate's
(else PERMISSION_DENIED, nothing recorded); every batch on the stream belongs to
that node; a batch is acknowledged only after it is durable (see hub.ingest).
A batch or gap belongs to a boot the session knows: the hello's boot_id, one of the
older boots the hello lists as the agent's backlog (at most MAX_BACKLOG_BOOTS), or one
the hub already stored batches of. Anything else is refused (FAILED_PRECONDITION,
UNKNOWN_BOOT_ID) before it is stored or counted, so a session mints at most
1 + MAX_BACKLOG_BOOTS high-water keys, however many boot ids a node invents.
A renewed certificate names the caller's own node id, taken from the certificate it
called with: a CSR asking for anything else is refused and nothing is issued.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime

import grpc
from cryptography.hazmat.primitives import serialization

import certs
from hub.auth import current_identity
from hub.certificates import NodeCertificates
from hub.errors import abort
from hub.ingest import TelemetryIngest, validate_batch, validate_boot_id
from hub.keys import KeyManager
from hub.metrics import HubMetrics, gap_reason_label
from hub.policy_store import PolicyStore
from hub.registry import Registry
from hub.settings import FleetSettings
from sentinel.durations import to_proto_duration, to_timestamp
from sentinel.errors import FailedPrecondition, InvalidArgument, PermissionDenied, SentinelError
from sentinel.selectors import validate_label
from sentinel.telemetry import MAX_BACKLOG_BOOTS
from sentinel.v1 import agent_pb2, agent_pb2_grpc, signing_pb2, telemetry_pb2

log = logging.getLogger(__name__)


class AgentService(agent_pb2_grpc.AgentServiceServicer):
    def __init__(
        self,
        registry: Registry,
        ingest: TelemetryIngest,
        fleet: FleetSettings,
        *,
        hub_id: str,
        nats_url: str,
        clock: Callable[[], datetime],
        metrics: HubMetrics,
        keys: KeyManager,
        policies: PolicyStore,
        certificates: NodeCertificates,
        on_hello: Callable[[str], Awaitable[None]],
    ) -> None:
        self._registry = registry
        self._ingest = ingest
        self._fleet = fleet
        self._hub_id = hub_id
        self._nats_url = nats_url
        self._now = clock
        self._metrics = metrics
        self._keys = keys
        self._policies = policies
        self._certificates = certificates
        self._on_hello = on_hello
        self._closing = asyncio.Event()
        self.open_streams = 0

    def close_streams(self) -> int:
        """End every open Connect stream with status OK (shutdown), so agents reconnect
        elsewhere instead of holding the server for its whole grace period."""
        self._closing.set()
        return self.open_streams

    async def Connect(
        self, requests: AsyncIterator[agent_pb2.ConnectRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[agent_pb2.ConnectResponse]:
        node_id = current_identity().name
        self.open_streams += 1
        try:
            async for response in self._serve(node_id, aiter(requests), context):
                yield response
        finally:
            self.open_streams -= 1

    async def RenewCertificate(
        self, request: agent_pb2.RenewCertificateRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.RenewCertificateResponse:
        node_id = current_identity().name
        wanted = certs.read_node_request(request.csr_pem, self._certificates.trust_domain)
        if wanted.node_id != node_id:
            log.warning("node %s asked for a certificate of node %s", node_id, wanted.node_id)
            raise PermissionDenied(
                f"the CSR asks for node {wanted.node_id!r}; node {node_id!r} may renew only "
                "its own certificate",
                reason="CSR_IDENTITY_MISMATCH",
                node_id=node_id,
            )
        cert = await self._certificates.issue(node_id, wanted.public_key, reason="renew")
        return agent_pb2.RenewCertificateResponse(
            certificate_pem=cert.public_bytes(serialization.Encoding.PEM),
            ca_bundle_pem=self._certificates.ca_pem,
            not_after=to_timestamp(cert.not_valid_after_utc),
        )

    async def _serve(
        self,
        node_id: str,
        incoming: AsyncIterator[agent_pb2.ConnectRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[agent_pb2.ConnectResponse]:
        hello = await self._read_hello(incoming, node_id, context)
        boots = _SessionBoots(node_id, hello, self._ingest)
        await self._on_hello(node_id)
        token = await self._registry.connected(hello, self._now())
        self._metrics.agent_connected()
        reason = "stream_closed"
        try:
            yield agent_pb2.ConnectResponse(
                hello_reply=agent_pb2.HelloReply(
                    hub_id=self._hub_id,
                    nats_url=self._nats_url,
                    acked_seq=await self._ingest.high_water_mark(node_id, hello.boot_id),
                    heartbeat_interval=to_proto_duration(self._fleet.heartbeat_interval),
                    hub_time=to_timestamp(self._now()),
                    keyset_version=self._keys.keyset.version,
                )
            )
            sent_keyset = hello.keyset_version
            sent_policy = hello.policy_version
            reader = _Reader(incoming)
            try:
                while True:
                    # Take the event before comparing versions: a change after the compare
                    # sets this event, so no change is missed between two loops.
                    keyset_changed = self._keys.changed()
                    policy_changed = self._policies.changed()
                    if sent_keyset != self._keys.keyset.version:
                        sent_keyset = self._keys.keyset.version
                        yield self._keyset_update()
                    if sent_policy != self._policies.current.bundle.version:
                        sent_policy = self._policies.current.bundle.version
                        yield self._policy_update()
                    message = await reader.next(self._closing, keyset_changed, policy_changed)
                    if message is _NOTHING_YET:
                        continue
                    if message is None:
                        break
                    await self._registry.seen(node_id, self._now())
                    response = await self._handle(node_id, message, boots)
                    if response is not None:
                        yield response
            finally:
                reader.close()
            if self._closing.is_set():
                reason = "hub_shutdown"
        except asyncio.CancelledError:
            reason = "stream_cancelled"
            raise
        finally:
            self._metrics.agent_disconnected()
            await self._registry.disconnected(node_id, token, reason)

    def _policy_update(self) -> agent_pb2.ConnectResponse:
        current = self._policies.current
        update = agent_pb2.PolicyUpdate(
            version=current.bundle.version,
            bundle=signing_pb2.SignedEnvelope.FromString(current.envelope),
        )
        return agent_pb2.ConnectResponse(policy=update)

    def _keyset_update(self) -> agent_pb2.ConnectResponse:
        envelope = signing_pb2.SignedEnvelope.FromString(self._keys.keyset.envelope)
        return agent_pb2.ConnectResponse(keyset=agent_pb2.KeysetUpdate(keyset=envelope))

    async def _read_hello(
        self,
        incoming: AsyncIterator[agent_pb2.ConnectRequest],
        node_id: str,
        context: grpc.aio.ServicerContext,
    ) -> agent_pb2.AgentHello:
        try:
            async with asyncio.timeout(self._fleet.hello_timeout_s):
                first = await anext(incoming)
        except TimeoutError:
            await abort(
                context,
                grpc.StatusCode.DEADLINE_EXCEEDED,
                "no hello within the hello timeout",
                "HELLO_TIMEOUT",
            )
        except StopAsyncIteration:
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "stream closed before hello",
                "HELLO_MISSING",
            )
        if first.WhichOneof("message") != "hello":
            raise InvalidArgument(
                "the first message on Connect must be a hello", reason="HELLO_MISSING"
            )
        hello = first.hello
        if hello.node_id != node_id:
            raise PermissionDenied(
                f"hello claims node {hello.node_id!r} but the certificate is node {node_id!r}",
                reason="NODE_ID_MISMATCH",
                node_id=node_id,
            )
        validate_boot_id(hello.boot_id)
        if len(hello.backlog_boot_ids) > MAX_BACKLOG_BOOTS:
            raise InvalidArgument(
                f"a hello lists at most {MAX_BACKLOG_BOOTS} backlog boots, not "
                f"{len(hello.backlog_boot_ids)}",
                reason="TOO_MANY_BOOT_IDS",
                node_id=node_id,
            )
        for boot_id in hello.backlog_boot_ids:
            validate_boot_id(boot_id)
        for key, value in hello.labels.items():
            validate_label(key, value)
        return hello

    async def _handle(
        self, node_id: str, message: agent_pb2.ConnectRequest, boots: _SessionBoots
    ) -> agent_pb2.ConnectResponse | None:
        kind = message.WhichOneof("message")
        if kind == "batch":
            return await self._on_batch(node_id, message.batch, boots)
        if kind == "gap":
            return await self._on_gap(node_id, message.gap, boots)
        if kind == "heartbeat":
            return None
        raise InvalidArgument(
            f"unexpected {kind or 'empty'} message after hello", reason="UNEXPECTED_MESSAGE"
        )

    async def _on_batch(
        self, node_id: str, batch: telemetry_pb2.TelemetryBatch, boots: _SessionBoots
    ) -> agent_pb2.ConnectResponse:
        received = time.perf_counter()
        if batch.node_id and batch.node_id != node_id:
            self._metrics.batch_refused("NODE_ID_MISMATCH")
            raise PermissionDenied(
                f"batch claims node {batch.node_id!r} on node {node_id!r}'s stream",
                reason="NODE_ID_MISMATCH",
                node_id=node_id,
            )
        batch.node_id = node_id
        try:
            validate_batch(batch)
            await boots.check(batch.boot_id)
            result = await self._ingest.accept(batch)
        except SentinelError as exc:
            self._metrics.batch_refused(exc.reason)
            raise
        await self._registry.batch_received(
            batch, duplicate=result.duplicate, acked_seq=result.acked_seq
        )
        if result.duplicate:
            self._metrics.duplicate_dropped()
        else:
            self._metrics.batch_accepted(time.perf_counter() - received)
        return agent_pb2.ConnectResponse(
            ack=agent_pb2.TelemetryAck(
                boot_id=batch.boot_id, seq=batch.seq, duplicate=result.duplicate
            )
        )

    async def _on_gap(
        self, node_id: str, gap: telemetry_pb2.TelemetryGap, boots: _SessionBoots
    ) -> agent_pb2.ConnectResponse:
        validate_boot_id(gap.boot_id)
        if gap.from_seq < 1 or gap.to_seq < gap.from_seq:
            raise InvalidArgument(
                "gap range must satisfy 1 <= from_seq <= to_seq", reason="BAD_GAP"
            )
        await boots.check(gap.boot_id)
        # An agent may drop a batch the hub stored but whose ack it never saw: only the
        # part of the gap above the high-water mark was really lost.
        hwm = await self._ingest.high_water_mark(node_id, gap.boot_id)
        if gap.to_seq > hwm:
            lost = telemetry_pb2.TelemetryGap()
            lost.CopyFrom(gap)
            lost.from_seq = max(gap.from_seq, hwm + 1)
            batches = await self._registry.gap_announced(node_id, lost)
            if batches:
                self._metrics.gap_recorded(batches, gap_reason_label(gap.reason))
        return agent_pb2.ConnectResponse(
            gap_ack=agent_pb2.GapAck(boot_id=gap.boot_id, from_seq=gap.from_seq, to_seq=gap.to_seq)
        )


class _SessionBoots:
    """The boots one Connect session may send batches and gaps of (see the module's
    invariants). A boot found stored is remembered for the session, so it is looked up
    once; one found unknown ends the session, so it is looked up once too."""

    def __init__(self, node_id: str, hello: agent_pb2.AgentHello, ingest: TelemetryIngest) -> None:
        self._node_id = node_id
        self._known = {hello.boot_id, *hello.backlog_boot_ids}
        self._ingest = ingest

    async def check(self, boot_id: str) -> None:
        """Return if the session may send `boot_id`; raise FailedPrecondition if not."""
        if boot_id in self._known:
            return
        if not await self._ingest.has_stored(self._node_id, boot_id):
            raise FailedPrecondition(
                f"boot {boot_id!r} is neither the hello's, nor listed in its "
                "backlog_boot_ids, nor one of this node's stored boots",
                reason="UNKNOWN_BOOT_ID",
                node_id=self._node_id,
            )
        self._known.add(boot_id)


_NOTHING_YET = agent_pb2.ConnectRequest()


class _Reader:
    """Reads the agent's stream while also waiting for hub events. A read in progress is
    kept across those events, never cancelled, so no message is lost to a wake-up."""

    def __init__(self, incoming: AsyncIterator[agent_pb2.ConnectRequest]) -> None:
        self._incoming = incoming
        self._pending: asyncio.Future[agent_pb2.ConnectRequest | None] | None = None

    async def next(
        self, closing: asyncio.Event, *changes: asyncio.Event
    ) -> agent_pb2.ConnectRequest | None:
        """The next message; None when the agent closed the stream or the hub is closing;
        `_NOTHING_YET` when one of `changes` (keyset, policy) was set first."""
        if closing.is_set():
            return None
        if self._pending is None:
            self._pending = asyncio.ensure_future(anext(self._incoming, None))
        wakeups = [asyncio.ensure_future(e.wait()) for e in (closing, *changes)]
        await asyncio.wait([self._pending, *wakeups], return_when=asyncio.FIRST_COMPLETED)  # type: ignore[type-var]
        for wakeup in wakeups:
            wakeup.cancel()
        if self._pending.done():
            message, self._pending = self._pending.result(), None
            return message
        return None if closing.is_set() else _NOTHING_YET

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
