"""CommandService: issue, read, list and watch signed commands.

Validation happens here, before anything is stored or signed: the action must be
in the catalogue, its parameters typed as the catalogue says, the target a known
node or a selector that matches at least one node, and a cluster-scoped action
must name exactly one node (a selector is refused with `BAD_TARGET`). The issuer
is the caller's verified identity, never a field of the request.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta

import grpc

from hub.auth import current_identity
from hub.command_issuer import CommandIssuer, IssueOrder
from hub.command_store import CommandStore
from hub.metrics import HubMetrics
from hub.registry import Registry
from hub.state import store_unavailable
from sentinel import actions
from sentinel.durations import from_proto_duration
from sentinel.errors import FailedPrecondition, InvalidArgument, NotFound
from sentinel.identity import validate_node_id
from sentinel.selectors import parse_selector
from sentinel.v1 import command_pb2, command_pb2_grpc

DEFAULT_TTL = timedelta(minutes=10)
MAX_TTL = timedelta(days=7)
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


class CommandService(command_pb2_grpc.CommandServiceServicer):
    def __init__(
        self,
        registry: Registry,
        store: CommandStore,
        issuer: CommandIssuer,
        metrics: HubMetrics,
        clock: Callable[[], datetime],
    ) -> None:
        self._registry = registry
        self._store = store
        self._issuer = issuer
        self._metrics = metrics
        self._clock = clock

    async def IssueCommand(
        self, request: command_pb2.IssueCommandRequest, context: grpc.aio.ServicerContext
    ) -> command_pb2.IssueCommandResponse:
        spec = actions.lookup(request.action)
        actions.validate_parameters(spec, request.parameters)
        if request.mode not in (
            command_pb2.COMMAND_MODE_UNSPECIFIED,
            command_pb2.COMMAND_MODE_EXECUTE,
            command_pb2.COMMAND_MODE_SHADOW,
        ):
            raise InvalidArgument(f"unknown mode {request.mode}", reason="BAD_MODE")
        order = IssueOrder(
            spec=spec,
            request=request,
            nodes=self._resolve(spec, request.target),
            issuer=str(current_identity()),
            ttl=_ttl(request),
        )
        with store_unavailable("issuing a command"):
            command = await self._issuer.issue(order)
        self._metrics.commands_issued(spec.name, len(command.nodes))
        return command_pb2.IssueCommandResponse(command=command)

    async def GetCommand(
        self, request: command_pb2.GetCommandRequest, context: grpc.aio.ServicerContext
    ) -> command_pb2.GetCommandResponse:
        return command_pb2.GetCommandResponse(command=self._get(request.command_id))

    async def ListCommands(
        self, request: command_pb2.ListCommandsRequest, context: grpc.aio.ServicerContext
    ) -> command_pb2.ListCommandsResponse:
        if request.page_size < 0:
            raise InvalidArgument("page_size must not be negative", reason="BAD_PAGE_SIZE")
        page_size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        ids = self._store.command_ids()
        if request.page_token:
            after = _decode_token(request.page_token, ids)
            ids = ids[ids.index(after) + 1 :]
        page: list[command_pb2.Command] = []
        for command_id in ids:
            command = self._store.get(command_id)
            if command is None or not _matches(command, request):
                continue
            if len(page) == page_size:
                return command_pb2.ListCommandsResponse(
                    commands=page, next_page_token=_encode_token(page[-1].command_id)
                )
            page.append(command)
        return command_pb2.ListCommandsResponse(commands=page)

    async def WatchCommand(
        self, request: command_pb2.WatchCommandRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[command_pb2.WatchCommandResponse]:
        """Every node's status first, then each change; the first and the last message
        also carry the whole command (the last one as it ended)."""
        command_id = request.command_id
        first: command_pb2.Command | None = self._get(command_id)
        seen = 0
        while True:
            seen, statuses = self._store.statuses_since(command_id, seen)
            done = self._store.all_final(command_id)
            for index, status in enumerate(statuses):
                response = command_pb2.WatchCommandResponse(status=status)
                if first is not None:
                    response.command.CopyFrom(first)
                    first = None
                if done and index == len(statuses) - 1:
                    response.command.CopyFrom(self._get(command_id))
                yield response
            if done:
                return
            await self._store.wait_for(
                lambda: self._store.last_change(command_id) > seen  # noqa: B023
            )

    def _get(self, command_id: str) -> command_pb2.Command:
        command = self._store.get(command_id)
        if command is None:
            raise NotFound(f"no command {command_id!r}", reason="COMMAND_NOT_FOUND")
        return command

    def _resolve(self, spec: actions.ActionSpec, target: command_pb2.CommandTarget) -> list[str]:
        kind = target.WhichOneof("target")
        if kind == "node_id":
            node_id = validate_node_id(target.node_id)
            if self._registry.get(node_id) is None:
                raise NotFound(f"no node {node_id!r} in the fleet", reason="UNKNOWN_NODE")
            return [node_id]
        if kind == "label_selector":
            if spec.scope is actions.Scope.CLUSTER:
                raise InvalidArgument(
                    f"{spec.name} changes one cluster object: target the one node that acts "
                    "for the cluster, not a selector",
                    reason="BAD_TARGET",
                )
            nodes = self._registry.select(parse_selector(target.label_selector))
            if not nodes:
                raise FailedPrecondition(
                    f"selector {target.label_selector!r} matches no node",
                    reason="NO_MATCHING_NODES",
                )
            return [n.node_id for n in nodes]
        raise InvalidArgument("a command needs a node_id or a label_selector", reason="BAD_TARGET")


def _ttl(request: command_pb2.IssueCommandRequest) -> timedelta:
    if not request.HasField("ttl"):
        return DEFAULT_TTL
    ttl = from_proto_duration(request.ttl)
    if not timedelta(0) < ttl <= MAX_TTL:
        raise InvalidArgument(
            f"ttl must be positive and at most {MAX_TTL.days} days", reason="BAD_TTL"
        )
    return ttl


def _matches(command: command_pb2.Command, request: command_pb2.ListCommandsRequest) -> bool:
    if request.action and command.action != request.action:
        return False
    nodes = [n for n in command.nodes if not request.node_id or n.node_id == request.node_id]
    if not nodes:
        return False
    return not request.state or any(n.state == request.state for n in nodes)


def _encode_token(command_id: str) -> str:
    return base64.urlsafe_b64encode(command_id.encode()).decode()


def _decode_token(token: str, ids: list[str]) -> str:
    try:
        command_id = base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidArgument(
            "page_token is not one this hub issued", reason="BAD_PAGE_TOKEN"
        ) from exc
    if command_id not in ids:
        raise InvalidArgument("page_token is not one this hub issued", reason="BAD_PAGE_TOKEN")
    return command_id
