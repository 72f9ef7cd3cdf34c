"""Rollout engine (pure, synchronous, clock injected): canary steps, waves, health
scores and rollback decisions. It imports neither grpc nor nats (enforced)."""
