"""The Sentinel hub: mTLS gRPC server, fleet view, JetStream-backed state and events."""
