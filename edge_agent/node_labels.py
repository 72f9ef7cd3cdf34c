"""The labels an agent reports for its node, and where each comes from.

Three sources, later ones winning: the Kubernetes Node's labels (read at start when
Kubernetes is configured), the agent's `--label` flags, and labels set by the
`node.labels.set` action (persisted in `labels.json`, so they survive restarts).
A change made by the action starts a new hub session, so the hub hears it at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

from sentinel.errors import ConfigError
from sentinel.files import replace_durably
from sentinel.selectors import validate_label

LABELS_FILE = "labels.json"


class NodeLabels:
    def __init__(
        self,
        path: Path,
        base: Mapping[str, str],
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._path = path
        self._base = dict(base)
        self._set = self._read()
        self.on_change = on_change

    def current(self) -> dict[str, str]:
        return {**self._base, **self._set}

    def update(self, changes: Mapping[str, str]) -> None:
        for key, value in changes.items():
            if value:
                validate_label(key, value)
        merged = {**self._set, **changes}
        self._set = {k: v for k, v in merged.items() if v}
        for key, value in changes.items():
            if not value:
                self._base.pop(key, None)
        replace_durably(self._path, json.dumps(self._set, sort_keys=True).encode(), mode=0o644)
        self.on_change()

    def _read(self) -> dict[str, str]:
        try:
            raw = json.loads(self._path.read_text())
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise ConfigError(f"{self._path} is corrupt: {exc}", reason="STATE_CORRUPT") from exc
        if not isinstance(raw, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
        ):
            raise ConfigError(f"{self._path} is not a label map", reason="STATE_CORRUPT")
        return raw
