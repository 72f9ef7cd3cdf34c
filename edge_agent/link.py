"""The agent's Connect stream to the hub, kept up for the agent's whole life.

Per session: hello, then two owned tasks — a sender (announced gaps, then pending
batches oldest first with at most `max_in_flight` unacknowledged, a paced re-send of
the backlog after a reconnect, heartbeats when idle) and a receiver (acknowledgements
remove batches from the spool). Any failure ends the session; the next one starts
after an exponential, jittered backoff. Unacknowledged batches stay in the spool and
are sent again, so none is lost; the hub drops the copies it already holds.

A renewed certificate (`use_credentials`) moves the link to a new channel, make before
break: the sender stops at its next message boundary, the batches in flight are
acknowledged (for at most `switch_drain_s`), then a new session starts at once (no
backoff) with the new certificate, and the old stream ends only once the hub answered
the new hello, so the hub never sees the node go offline. Nothing is lost or sent twice.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import grpc

from edge_agent.backoff import Backoff
from edge_agent.policy_cache import PolicyCache
from edge_agent.settings import LinkSettings
from edge_agent.spool import Spool
from edge_agent.trust import TrustStore
from sentinel.durations import timestamp_now
from sentinel.errors import SentinelError
from sentinel.files import replace_durably
from sentinel.rpc_errors import describe
from sentinel.tasks import cancel_and_wait, raise_if_cancelling
from sentinel.tls import TlsFiles, secure_aio_channel
from sentinel.v1 import agent_pb2, agent_pb2_grpc

log = logging.getLogger(__name__)


def _read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""


class SessionEnded(Exception):
    """The hub closed the stream or answered something unusable."""


class _Switching(SessionEnded):
    """The session was drained to move to a renewed certificate. Its receiver keeps
    reading (cancelling a read would cancel the call) until the next session is up."""

    def __init__(self, receiver: asyncio.Task[None]) -> None:
        super().__init__("moving to the renewed certificate")
        self.receiver = receiver


class HubLink:
    def __init__(
        self,
        settings: LinkSettings,
        tls: TlsFiles,
        spool: Spool,
        hello: Callable[[], agent_pb2.AgentHello],
        *,
        trust: TrustStore,
        policies: PolicyCache,
        clock: Callable[[], datetime],
        nats_url_file: Path,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._settings = settings
        self._tls = tls
        self._spool = spool
        self._hello = hello
        self._backoff = Backoff(settings.backoff_initial_s, settings.backoff_max_s, rand)
        self.connected = asyncio.Event()
        self.sessions = 0  # sessions the hub answered
        self.attempts = 0  # sessions tried, answered or not
        self.acks_received = 0
        self.gaps_sent = 0
        self._trust = trust
        self._policies = policies
        self._clock = clock
        self._nats_url_file = nats_url_file
        self.nats_url = _read_text(nats_url_file)
        self.last_error = ""
        self._rehello = asyncio.Event()
        self._switch = asyncio.Event()
        # The certificate of the session that is up (None while none is).
        self.session_tls: TlsFiles | None = None
        # A session drained for a switch, ended once the next one is answered.
        self._previous: tuple[grpc.aio.Channel, asyncio.Task[None]] | None = None

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self._session()
                except _Switching:
                    continue  # at once: the old stream stays up until the new hello is answered
                except (
                    grpc.aio.AioRpcError,
                    SessionEnded,
                    TimeoutError,
                    OSError,
                    # grpc.aio's answer to a read or write on a call that has just ended.
                    asyncio.InvalidStateError,
                ) as exc:
                    text = describe(exc) if isinstance(exc, grpc.RpcError) else str(exc)
                    if text != self.last_error:
                        log.warning("hub link down: %s", text)
                    self.last_error = text
                except Exception:  # a bug must cost one session, never the link for good
                    log.exception("hub link session failed unexpectedly; reconnecting")
                    self.last_error = "internal error"
                await self._end_previous()
                self.connected.clear()
                self.session_tls = None
                raise_if_cancelling()
                if not self._switch.is_set():  # new credentials are tried at once
                    await _first_of(self._switch, timeout_s=self._backoff.next_delay_s())
        finally:
            await self._end_previous()

    def use_credentials(self, tls: TlsFiles) -> None:
        """Move to a renewed certificate: drain the session, then reconnect with `tls`."""
        self._tls = tls
        self._switch.set()

    async def _session(self) -> None:
        tls = self._tls
        self._switch.clear()
        self.attempts += 1
        channel = secure_aio_channel(self._settings.hub_address, tls)
        call = agent_pb2_grpc.AgentServiceStub(channel).Connect()
        switching: _Switching | None = None
        try:
            hello = self._hello()
            await call.write(agent_pb2.ConnectRequest(hello=hello))
            async with asyncio.timeout(self._settings.hello_timeout_s):
                first = await call.read()
            if first is grpc.aio.EOF or first.WhichOneof("message") != "hello_reply":
                raise SessionEnded("hub did not answer the hello")
            await self._end_previous()
            reply = first.hello_reply
            self._spool.acknowledge_through(reply.acked_seq)
            self._remember_nats_url(reply.nats_url)
            self._trust.hub_version = reply.keyset_version
            self._backoff.reset()
            self.sessions += 1
            self.last_error = ""
            self.session_tls = tls
            self.connected.set()
            log.info("connected to hub %s (%s)", reply.hub_id, self._settings.hub_address)
            await self._exchange(call, {hello.boot_id, *hello.backlog_boot_ids})
        except _Switching as exc:
            switching = exc
            raise
        finally:
            if switching is not None:
                self._previous = (channel, switching.receiver)
            else:
                call.cancel()
                await channel.close()

    async def _end_previous(self) -> None:
        if self._previous is not None:
            channel, receiver = self._previous
            self._previous = None
            await cancel_and_wait(receiver)  # cancels the old call
            await channel.close()

    def rehello(self) -> None:
        """Start a new session, so the hub hears a fresh hello (e.g. new labels)."""
        self._rehello.set()

    def _remember_nats_url(self, url: str) -> None:
        """Cached on disk: after a restart the agent finds NATS without the hub."""
        if url and url != self.nats_url:
            replace_durably(self._nats_url_file, url.encode(), mode=0o644)
        self.nats_url = url or self.nats_url

    async def _exchange(self, call: grpc.aio.StreamStreamCall, boot_ids: set[str]) -> None:
        in_flight: set[int] = set()
        acked, stop_sending = asyncio.Event(), asyncio.Event()
        self._rehello.clear()
        sender = asyncio.create_task(
            self._send(call, in_flight, stop_sending), name="agent-link-sender"
        )
        receiver = asyncio.create_task(
            self._receive(call, boot_ids, in_flight, acked), name="agent-link-receiver"
        )
        rehello = asyncio.create_task(self._rehello.wait(), name="agent-link-rehello")
        switch = asyncio.create_task(self._switch.wait(), name="agent-link-switch")
        handed_over: asyncio.Task[None] | None = None
        try:
            done, _ = await asyncio.wait(
                {sender, receiver, rehello, switch}, return_when=asyncio.FIRST_COMPLETED
            )
            if switch in done:
                stop_sending.set()
                await self._drain(sender, receiver, in_flight, acked)
                handed_over = receiver
                raise _Switching(receiver)
            if rehello in done:
                self._backoff.reset()
                raise SessionEnded("new hello requested")
            for task in done:
                task.result()  # re-raise what ended the session
            raise SessionEnded("hub link tasks ended")
        finally:
            owned = (sender, receiver, rehello, switch)
            await cancel_and_wait(*(task for task in owned if task is not handed_over))

    async def _drain(
        self,
        sender: asyncio.Task[None],
        receiver: asyncio.Task[None],
        in_flight: set[int],
        acked: asyncio.Event,
    ) -> None:
        """Let the sender stop at a message boundary, then wait (bounded) for the acks of
        what is in flight. What stays unacknowledged is sent again on the next session."""
        log.debug("switching: %d batches in flight", len(in_flight))
        try:
            async with asyncio.timeout(self._settings.switch_drain_s):
                await sender
                while in_flight and not receiver.done():
                    acked.clear()
                    await acked.wait()
        except TimeoutError:
            log.warning(
                "%d batches unacknowledged after %g s; sending them again after the switch",
                len(in_flight),
                self._settings.switch_drain_s,
            )
        if receiver.done():
            receiver.result()  # the stream ended meanwhile: not a clean switch

    async def _send(
        self, call: grpc.aio.StreamStreamCall, in_flight: set[int], stop: asyncio.Event
    ) -> None:
        loop = asyncio.get_running_loop()
        heartbeat_s = self._settings.heartbeat_interval.total_seconds()
        backlog_end = self._spool.newest_seq() or 0
        gaps_sent: set[tuple[int, int]] = set()
        last_sent = 0
        last_write = loop.time()
        while not stop.is_set():
            self._spool.changed.clear()
            for gap in self._spool.gaps():
                if (gap.from_seq, gap.to_seq) not in gaps_sent:
                    self._spool.gap_announced(gap)
                    self.gaps_sent += 1
                    await call.write(agent_pb2.ConnectRequest(gap=gap))
                    gaps_sent.add((gap.from_seq, gap.to_seq))
            batch = self._spool.next_after(last_sent)
            if batch is not None and len(in_flight) < self._settings.max_in_flight:
                await call.write(agent_pb2.ConnectRequest(batch=batch))
                in_flight.add(batch.seq)
                last_sent, last_write = batch.seq, loop.time()
                if batch.seq <= backlog_end:  # re-sending what piled up while away
                    await asyncio.sleep(1.0 / self._settings.resend_batches_per_s)
                continue
            idle_left = heartbeat_s - (loop.time() - last_write)
            if idle_left <= 0:
                await call.write(
                    agent_pb2.ConnectRequest(heartbeat=agent_pb2.Heartbeat(sent_at=timestamp_now()))
                )
                last_write = loop.time()
                continue
            await _first_of(self._spool.changed, stop, timeout_s=idle_left)

    async def _receive(
        self,
        call: grpc.aio.StreamStreamCall,
        boot_ids: set[str],
        in_flight: set[int],
        acked: asyncio.Event,
    ) -> None:
        try:
            await self._read_responses(call, boot_ids, in_flight, acked)
        finally:
            acked.set()  # wakes a drain waiting for acks that will not come now

    async def _read_responses(
        self,
        call: grpc.aio.StreamStreamCall,
        boot_ids: set[str],
        in_flight: set[int],
        acked: asyncio.Event,
    ) -> None:
        while True:
            response = await call.read()
            if response is grpc.aio.EOF:
                raise SessionEnded("hub closed the stream")
            kind = response.WhichOneof("message")
            # Acks of the hello's boot and of the older boots it listed (seqs never repeat
            # in one spool, across boots too).
            if kind == "ack" and response.ack.boot_id in boot_ids:
                in_flight.discard(response.ack.seq)
                self._spool.acknowledge(response.ack.seq)
                self.acks_received += 1
                acked.set()
            elif kind == "gap_ack":
                self._spool.gap_acknowledged(response.gap_ack.from_seq, response.gap_ack.to_seq)
            elif kind == "keyset":
                self._take_keyset(response.keyset.keyset.SerializeToString())
            elif kind == "policy":
                self._take_policy(response.policy.bundle.SerializeToString())
            else:
                log.debug("ignoring %s from hub (not handled by this agent version)", kind)

    def _take_keyset(self, envelope: bytes) -> None:
        try:
            self._trust.offer(envelope, self._clock())
            self._trust.hub_version = max(self._trust.hub_version, self._trust.version)
        except SentinelError as exc:  # a keyset we must not trust changes nothing
            log.error("keyset from the hub refused (%s): %s", exc.reason, exc)

    def _take_policy(self, envelope: bytes) -> None:
        try:
            self._policies.offer(envelope, self._clock())
        except SentinelError as exc:  # the held bundle stays in force
            log.error("policy bundle from the hub refused (%s): %s", exc.reason, exc)


async def _first_of(*events: asyncio.Event, timeout_s: float) -> None:
    """Return when one of `events` is set or after `timeout_s`, whichever comes first."""
    if any(event.is_set() for event in events):
        return
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=max(0.0, timeout_s), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
