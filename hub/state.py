"""The hub's durable state in NATS JetStream: the telemetry stream, the events stream,
the node registry and the per-(node, boot) telemetry high-water marks (KV buckets).

Invariant: the hub keeps no durable state of its own; a restarted hub (or another
replica) rebuilds its view from these.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

import nats
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

from sentinel import subjects
from sentinel.errors import Unavailable
from sentinel.nats_tls import client_ssl_context
from sentinel.tasks import raise_if_cancelling
from sentinel.tls import TlsFiles

log = logging.getLogger(__name__)

# nats-py's close writes what it buffered while disconnected to a TLS transport that is
# already gone, and asyncio's SSL transport raises AttributeError for it: closing anyway.
_CLOSE_ERRORS = (nats.errors.Error, OSError, AttributeError)

DEDUP_WINDOW_S = 120.0
EVENTS_RETENTION = timedelta(days=7)
# Longer than the longest command time-to-live, so an agent away for that long still
# finds every unexpired command, and its result, on return.
COMMANDS_RETENTION = timedelta(days=8)


@dataclass
class HubState:
    nc: NatsClient
    js: JetStreamContext
    nodes: KeyValue
    telemetry_hwm: KeyValue
    idempotency: KeyValue
    keys: KeyValue
    _events: _ConnectionLog

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        telemetry_retention: timedelta,
        tls: TlsFiles | None = None,
        timeout_s: float = 5.0,
    ) -> HubState:
        """Connect (with the hub's certificate when `tls` is given) and make sure every
        stream and bucket exists with its current configuration."""
        events = _ConnectionLog()
        try:
            nc = await nats.connect(
                url,
                name="sentinel-hub",
                tls=client_ssl_context(tls) if tls is not None else None,
                max_reconnect_attempts=-1,
                reconnect_time_wait=1,
                connect_timeout=5,
                error_cb=events.error,
                disconnected_cb=events.disconnected,
                reconnected_cb=events.reconnected,
            )
        except Exception as exc:  # nats-py raises several unrelated types on connect
            raise Unavailable(
                f"cannot reach NATS at {url}: {exc}", reason="NATS_UNAVAILABLE"
            ) from exc
        js = nc.jetstream(timeout=timeout_s)
        await ensure_stream(
            js,
            api.StreamConfig(
                name=subjects.TELEMETRY_STREAM,
                subjects=[subjects.TELEMETRY_ALL],
                storage=api.StorageType.FILE,
                max_age=telemetry_retention.total_seconds(),
                duplicate_window=DEDUP_WINDOW_S,
                discard=api.DiscardPolicy.OLD,
            ),
        )
        await ensure_stream(
            js,
            api.StreamConfig(
                name=subjects.EVENTS_STREAM,
                subjects=[subjects.EVENTS_ALL],
                storage=api.StorageType.FILE,
                max_age=EVENTS_RETENTION.total_seconds(),
            ),
        )
        for name, subject in (
            (subjects.COMMANDS_STREAM, subjects.COMMANDS_ALL),
            (subjects.RESULTS_STREAM, subjects.RESULTS_ALL),
        ):
            await ensure_stream(
                js,
                api.StreamConfig(
                    name=name,
                    subjects=[subject],
                    storage=api.StorageType.FILE,
                    max_age=COMMANDS_RETENTION.total_seconds(),
                    duplicate_window=DEDUP_WINDOW_S,
                ),
            )
        buckets = {
            name: await js.create_key_value(
                bucket=name, history=1, storage=api.StorageType.FILE, ttl=ttl
            )
            for name, ttl in (
                (subjects.NODES_BUCKET, None),
                (subjects.TELEMETRY_HWM_BUCKET, None),
                (subjects.IDEMPOTENCY_BUCKET, COMMANDS_RETENTION.total_seconds()),
                (subjects.KEYS_BUCKET, None),
            )
        }
        return cls(
            nc,
            js,
            buckets[subjects.NODES_BUCKET],
            buckets[subjects.TELEMETRY_HWM_BUCKET],
            buckets[subjects.IDEMPOTENCY_BUCKET],
            buckets[subjects.KEYS_BUCKET],
            events,
        )

    async def close(self, timeout_s: float = 5.0) -> None:
        """Flush and close; a NATS that is already gone must not hold up a shutdown."""
        self._events.closing = True
        if self.nc.is_closed:
            return
        if not self.nc.is_connected:  # reconnecting: there is nobody to flush to
            with contextlib.suppress(*_CLOSE_ERRORS):
                await self.nc.close()
            return
        try:
            async with asyncio.timeout(timeout_s):
                await self.nc.drain()
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("NATS did not drain cleanly: %r", exc)
            with contextlib.suppress(*_CLOSE_ERRORS):
                await self.nc.close()


@contextlib.contextmanager
def store_unavailable(what: str) -> Iterator[None]:
    """Turn a failed JetStream write into Unavailable: the caller gets UNAVAILABLE with
    reason STORE_UNAVAILABLE, nothing is acknowledged, and the agent sends it again."""
    try:
        yield
    except (nats.errors.Error, TimeoutError) as exc:
        raise Unavailable(f"{what}: {exc!r}", reason="STORE_UNAVAILABLE") from exc


class _ConnectionLog:
    """One line per NATS client event (nats-py's default logs a traceback per retry);
    silent once the hub itself is closing the connection."""

    def __init__(self) -> None:
        self.closing = False

    async def error(self, exc: Exception) -> None:
        if not self.closing:
            log.warning("NATS: %r", exc)

    async def disconnected(self) -> None:
        if not self.closing:
            log.warning("NATS connection lost; reconnecting")

    async def reconnected(self) -> None:
        log.info("NATS connection restored")


async def ensure_stream(js: JetStreamContext, config: api.StreamConfig) -> None:
    """Create the stream, or bring an existing one to this configuration."""
    try:
        await js.stream_info(config.name or "")
    except NotFoundError:
        await js.add_stream(config)
        log.info("created JetStream stream %s", config.name)
        return
    await js.update_stream(config)


async def bucket_keys(js: JetStreamContext, bucket: str) -> list[str]:
    """Every key a KV bucket holds, from its stream's state: exact, where nats-py's
    `KeyValue.keys()` may answer before its watcher has seen every key."""
    prefix = f"$KV.{bucket}."
    info = await js.stream_info(f"KV_{bucket}", subjects_filter=f"{prefix}>")
    return sorted(subject.removeprefix(prefix) for subject in (info.state.subjects or {}))


async def consume(
    js: JetStreamContext,
    *,
    stream: str,
    subject: str,
    durable: str,
    batch: int,
    what: str,
    handle: Callable[[list[Msg]], Awaitable[None]],
) -> None:
    """Pull a durable consumer forever, handing each fetched batch to `handle`. A store
    that is away is logged and retried; at the end the subscription is dropped, so unread
    messages do not hold up the connection's drain (they are redelivered to whichever hub
    reads next)."""
    subscription = await js.pull_subscribe(
        subject,
        durable=durable,
        stream=stream,
        config=api.ConsumerConfig(ack_wait=30.0, max_ack_pending=4 * batch),
    )
    try:
        while True:
            try:
                messages = await subscription.fetch(batch, timeout=1.0)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            except nats.errors.Error as exc:
                raise_if_cancelling()
                log.warning("cannot read %s: %r", what, exc)
                await asyncio.sleep(1.0)
                continue
            await handle(messages)
    finally:
        with contextlib.suppress(nats.errors.Error):
            await subscription.unsubscribe()
