"""The agent's home directory: config (id, token, port), pid file, log, replica and bundle dirs."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs
import psutil

DEFAULT_PORT = 8770


@dataclass(frozen=True)
class AgentConfig:
    """What `config.json` holds. The token never leaves this file except in the Authorization header.

    The one reader of that file: the agent itself, the workstation's local-agent launcher and the
    SSH installer (which reads the box's copy over SSH) all go through :meth:`parse`."""

    agent_id: str
    token: str = field(repr=False)
    port: int = DEFAULT_PORT

    @classmethod
    def parse(cls, text: str | bytes) -> AgentConfig:
        """config.json's content; ValueError naming what is wrong when it is not a config."""
        try:
            data = json.loads(text)
        except ValueError as error:
            raise ValueError(f"the agent's config.json is not JSON: {error}") from None
        if not isinstance(data, dict):
            raise ValueError("the agent's config.json is not a JSON object")
        agent_id, token, port = data.get("agent_id"), data.get("token"), data.get("port", DEFAULT_PORT)
        if not isinstance(agent_id, str) or not agent_id or not isinstance(token, str) or not token:
            raise ValueError("the agent's config.json lacks its agent_id or token")
        if isinstance(port, bool) or not isinstance(port, int | str) or not str(port).isdigit() \
                or not 0 < int(port) < 65536:
            raise ValueError(f"the agent's config.json has no usable port ({port!r})")
        return cls(agent_id=agent_id, token=token, port=int(port))

    def to_json(self) -> str:
        return json.dumps({"agent_id": self.agent_id, "token": self.token, "port": self.port})

    @property
    def url(self) -> str:
        """The agent's address on its own machine (it binds 127.0.0.1 unless told otherwise)."""
        return f"http://127.0.0.1:{self.port}"


def resolve_home(home: str | None) -> Path:
    """`--home`, else $WORKBENCH_HOME/agent, else the platform's user data dir + /agent."""
    if home:
        return Path(home).expanduser().resolve()
    env = os.environ.get("WORKBENCH_HOME")
    if env:
        return Path(env).expanduser().resolve() / "agent"
    return Path(platformdirs.user_data_dir("workbench")) / "agent"


class AgentHome:
    """Paths inside the agent's home; creates what is missing."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config_path = root / "config.json"
        self.pid_path = root / "agent.pid"
        self.log_path = root / "agent.log"
        self.replicas_dir = root / "replicas"
        self.bundles_dir = root / "bundles"
        self.tmp_dir = root / "tmp"
        self.models_dir = root / "models"  # the model cache (workbench.agent.models.store)

    def ensure_dirs(self) -> None:
        for d in (self.root, self.replicas_dir, self.bundles_dir, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)

    def load_or_create_config(self, port: int | None = None) -> AgentConfig:
        """Read config.json, creating it (mode 0600) on first use; `port` overrides a new file's."""
        self.ensure_dirs()
        if self.config_path.exists():
            return AgentConfig.parse(self.config_path.read_text())
        cfg = AgentConfig(
            agent_id=secrets.token_hex(8),
            token=secrets.token_urlsafe(32),
            port=port or DEFAULT_PORT,
        )
        tmp = self.config_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(cfg.to_json())
        os.replace(tmp, self.config_path)
        return cfg

    def running_pid(self) -> int | None:
        """The pid of a live agent using this home, if the pid file names one."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        if pid == os.getpid():
            return None
        try:
            cmd = " ".join(psutil.Process(pid).cmdline())
        except (psutil.Error, OSError):
            return None
        return pid if "workbench.agent" in cmd else None

    def write_pid(self) -> None:
        self.pid_path.write_text(f"{os.getpid()}\n")

    def remove_pid(self) -> None:
        try:
            if self.pid_path.read_text().strip() == str(os.getpid()):
                self.pid_path.unlink()
        except OSError:
            pass
