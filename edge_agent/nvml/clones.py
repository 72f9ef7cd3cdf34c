"""Distinct identities for the replay's cloned GPUs.

`replay_gpus=N` presents the one captured GPU N times. Clone `i` keeps every reading but gets
its own UUID (last hex group + i), serial (+ i) and PCI bus (+ i), so fleet views, labels and
placement treat the clones as N different devices. Clone 0 is the captured GPU, unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pynvml


@dataclass(frozen=True)
class GpuIdentity:
    """What tells one GPU from another: index, UUID, serial and PCI location."""

    index: int
    uuid: str
    serial: str
    pci: Mapping[str, Any]

    def pci_info(self) -> Any:
        """A fresh `nvmlPciInfo_t`, the struct `pynvml.nvmlDeviceGetPciInfo` returns."""
        info = pynvml.nvmlPciInfo_t()
        for key, value in self.pci.items():
            setattr(info, key, value.encode() if isinstance(value, str) else value)
        return info


def clone_identity(queries: Mapping[str, Any], index: int) -> GpuIdentity:
    """The identity of clone `index` of the captured GPU described by `queries`."""
    pci = dict(queries["pci"])
    if index:
        bus = (int(pci.get("bus", 0)) + index) % 256
        pci["bus"] = bus
        for key in ("busId", "busIdLegacy"):
            if isinstance(pci.get(key), str):
                pci[key] = _with_bus(pci[key], bus)
    return GpuIdentity(
        index=index,
        uuid=_bump_uuid(str(queries["uuid"]), index),
        serial=_bump_serial(str(queries["serial"]), index),
        pci=pci,
    )


def _bump_uuid(uuid: str, index: int) -> str:
    head, sep, tail = uuid.rpartition("-")
    try:
        bumped = (int(tail, 16) + index) % 16 ** len(tail)
    except ValueError:
        return f"{uuid}-{index}" if index else uuid
    return f"{head}{sep}{bumped:0{len(tail)}x}"


def _bump_serial(serial: str, index: int) -> str:
    if not index:
        return serial
    if serial.isdigit():
        return str(int(serial) + index).zfill(len(serial))
    return f"{serial}-{index}"


def _with_bus(bus_id: str, bus: int) -> str:
    """'00000000:00:06.0' with its bus number replaced ('00000000:03:06.0' for bus 3)."""
    parts = bus_id.split(":")
    if len(parts) != 3:
        return bus_id
    return f"{parts[0]}:{bus:02X}:{parts[2]}"
