"""Where the local runtime keeps its state: `$WHARF_HOME`, default `~/.local/state/wharf`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = Path("~/.local/state/wharf")


@dataclass(frozen=True)
class Home:
    root: Path

    @classmethod
    def from_env(cls) -> Home:
        raw = os.environ.get("WHARF_HOME")
        return cls(Path(raw).expanduser() if raw else DEFAULT_HOME.expanduser())

    @property
    def socket(self) -> Path:
        return self.root / "wharf.sock"

    @property
    def pid_file(self) -> Path:
        return self.root / "wharfd.pid"

    @property
    def daemon_log(self) -> Path:
        return self.root / "logs" / "wharfd.log"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def models(self) -> Path:
        return self.root / "models"

    def log_dir(self, namespace: str, name: str, component: str) -> Path:
        return self.root / "logs" / namespace / name / component
