"""Load and check an NVML capture: what one real GPU answered, as `tools/nvml_capture.py` wrote it.

A capture holds `system` (driver, NVML and CUDA versions), `queries` (each NVML call's value, or
`{"nvml_error": ..., "code": n}` when NVML raised), `fields` (every `NVML_FI_DEV_*` id: a value
and its type, or an `nvml_return` code), and `trace_5hz` (the hot values sampled at 5 Hz).

Invariant: a `Capture` returned by `load_capture` has all four parts and a non-empty trace whose
every point carries the keys the replay reads. Any other input is refused here, once, with a
`ConfigError` whose reason is `BAD_REPLAY_SOURCE`; the replay never meets a half-formed capture.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pynvml

from sentinel.errors import ConfigError

BAD_REPLAY_SOURCE = "BAD_REPLAY_SOURCE"
BUILTIN_PREFIX = "builtin:"
# Captures packaged with the agent, by the name that follows "builtin:".
BUILTIN_CAPTURES: dict[str, str] = {"h200": "h200-driver580.json"}

TRACE_KEYS = frozenset(
    {
        "util",
        "memory",
        "temp_gpu",
        "power_mw",
        "energy_mj",
        "clock_sm",
        "clock_mem",
        "pstate",
        "clock_reasons",
        "pcie_tx_kbps",
        "pcie_rx_kbps",
        "ecc_uncorrected_volatile",
        "procs",
    }
)
_SYSTEM_KEYS = frozenset({"driver", "nvml", "cuda_driver"})
_QUERY_KEYS = frozenset({"name", "uuid", "serial", "pci", "memory"})


@dataclass(frozen=True)
class Capture:
    """One GPU's recorded NVML answers. `fields` is keyed by field id."""

    source: str
    system: Mapping[str, Any]
    queries: Mapping[str, Any]
    fields: Mapping[int, Mapping[str, Any]]
    trace: Sequence[Mapping[str, Any]]
    nvlink_states: Sequence[Any]


def load_capture(spec: str) -> Capture:
    """Load `builtin:<name>` or a capture file path; refuse anything unusable with ConfigError."""
    if not spec:
        raise _bad(spec, "empty replay source: use builtin:<name> or a capture file path")
    raw = _read_builtin(spec) if spec.startswith(BUILTIN_PREFIX) else _read_file(spec)
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(spec, f"replay source {spec!r} is not JSON: {exc}") from exc
    return _parse(spec, document)


def recorded_answer(entry: Any) -> Any:
    """A capture entry's value, or raise the `pynvml.NVMLError` it records."""
    if isinstance(entry, Mapping) and "nvml_error" in entry:
        raise pynvml.NVMLError(_error_code(entry))
    return entry


def _error_code(entry: Mapping[str, Any]) -> int:
    code = entry.get("code")
    if isinstance(code, int):
        return code
    by_text: dict[str, int] = {
        text: num for num, text in pynvml.NVMLError._errcode_to_string.items()
    }
    return int(by_text.get(str(entry["nvml_error"]), pynvml.NVML_ERROR_UNKNOWN))


def _read_builtin(spec: str) -> bytes:
    name = spec.removeprefix(BUILTIN_PREFIX)
    filename = BUILTIN_CAPTURES.get(name)
    if filename is None:
        known = ", ".join(BUILTIN_PREFIX + key for key in sorted(BUILTIN_CAPTURES))
        raise _bad(spec, f"unknown builtin replay source {spec!r}; known: {known}")
    return resources.files("edge_agent").joinpath("data", filename).read_bytes()


def _read_file(spec: str) -> bytes:
    try:
        return Path(spec).read_bytes()
    except OSError as exc:
        raise _bad(spec, f"cannot read replay capture {spec!r}: {exc.strerror or exc}") from exc


def _parse(spec: str, document: Any) -> Capture:
    if not isinstance(document, Mapping):
        raise _bad(spec, f"replay capture {spec!r} is not a JSON object")
    system = _section(spec, document, "system", _SYSTEM_KEYS)
    queries = _section(spec, document, "queries", _QUERY_KEYS)
    trace = document.get("trace_5hz")
    if not isinstance(trace, list) or not trace:
        raise _bad(spec, f"replay capture {spec!r} has no trace_5hz points")
    for position, point in enumerate(trace):
        if not isinstance(point, Mapping) or not point.keys() >= TRACE_KEYS:
            missing = sorted(TRACE_KEYS - set(point)) if isinstance(point, Mapping) else "all"
            raise _bad(spec, f"replay capture {spec!r}: trace_5hz[{position}] lacks {missing}")
    nvlink = document.get("nvlink_states", [])
    return Capture(
        source=spec,
        system=system,
        queries=queries,
        fields=_fields_by_id(spec, document.get("fields")),
        trace=trace,
        nvlink_states=nvlink if isinstance(nvlink, list) else [],
    )


def _section(spec: str, document: Mapping[str, Any], key: str, required: frozenset[str]) -> Any:
    section = document.get(key)
    if not isinstance(section, Mapping) or not required <= section.keys():
        raise _bad(spec, f"replay capture {spec!r}: {key!r} must hold {sorted(required)}")
    return section


def _fields_by_id(spec: str, fields: Any) -> dict[int, Mapping[str, Any]]:
    if not isinstance(fields, Mapping):
        raise _bad(spec, f"replay capture {spec!r}: 'fields' must be an object")
    by_id: dict[int, Mapping[str, Any]] = {}
    for name, entry in fields.items():
        valid = isinstance(entry, Mapping) and isinstance(entry.get("id"), int)
        if not valid or not ("nvml_return" in entry or {"type", "value"} <= entry.keys()):
            raise _bad(spec, f"replay capture {spec!r}: field {name!r} is malformed")
        # Some ids have two names (e.g. 74 is SW_POWER_CAP and PERF_POLICY_POWER): same answer.
        by_id.setdefault(entry["id"], entry)
    return by_id


def _bad(spec: str, message: str) -> ConfigError:
    return ConfigError(message, reason=BAD_REPLAY_SOURCE, source=spec)
