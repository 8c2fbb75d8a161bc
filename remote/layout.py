"""Where the agent lives on a box: everything under ~/.workbench/agent (no sudo, nothing else)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from workbench.remote.errors import RemoteError

UNIT_NAME = "workbench-agent.service"


@dataclass(frozen=True)
class Layout:
    home: PurePosixPath

    @classmethod
    def for_home(cls, home: str) -> Layout:
        path = PurePosixPath(home)
        if not path.is_absolute() or "\n" in home or str(path) == "/":
            raise RemoteError(f"the box reports an unusable HOME {home!r}")
        return cls(path)

    @property
    def workbench(self) -> PurePosixPath:
        return self.home / ".workbench"

    @property
    def root(self) -> PurePosixPath:
        """The agent's home (config.json, agent.pid, agent.log, replicas/, bundles/)."""
        return self.workbench / "agent"

    @property
    def venv(self) -> PurePosixPath:
        return self.root / "venv"

    @property
    def python(self) -> PurePosixPath:
        return self.venv / "bin" / "python"

    @property
    def dist(self) -> PurePosixPath:
        return self.root / "dist"

    @property
    def marker(self) -> PurePosixPath:
        """installed.json: the version and build id of what was installed."""
        return self.root / "installed.json"

    @property
    def config(self) -> PurePosixPath:
        return self.root / "config.json"

    @property
    def log(self) -> PurePosixPath:
        return self.root / "agent.log"

    @property
    def unit(self) -> PurePosixPath:
        return self.home / ".config" / "systemd" / "user" / UNIT_NAME
