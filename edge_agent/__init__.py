"""Sentinel edge agent: collectors, telemetry stream, command verification and execution."""
