"""Sentinel's shared bottom layer.

Holds the generated v1 API (`sentinel.v1`, `sentinel.inframind.v1`) and the few
utilities every process needs: errors, identity, TLS credentials, durations,
label selectors, NATS subjects and events. It imports nothing from the layers
above it (hub, edge_agent, policy, rollout, certs, cli).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
