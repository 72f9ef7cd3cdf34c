"""The replay's answers to `nvmlDeviceGetFieldValues`.

Each requested id gets its own `c_nvmlFieldValue_t` (pynvml's struct) with its own `nvmlReturn`,
as NVML answers: the capture's value and type, or the return code the capture recorded (3 for
"Not Supported"); an id the capture does not know answers `NVML_ERROR_INVALID_ARGUMENT`, as the
real library does for ids the driver lacks. Invariant: the hot fields (power, energy, PCIe byte
counters, volatile uncorrected ECC) follow the trace cursor; every other field is static, and a
field the capture marks as failing fails even if the trace has a value for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pynvml

from edge_agent.nvml.capture import Capture
from edge_agent.nvml.trace import RX, TX, TraceCursor
from edge_agent.nvml.values import VALUE_MEMBER, counter_modulus

_OK = pynvml.NVML_SUCCESS
# The synthesised PCIe counters wrap at their value type's width, like the hardware's.
_WRAPPING_FIELDS = frozenset(
    {pynvml.NVML_FI_DEV_PCIE_COUNT_TX_BYTES, pynvml.NVML_FI_DEV_PCIE_COUNT_RX_BYTES}
)


class FieldAnswers:
    """Field values for one capture, following `cursor` for the hot fields."""

    def __init__(self, capture: Capture, cursor: TraceCursor, clock: Callable[[], float]) -> None:
        self._fields = capture.fields
        self._clock = clock

        def point(key: str) -> Callable[[], int]:
            return lambda: int(cursor.point[key])

        self._live: dict[int, Callable[[], int]] = {
            pynvml.NVML_FI_DEV_POWER_INSTANT: point("power_mw"),
            pynvml.NVML_FI_DEV_POWER_AVERAGE: point("power_mw"),
            pynvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION: cursor.energy_mj,
            pynvml.NVML_FI_DEV_ENERGY: cursor.energy_mj,
            pynvml.NVML_FI_DEV_PCIE_COUNT_TX_BYTES: lambda: cursor.pcie_bytes(TX),
            pynvml.NVML_FI_DEV_PCIE_COUNT_RX_BYTES: lambda: cursor.pcie_bytes(RX),
            pynvml.NVML_FI_DEV_ECC_DBE_VOL_TOTAL: point("ecc_uncorrected_volatile"),
        }

    def answer(self, field_id: int) -> tuple[int, int, int | float]:
        """(nvmlReturn, valueType, number) for one field id."""
        entry = self._fields.get(field_id)
        if entry is None:
            return pynvml.NVML_ERROR_INVALID_ARGUMENT, 0, 0
        code = int(entry.get("nvml_return", _OK))
        if code != _OK:
            return code, 0, 0
        value_type = int(entry["type"])
        live = self._live.get(field_id)
        number: int | float = live() if live else entry["value"]
        if live and field_id in _WRAPPING_FIELDS:
            number = int(number) % counter_modulus(value_type)
        return _OK, value_type, number

    def values(self, field_ids: Iterable[Any]) -> Any:
        """The `c_nvmlFieldValue_t` array pynvml returns; ids may be `(fieldId, scopeId)` pairs."""
        requested = list(field_ids)
        values = (pynvml.c_nvmlFieldValue_t * len(requested))()
        timestamp_us = int(self._clock() * 1_000_000)
        for slot, requested_id in zip(values, requested, strict=True):
            field_id, scope_id = (
                requested_id if isinstance(requested_id, tuple) else (requested_id, 0)
            )
            slot.fieldId, slot.scopeId, slot.timestamp = field_id, scope_id, timestamp_us
            slot.nvmlReturn, slot.valueType, number = self.answer(field_id)
            if slot.nvmlReturn == _OK:
                setattr(slot.value, VALUE_MEMBER[slot.valueType], number)
        return values
