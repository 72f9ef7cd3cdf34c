"""Exponential backoff with full jitter, so a fleet that lost its hub does not return
in lockstep. Randomness is injected for tests."""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    def __init__(
        self, initial_s: float, max_s: float, rand: Callable[[], float] = random.random
    ) -> None:
        self._initial = initial_s
        self._max = max_s
        self._rand = rand
        self._attempt = 0

    def next_delay_s(self) -> float:
        ceiling = min(self._max, self._initial * (2**self._attempt))
        self._attempt += 1
        return float(ceiling * self._rand())

    def reset(self) -> None:
        self._attempt = 0
