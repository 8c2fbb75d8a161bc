"""The controller's folder: state.db, controller.lock, token, controller.json, controller.log."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench import paths

DEFAULT_PORT = 8765


def default_port() -> int:
    """$WORKBENCH_PORT, else 8765; a bad value raises ValueError naming the variable."""
    raw = os.environ.get("WORKBENCH_PORT")
    if raw is None or raw == "":
        return DEFAULT_PORT
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ValueError(f"WORKBENCH_PORT={raw!r} is not a TCP port (1-65535)")
    return int(raw)


@dataclass(frozen=True)
class ControllerHome:
    root: Path

    @classmethod
    def default(cls) -> ControllerHome:
        return cls(paths.home() / "controller")

    @property
    def db(self) -> Path:
        return self.root / "state.db"

    @property
    def lock(self) -> Path:
        return self.root / "controller.lock"

    @property
    def token_file(self) -> Path:
        return self.root / "token"

    @property
    def info_file(self) -> Path:
        return self.root / "controller.json"

    @property
    def log_file(self) -> Path:
        return self.root / "controller.log"

    def create(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def token(self) -> str:
        """The control API's bearer token, generated once (mode 0600)."""
        self.create()
        if self.token_file.is_file():
            value = self.token_file.read_text().strip()
            if value:
                return value
        value = secrets.token_urlsafe(32)
        fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(value + "\n")
        return value

    def read_token(self) -> str | None:
        try:
            return self.token_file.read_text().strip() or None
        except OSError:
            return None

    def write_info(self, *, pid: int, host: str, port: int) -> None:
        tmp = self.info_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": pid, "host": host, "port": port}))
        tmp.replace(self.info_file)

    def read_info(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.info_file.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def clear_info(self, pid: int) -> None:
        info = self.read_info()
        if info is not None and info.get("pid") == pid:
            self.info_file.unlink(missing_ok=True)
