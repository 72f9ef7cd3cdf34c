"""Policy engine (pure, synchronous, clock injected): bundles and their evaluation.

Used by the hub before it signs a command and by every agent before it executes
one. It imports neither grpc nor nats (enforced by import-linter).
"""
