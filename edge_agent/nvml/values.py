"""How NVML values are shaped, shared by the collector and the replay backend.

`nvmlDeviceGetFieldValues` answers with `c_nvmlFieldValue_t` structs whose `value` is a C union;
`valueType` says which member holds the number. Both sides of the seam (the replay building such
structs, the collector reading them) use this one table, so they cannot drift apart.
"""

from __future__ import annotations

from typing import Any

import pynvml

# valueType -> the c_nvmlValue_t member that holds the value.
VALUE_MEMBER: dict[int, str] = {
    pynvml.NVML_VALUE_TYPE_DOUBLE: "dVal",
    pynvml.NVML_VALUE_TYPE_UNSIGNED_INT: "uiVal",
    pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG: "ulVal",
    pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG: "ullVal",
    pynvml.NVML_VALUE_TYPE_SIGNED_LONG_LONG: "sllVal",
    pynvml.NVML_VALUE_TYPE_SIGNED_INT: "siVal",
    pynvml.NVML_VALUE_TYPE_UNSIGNED_SHORT: "usVal",
}

# Width of an unsigned counter of each value type: a counter of that type wraps at this modulus.
_COUNTER_MODULUS: dict[int, int] = {
    pynvml.NVML_VALUE_TYPE_UNSIGNED_INT: 2**32,
    pynvml.NVML_VALUE_TYPE_UNSIGNED_SHORT: 2**16,
}


def field_number(field: Any) -> int | float:
    """The number a `c_nvmlFieldValue_t` carries, read from the union member its type names."""
    member = VALUE_MEMBER.get(int(field.valueType), "ullVal")
    number: int | float = getattr(field.value, member)
    return number


def counter_modulus(value_type: int) -> int:
    """Where an unsigned counter of `value_type` wraps (2**64 for the 64-bit types)."""
    return _COUNTER_MODULUS.get(value_type, 2**64)


def as_text(value: str | bytes) -> str:
    """NVML strings as `str`: older nvidia-ml-py releases return `bytes`."""
    return value.decode(errors="replace") if isinstance(value, bytes) else value
