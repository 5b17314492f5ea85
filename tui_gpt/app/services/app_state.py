"""What the app remembers between sessions: the model last prompted and the generation settings.

Stored as `<data_dir>/app-state.json`. A missing or damaged file means
defaults; failing to write it only costs the memory, never the session.
Used only once the engine is loaded (it writes through engine.runs.atomic).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class AppState:
    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / "app-state.json"
        self._values: dict[str, Any] = {}

    def load(self) -> "AppState":
        try:
            values = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            values = {}
        self._values = values if isinstance(values, dict) else {}
        return self

    def get(self, key: str, default: Any = None) -> Any:
        return self._values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        """Remember `value` (JSON-serialisable) and write the file at once."""
        from engine.runs.atomic import atomic_write_json

        self._values[key] = value
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.path, self._values)
        except OSError:
            pass  # a read-only data dir loses this convenience, nothing else
