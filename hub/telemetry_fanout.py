"""One NATS subscription on the telemetry subjects, shared by every WatchTelemetry viewer.

A batch stored on `sentinel.telemetry.<node>` arrives once, is decoded once, is matched once
per distinct (node, selector) among the viewers, is wrapped once in the response that every
matching viewer is sent, and is offered to each matching viewer's own bounded queue.

Invariants:
- The hub holds one subscription (on `sentinel.telemetry.*`) while anyone watches and none
  while nobody does, so a hub nobody watches is not sent back the telemetry it stores. One
  owned task, `hub-telemetry-subscription`, subscribes and unsubscribes; viewers only
  register and wait for it. So a viewer cancelled halfway through a subscribe can leave
  neither a second subscription nor none, and two arriving at once subscribe once.
- Nothing on the delivery path awaits: the NATS callback decodes, matches and offers, and a
  full viewer queue drops its oldest batch (counted in
  `sentinel_hub_telemetry_watch_dropped_total`, logged at most once a minute). One slow viewer
  never delays another, the callback, or the event loop.
- A message that is no TelemetryBatch (anyone with the NATS admin's rights can publish one) is
  skipped, counted once however many viewers watch its node, and logged at most once a minute
  per node. A message on a node nobody watches is not even decoded (nor counted).
- A viewer is sent a batch when it watches every node or the node of the batch's subject,
  and the batch's node is in the registry with labels its selector matches when the batch
  arrives (not when the viewer gets round to reading it).
- Responses are shared between viewers: nobody may modify one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Protocol

from google.protobuf.message import DecodeError
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError

from hub.metrics import HubMetrics
from sentinel import subjects
from sentinel.errors import Unavailable
from sentinel.selectors import Selector
from sentinel.tasks import cancel_and_wait
from sentinel.v1 import fleet_pb2, telemetry_pb2

log = logging.getLogger(__name__)

WATCH_QUEUE_BATCHES = 256
LOG_INTERVAL_S = 60.0
# Nodes remembered for the undecodable log's rate limit; past this the memory starts afresh.
_UNDECODABLE_LOG_NODES = 10_000
_TELEMETRY_PREFIX = subjects.telemetry_subject("x").rpartition(".")[0]

Response = fleet_pb2.WatchTelemetryResponse


class NodeLookup(Protocol):
    """Where node labels come from (the hub's `Registry`)."""

    def get(self, node_id: str) -> fleet_pb2.Node | None: ...


class TelemetryWatch:
    """One viewer's bounded queue of responses; when full, the oldest makes room."""

    def __init__(self, node_id: str, selector: Selector, queue_batches: int) -> None:
        self.node_id = node_id  # "" for every node
        self.selector = selector
        self.dropped = 0
        self._queue: asyncio.Queue[Response] = asyncio.Queue(queue_batches)

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    async def next(self) -> Response:
        """The oldest batch not yet read, once there is one."""
        return await self._queue.get()

    def offer(self, response: Response) -> int:
        """Queue `response` without waiting; returns how many batches were dropped (0 or 1)."""
        dropped = 0
        if self._queue.full():
            self._queue.get_nowait()
            dropped = 1
            self.dropped += 1
        self._queue.put_nowait(response)
        return dropped


# Viewers by selector, so a selector that many viewers share is evaluated once a batch.
# The inner dicts are insertion-ordered sets.
_Groups = dict[Selector, dict[TelemetryWatch, None]]
_NO_GROUPS: Mapping[Selector, dict[TelemetryWatch, None]] = {}


class TelemetryFanout:
    """The hub's telemetry subscription and its viewers. `watch()` registers one viewer;
    `close()` (at the hub's stop, once its viewers are gone) cancels what is left."""

    def __init__(
        self,
        nc: NatsClient,
        nodes: NodeLookup,
        metrics: HubMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        queue_batches: int = WATCH_QUEUE_BATCHES,
    ) -> None:
        self._nc = nc
        self._nodes = nodes
        self._metrics = metrics
        self._clock = clock
        self._queue_batches = queue_batches
        self._everywhere: _Groups = {}
        self._by_node: dict[str, _Groups] = {}
        self._watching = 0
        self._subscription: Subscription | None = None
        self._subscriber: asyncio.Task[None] | None = None
        self._closed = False
        self.subscriptions_made = 0
        self.dropped = 0
        self.undecodable = 0
        self._undecodable_logged: dict[str, float] = {}
        self._drops_logged_at: float | None = None
        self._drops_unlogged = 0

    @property
    def watching(self) -> int:
        """Viewers registered now."""
        return self._watching

    @property
    def subscribed(self) -> bool:
        return self._subscription is not None

    @contextlib.asynccontextmanager
    async def watch(self, node_id: str, selector: Selector) -> AsyncIterator[TelemetryWatch]:
        """A viewer of `node_id`'s batches ("" for every node's) that `selector` matches, from
        once the shared subscription exists until the block ends."""
        if self._closed:
            raise Unavailable("the hub is stopping: no new telemetry watches")
        watch = TelemetryWatch(node_id, selector, self._queue_batches)
        self._add(watch)
        try:
            if self._subscription is None:
                # Shielded: a viewer that goes away must not cancel what others wait on.
                await asyncio.shield(self._reconcile_soon())
            yield watch
        finally:
            self._remove(watch)
            if not self._watching and not self._closed:
                self._reconcile_soon()

    async def close(self) -> None:
        """Cancel the subscription task and unsubscribe. For the hub's stop, after its gRPC
        server stopped (so no viewer is left)."""
        self._closed = True
        if self._subscriber is not None:
            await cancel_and_wait(self._subscriber)
        if self._subscription is not None:
            subscription, self._subscription = self._subscription, None
            await _unsubscribe(subscription)

    def _add(self, watch: TelemetryWatch) -> None:
        groups = self._by_node.setdefault(watch.node_id, {}) if watch.node_id else self._everywhere
        groups.setdefault(watch.selector, {})[watch] = None
        self._watching += 1

    def _remove(self, watch: TelemetryWatch) -> None:
        groups = self._by_node.get(watch.node_id, {}) if watch.node_id else self._everywhere
        watches = groups.get(watch.selector, {})
        if watch in watches:
            del watches[watch]
            self._watching -= 1
        if not watches:
            groups.pop(watch.selector, None)
        if watch.node_id and not groups:
            self._by_node.pop(watch.node_id, None)

    def _reconcile_soon(self) -> asyncio.Task[None]:
        """The task that brings the subscription in line with the viewers (a new one unless
        one is running: that one checks again after each step)."""
        task = self._subscriber
        if task is None or task.done():
            task = asyncio.create_task(self._reconcile(), name="hub-telemetry-subscription")
            task.add_done_callback(_log_failure)
            self._subscriber = task
        return task

    async def _reconcile(self) -> None:
        while True:
            if self._watching and self._subscription is None:
                self._subscription = await self._nc.subscribe(
                    subjects.TELEMETRY_ALL, cb=self._on_message
                )
                self.subscriptions_made += 1
            elif not self._watching and self._subscription is not None:
                subscription, self._subscription = self._subscription, None
                await _unsubscribe(subscription)
            else:
                return

    async def _on_message(self, msg: Msg) -> None:
        """nats-py's callback (it must be a coroutine); awaits nothing."""
        self.fan_out(msg.subject, msg.data)

    def fan_out(self, subject: str, data: bytes) -> None:
        """Decode one message and offer it to every viewer it is for."""
        node_groups = self._by_node.get(subjects.node_of_subject(subject, _TELEMETRY_PREFIX))
        if not self._everywhere and node_groups is None:
            return
        try:
            batch = telemetry_pb2.TelemetryBatch.FromString(data)
        except DecodeError:
            self._skipped_undecodable(subject)
            return
        node = self._nodes.get(batch.node_id)
        if node is None:
            return
        response: Response | None = None
        dropped = 0
        for groups in (self._everywhere, node_groups or _NO_GROUPS):
            for selector, watches in groups.items():
                if not selector.matches(node.labels):
                    continue
                if response is None:
                    response = Response(batch=batch)
                for watch in watches:
                    dropped += watch.offer(response)
        if dropped:
            self._dropped(dropped)

    def _dropped(self, batches: int) -> None:
        self.dropped += batches
        if self._metrics is not None:
            self._metrics.telemetry_watch_dropped(batches)
        self._drops_unlogged += batches
        now = self._clock()
        if self._drops_logged_at is not None and now - self._drops_logged_at < LOG_INTERVAL_S:
            return
        self._drops_logged_at = now
        log.warning(
            "dropped %d telemetry batches for slow WatchTelemetry viewers, each its oldest "
            "(logged once a minute; sentinel_hub_telemetry_watch_dropped_total counts them all)",
            self._drops_unlogged,
        )
        self._drops_unlogged = 0

    def _skipped_undecodable(self, subject: str) -> None:
        self.undecodable += 1
        if self._metrics is not None:
            self._metrics.telemetry_undecodable()
        node_id = subjects.node_of_subject(subject, _TELEMETRY_PREFIX) or subject
        now = self._clock()
        last = self._undecodable_logged.get(node_id)
        if last is not None and now - last < LOG_INTERVAL_S:
            return
        if len(self._undecodable_logged) >= _UNDECODABLE_LOG_NODES:
            self._undecodable_logged.clear()
        self._undecodable_logged[node_id] = now
        log.warning(
            "skipped an undecodable telemetry message for node %s on %s (logged once a "
            "minute per node; sentinel_hub_telemetry_undecodable_total counts them all)",
            node_id,
            subject,
        )


async def _unsubscribe(subscription: Subscription) -> None:
    try:
        await subscription.unsubscribe()
    except NatsError as exc:  # the connection is closed or closing: the interest is gone
        log.debug("telemetry subscription already ended: %r", exc)


def _log_failure(task: asyncio.Task[None]) -> None:
    """Viewers waiting on a failed subscribe get its error; this logs it (and marks it
    retrieved) also when none was left to."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("cannot subscribe to the telemetry subjects: %r", exc)
