"""The hub's gRPC server: transport limits, mTLS, authorisation, budgets, services, health,
reflection.

gRPC's `maximum_concurrent_rpcs` counts calls before anyone is authenticated, so it is
only a last-resort guard sized above everything the per-identity budgets admit
(`hub.budgets`, see `ServerLimits`): no single identity can reach it.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from hub.auth import AuthInterceptor, Gate
from hub.budgets import CallBudgets
from hub.metrics import HubMetrics
from hub.settings import ServerLimits
from hub.unimplemented import unimplemented_service
from sentinel.tls import MIB
from sentinel.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    audit_pb2,
    audit_pb2_grpc,
    command_pb2,
    command_pb2_grpc,
    enrollment_pb2,
    enrollment_pb2_grpc,
    fleet_pb2,
    fleet_pb2_grpc,
    keys_pb2,
    keys_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
    rollout_pb2,
)

ENROLL_MAX_RECEIVE_BYTES = 64 * 1024

V1_SERVICES = (
    agent_pb2.DESCRIPTOR.services_by_name["AgentService"],
    fleet_pb2.DESCRIPTOR.services_by_name["FleetService"],
    command_pb2.DESCRIPTOR.services_by_name["CommandService"],
    keys_pb2.DESCRIPTOR.services_by_name["KeyService"],
    policy_pb2.DESCRIPTOR.services_by_name["PolicyService"],
    rollout_pb2.DESCRIPTOR.services_by_name["RolloutService"],
    enrollment_pb2.DESCRIPTOR.services_by_name["EnrollmentService"],
    audit_pb2.DESCRIPTOR.services_by_name["AuditService"],
)
SERVICE_NAMES = tuple(s.full_name for s in V1_SERVICES)


def server_options(limits: ServerLimits) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", limits.max_receive_bytes),
        ("grpc.max_send_message_length", 16 * MIB),
        ("grpc.keepalive_time_ms", int(limits.keepalive_time_s * 1000)),
        ("grpc.keepalive_timeout_ms", int(limits.keepalive_timeout_s * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        # Pings from a client more often than this count as strikes; two strikes: GOAWAY.
        (
            "grpc.http2.min_ping_interval_without_data_ms",
            int(limits.min_client_ping_interval_s * 1000),
        ),
        ("grpc.http2.max_ping_strikes", 2),
        ("grpc.max_connection_age_ms", int(limits.max_connection_age_s * 1000)),
        ("grpc.max_connection_age_grace_ms", int(limits.max_connection_age_grace_s * 1000)),
        ("grpc.max_concurrent_streams", limits.max_concurrent_streams),
        ("grpc.so_reuseport", 0),
    ]


@dataclass(frozen=True, slots=True)
class Services:
    """The implemented v1 services; every other one answers UNIMPLEMENTED."""

    agent: agent_pb2_grpc.AgentServiceServicer
    fleet: fleet_pb2_grpc.FleetServiceServicer
    command: command_pb2_grpc.CommandServiceServicer
    keys: keys_pb2_grpc.KeyServiceServicer
    policy: policy_pb2_grpc.PolicyServiceServicer
    enrollment: enrollment_pb2_grpc.EnrollmentServiceServicer
    audit: audit_pb2_grpc.AuditServiceServicer | None = None


def build_server(
    limits: ServerLimits, gate: Gate, services: Services, metrics: HubMetrics
) -> tuple[grpc.aio.Server, health.aio.HealthServicer]:
    budgets = CallBudgets(limits, on_refused=metrics.rpc_refused)
    server = grpc.aio.server(
        interceptors=[AuthInterceptor(gate, budgets)],
        options=server_options(limits),
        maximum_concurrent_rpcs=limits.max_concurrent_rpcs,
    )
    agent_pb2_grpc.add_AgentServiceServicer_to_server(services.agent, server)
    fleet_pb2_grpc.add_FleetServiceServicer_to_server(services.fleet, server)
    command_pb2_grpc.add_CommandServiceServicer_to_server(services.command, server)
    keys_pb2_grpc.add_KeyServiceServicer_to_server(services.keys, server)
    policy_pb2_grpc.add_PolicyServiceServicer_to_server(services.policy, server)
    enrollment_pb2_grpc.add_EnrollmentServiceServicer_to_server(services.enrollment, server)
    if services.audit is not None:
        audit_pb2_grpc.add_AuditServiceServicer_to_server(services.audit, server)
    implemented = {
        "sentinel.v1.AgentService",
        "sentinel.v1.FleetService",
        "sentinel.v1.CommandService",
        "sentinel.v1.KeyService",
        "sentinel.v1.PolicyService",
        "sentinel.v1.EnrollmentService",
    }
    if services.audit is not None:
        implemented.add("sentinel.v1.AuditService")
    server.add_generic_rpc_handlers(
        [unimplemented_service(s) for s in V1_SERVICES if s.full_name not in implemented]
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    return server, health_servicer


def build_enroll_server(service: enrollment_pb2_grpc.EnrollmentServiceServicer) -> grpc.aio.Server:
    """The enrollment listener: EnrollmentService alone (no health, no reflection), small
    messages, few concurrent calls; its callers hold a token, not a certificate."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", ENROLL_MAX_RECEIVE_BYTES),
            ("grpc.max_concurrent_streams", 4),
            ("grpc.max_connection_idle_ms", 60_000),
            ("grpc.so_reuseport", 0),
        ],
        maximum_concurrent_rpcs=64,
    )
    enrollment_pb2_grpc.add_EnrollmentServiceServicer_to_server(service, server)
    return server


async def set_serving(health_servicer: health.aio.HealthServicer, serving: bool) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, status)
