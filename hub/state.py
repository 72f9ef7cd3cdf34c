"""The hub's durable state in NATS JetStream: the telemetry stream, the events stream,
the node registry and the per-(node, boot) telemetry high-water marks (KV buckets).

Invariants:
- the hub keeps no durable state of its own; a restarted hub (or another replica)
  rebuilds its view from these;
- every stream and bucket is made with its budget (hub.storage_budget), and bringing an
  existing one to its configuration (`ensure_stream`, `ensure_bucket`) never removes a
  message: a limit below what the stream holds now is left as it was, with a warning,
  until the stream holds less (an upgrade from unbudgeted streams trims nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta

import nats
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import APIError, NotFoundError
from nats.js.kv import KeyValue

from hub.storage_budget import RESERVATION_REFUSED_ERR, StorageBudget
from sentinel import subjects
from sentinel.errors import ConfigError, Unavailable
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
# JetStream lists at most this many subjects in one stream info.
_SUBJECTS_PER_INFO = 100_000


def telemetry_stream(budget: StorageBudget, retention: timedelta) -> api.StreamConfig:
    return budget.stream_config(
        budget.telemetry,
        subjects=[subjects.TELEMETRY_ALL],
        max_age=retention.total_seconds(),
        duplicate_window=DEDUP_WINDOW_S,
    )


def events_stream(budget: StorageBudget) -> api.StreamConfig:
    return budget.stream_config(
        budget.events, subjects=[subjects.EVENTS_ALL], max_age=EVENTS_RETENTION.total_seconds()
    )


def commands_stream(budget: StorageBudget) -> api.StreamConfig:
    return budget.stream_config(
        budget.commands,
        subjects=[subjects.COMMANDS_ALL],
        max_age=COMMANDS_RETENTION.total_seconds(),
        duplicate_window=DEDUP_WINDOW_S,
    )


def results_stream(budget: StorageBudget) -> api.StreamConfig:
    return budget.stream_config(
        budget.results,
        subjects=[subjects.RESULTS_ALL],
        max_age=COMMANDS_RETENTION.total_seconds(),
        duplicate_window=DEDUP_WINDOW_S,
    )


@dataclass
class HubState:
    nc: NatsClient
    js: JetStreamContext
    nodes: KeyValue
    telemetry_hwm: KeyValue
    idempotency: KeyValue
    keys: KeyValue
    _events: _ConnectionLog
    budget: StorageBudget = field(default_factory=StorageBudget)

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        telemetry_retention: timedelta,
        tls: TlsFiles | None = None,
        timeout_s: float = 5.0,
        budget: StorageBudget | None = None,
    ) -> HubState:
        """Connect (with the hub's certificate when `tls` is given) and make sure every
        stream and bucket exists with its current configuration and its share of
        `budget` (the default: sized for 10,000 nodes)."""
        budget = budget or StorageBudget()
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
        try:
            for config in (
                telemetry_stream(budget, telemetry_retention),
                events_stream(budget),
                commands_stream(budget),
                results_stream(budget),
            ):
                await ensure_stream(js, config)
            idempotency_ttl_s = COMMANDS_RETENTION.total_seconds()
            nodes = await ensure_bucket(js, budget.bucket_config(budget.node_registry))
            marks = await ensure_bucket(js, budget.bucket_config(budget.telemetry_marks))
            idempotency = await ensure_bucket(
                js, budget.bucket_config(budget.idempotency_keys, ttl_s=idempotency_ttl_s)
            )
            keys = await ensure_bucket(js, budget.bucket_config(budget.keys))
        except BaseException:
            with contextlib.suppress(*_CLOSE_ERRORS):
                await nc.close()
            raise
        return cls(nc, js, nodes, marks, idempotency, keys, events, budget)

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
    """Create the stream, or bring an existing one to this configuration without removing
    anything it holds: a byte or per-subject limit below what it holds now stays as it
    was (logged) until it holds less. Raises ConfigError (STORAGE_BUDGET_TOO_LARGE) when
    JetStream cannot reserve the stream's max_bytes."""
    name = config.name or ""
    try:
        info = await js.stream_info(name)
    except NotFoundError:
        with _reserving(config):
            await js.add_stream(config)
        log.info("created JetStream stream %s", name)
        return
    config = await _keeping_what_is_stored(js, config, info)
    with _reserving(config):
        await js.update_stream(config)


async def ensure_bucket(js: JetStreamContext, config: api.StreamConfig) -> KeyValue:
    """A KV bucket from its stream's configuration (`StorageBudget.bucket_config`), made
    or updated like any stream: nats-py's `create_key_value` refuses a bucket whose
    configuration changed, and an update keeps every key."""
    await ensure_stream(js, config)
    return await js.key_value((config.name or "").removeprefix("KV_"))


def _tighter(new: int | None, current: int | None) -> bool:
    """`new` is a limit, and a lower one than `current` (None, 0 or -1: no limit)."""
    return new is not None and new > 0 and (current is None or current <= 0 or new < current)


async def _keeping_what_is_stored(
    js: JetStreamContext, config: api.StreamConfig, info: api.StreamInfo
) -> api.StreamConfig:
    """`config`, less the limits that would make JetStream trim what the stream holds."""
    name, held, current = config.name, info.state, info.config
    if _tighter(config.max_bytes, current.max_bytes) and held.bytes > (config.max_bytes or 0):
        log.warning(
            "stream %s holds %d bytes, more than its budget of %d: its byte limit stays %s "
            "until it holds less; nothing is trimmed",
            name,
            held.bytes,
            config.max_bytes,
            current.max_bytes,
        )
        config = replace(config, max_bytes=current.max_bytes)
    per_subject = config.max_msgs_per_subject
    if _tighter(per_subject, current.max_msgs_per_subject) and held.messages > per_subject:
        most = await _most_on_one_subject(js, name or "")
        if most is None or most > per_subject:
            log.warning(
                "stream %s holds %s messages on one subject, more than its budget of %d: "
                "its per-subject limit stays %s until it holds less; nothing is trimmed",
                name,
                "too many" if most is None else most,
                per_subject,
                current.max_msgs_per_subject,
            )
            kept = current.max_msgs_per_subject
            config = replace(
                config,
                max_msgs_per_subject=kept,
                discard_new_per_subject=config.discard_new_per_subject and kept > 0,
            )
    return config


async def _most_on_one_subject(js: JetStreamContext, stream: str) -> int | None:
    """The most messages any one subject holds; None when there are too many subjects
    to list in one answer."""
    counts = (await js.stream_info(stream, subjects_filter=">")).state.subjects or {}
    if len(counts) >= _SUBJECTS_PER_INFO:
        return None
    return max(counts.values(), default=0)


@contextlib.contextmanager
def _reserving(config: api.StreamConfig) -> Iterator[None]:
    try:
        yield
    except APIError as exc:
        if exc.err_code != RESERVATION_REFUSED_ERR:
            raise
        raise ConfigError(
            f"JetStream cannot reserve {config.max_bytes} bytes for stream {config.name}: "
            "its file storage (nats-server `max_file_store`, and the account's `max_file`) "
            "must allow the storage budget's total, StorageBudget.total_bytes() "
            "(docs/sizing.md)",
            reason="STORAGE_BUDGET_TOO_LARGE",
        ) from exc


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
