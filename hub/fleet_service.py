"""FleetService: the fleet view for viewers and above.

ListNodes pages through nodes ordered by node_id; the page token is the last
node_id of the previous page (opaque to clients), so pages stay stable while nodes
join. WatchTelemetry follows the telemetry subjects on NATS, so it sees batches
accepted by any hub replica. Every watch shares the hub's one subscription and one decode
of each batch (`hub.telemetry_fanout`); a slow watcher loses its oldest batches, never
blocks another. A message there that is no TelemetryBatch (anyone with the NATS admin's
rights can publish one) is skipped and counted, logged at most once a minute per node, and
the watch goes on.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import AsyncIterator, Callable

import grpc
from nats.aio.client import Client as NatsClient

from hub.errors import abort
from hub.metrics import HubMetrics
from hub.registry import Registry
from hub.telemetry_fanout import TelemetryFanout
from sentinel.errors import InvalidArgument, NotFound
from sentinel.identity import validate_node_id
from sentinel.selectors import parse_selector
from sentinel.v1 import fleet_pb2, fleet_pb2_grpc

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


class FleetService(fleet_pb2_grpc.FleetServiceServicer):
    def __init__(
        self,
        registry: Registry,
        nc: NatsClient,
        metrics: HubMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        # The hub's one telemetry subscription; the hub closes it when it stops.
        self.telemetry = TelemetryFanout(nc, registry, metrics, clock)

    @property
    def watch_dropped(self) -> int:
        return self.telemetry.dropped

    @property
    def undecodable(self) -> int:
        return self.telemetry.undecodable

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
        node_id = validate_node_id(request.node_id) if request.node_id else ""
        async with self.telemetry.watch(node_id, selector) as watch:
            while True:
                yield await watch.next()

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
