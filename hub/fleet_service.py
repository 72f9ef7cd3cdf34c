"""FleetService: the fleet view for viewers and above.

ListNodes pages through nodes ordered by node_id; the page token is the last
node_id of the previous page (opaque to clients), so pages stay stable while nodes
join. WatchTelemetry follows the telemetry subjects on NATS, so it sees batches
accepted by any hub replica; a slow watcher loses its oldest batches, never blocks. A
message there that is no TelemetryBatch (anyone with the NATS admin's rights can publish
one) is skipped and counted, logged at most once a minute per node, and the watch goes on.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections.abc import AsyncIterator, Callable

import grpc
from google.protobuf.message import DecodeError
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from hub.errors import abort
from hub.metrics import HubMetrics
from hub.registry import Registry
from sentinel import subjects
from sentinel.errors import InvalidArgument, NotFound
from sentinel.identity import validate_node_id
from sentinel.selectors import parse_selector
from sentinel.v1 import fleet_pb2, fleet_pb2_grpc, telemetry_pb2

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
WATCH_QUEUE_BATCHES = 256
UNDECODABLE_LOG_INTERVAL_S = 60.0
# Nodes remembered for the log's rate limit; past this the memory starts afresh.
_UNDECODABLE_LOG_NODES = 10_000
_TELEMETRY_PREFIX = subjects.telemetry_subject("x").rpartition(".")[0]


class FleetService(fleet_pb2_grpc.FleetServiceServicer):
    def __init__(
        self,
        registry: Registry,
        nc: NatsClient,
        metrics: HubMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._nc = nc
        self._metrics = metrics
        self._clock = clock
        self.watch_dropped = 0
        self.undecodable = 0
        self._undecodable_logged: dict[str, float] = {}

    async def ListNodes(
        self, request: fleet_pb2.ListNodesRequest, context: grpc.aio.ServicerContext
    ) -> fleet_pb2.ListNodesResponse:
        if request.page_size < 0:
            raise InvalidArgument("page_size must not be negative", reason="BAD_PAGE_SIZE")
        page_size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        nodes = self._registry.select(parse_selector(request.label_selector))
        after = _decode_page_token(request.page_token)
        remaining = [n for n in nodes if n.node_id > after] if after else nodes
        page = remaining[:page_size]
        next_token = _encode_page_token(page[-1].node_id) if len(remaining) > page_size else ""
        return fleet_pb2.ListNodesResponse(
            nodes=page, next_page_token=next_token, total_size=len(nodes)
        )

    async def GetNode(
        self, request: fleet_pb2.GetNodeRequest, context: grpc.aio.ServicerContext
    ) -> fleet_pb2.GetNodeResponse:
        node = self._registry.get(validate_node_id(request.node_id))
        if node is None:
            raise NotFound(
                f"node {request.node_id!r} is not known to this hub",
                reason="NODE_NOT_FOUND",
                node_id=request.node_id,
            )
        return fleet_pb2.GetNodeResponse(node=node)

    async def WatchTelemetry(
        self, request: fleet_pb2.WatchTelemetryRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[fleet_pb2.WatchTelemetryResponse]:
        selector = parse_selector(request.label_selector)
        subject = subjects.TELEMETRY_ALL
        if request.node_id:
            subject = subjects.telemetry_subject(validate_node_id(request.node_id))
        queue: asyncio.Queue[Msg] = asyncio.Queue(WATCH_QUEUE_BATCHES)

        async def deliver(msg: Msg) -> None:
            if queue.full():
                queue.get_nowait()
                self.watch_dropped += 1
            queue.put_nowait(msg)

        subscription = await self._nc.subscribe(subject, cb=deliver)
        try:
            while True:
                msg = await queue.get()
                try:
                    batch = telemetry_pb2.TelemetryBatch.FromString(msg.data)
                except DecodeError:
                    self._skipped_undecodable(msg.subject)
                    continue
                node = self._registry.get(batch.node_id)
                if node is not None and selector.matches(node.labels):
                    yield fleet_pb2.WatchTelemetryResponse(batch=batch)
        finally:
            await subscription.unsubscribe()

    def _skipped_undecodable(self, subject: str) -> None:
        self.undecodable += 1
        if self._metrics is not None:
            self._metrics.telemetry_undecodable()
        node_id = subjects.node_of_subject(subject, _TELEMETRY_PREFIX) or subject
        now = self._clock()
        last = self._undecodable_logged.get(node_id)
        if last is not None and now - last < UNDECODABLE_LOG_INTERVAL_S:
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

    async def RecommendPlacement(
        self, request: fleet_pb2.RecommendPlacementRequest, context: grpc.aio.ServicerContext
    ) -> fleet_pb2.RecommendPlacementResponse:
        await abort(
            context,
            grpc.StatusCode.UNIMPLEMENTED,
            "FleetService/RecommendPlacement is not implemented yet",
            "NOT_IMPLEMENTED",
        )


def _encode_page_token(node_id: str) -> str:
    return base64.urlsafe_b64encode(node_id.encode()).decode()


def _decode_page_token(token: str) -> str:
    if not token:
        return ""
    try:
        return validate_node_id(base64.urlsafe_b64decode(token.encode()).decode())
    except (binascii.Error, UnicodeDecodeError, ValueError, InvalidArgument) as exc:
        raise InvalidArgument(
            "page_token is not one this hub issued", reason="BAD_PAGE_TOKEN"
        ) from exc
