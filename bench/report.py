"""What every benchmark prints and records: the machine, and the results table."""

from __future__ import annotations

import platform
from pathlib import Path

import psutil

RESULTS = Path(__file__).parent / "RESULTS.md"


def machine() -> str:
    return (
        f"{platform.machine()}, {psutil.cpu_count()} CPUs, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}"
    )


def report(lines: list[str], *, write: bool) -> None:
    """Print the section; with `write`, append it to bench/RESULTS.md."""
    text = "\n".join(lines)
    print(text)
    if write:
        with RESULTS.open("a") as handle:
            handle.write(text + "\n")
