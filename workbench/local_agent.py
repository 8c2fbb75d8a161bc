"""Start, find and stop the agent on this machine (the local host of the fleet)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from workbench.clients.agent import AgentClient
from workbench.paths import DEFAULT_AGENT_PORT, local_agent_home
from workbench.wire.errors import Failed, WorkbenchError


class LocalAgentError(Failed):
    """The local agent could not be found or started; the message says why and what to do."""


@dataclass(frozen=True)
class AgentConfig:
    agent_id: str
    token: str
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _requested_port() -> int:
    raw = os.environ.get("WORKBENCH_AGENT_PORT")
    if raw is None:
        return DEFAULT_AGENT_PORT
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise LocalAgentError(f"WORKBENCH_AGENT_PORT={raw!r} is not a TCP port (1-65535)")
    return int(raw)


def read_config(home: Path) -> AgentConfig | None:
    path = home / "config.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return AgentConfig(agent_id=data["agent_id"], token=data["token"], port=int(data["port"]))


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _owned_by_us(config: AgentConfig) -> bool:
    """True when the agent on the config's port accepts our token (so it is ours)."""
    with AgentClient(config.url, config.token, timeout=3.0) as client:
        try:
            client.host()
        except WorkbenchError:
            return False
    return True


def running_agent(home: Path | None = None) -> AgentConfig | None:
    home = home or local_agent_home()
    config = read_config(home)
    if config is None or not _port_in_use(config.port):
        return None
    return config if _owned_by_us(config) else None


def ensure_agent(*, on_start: Callable[[str], None] | None = None,
                 timeout: float = 30.0) -> AgentConfig:
    """Return the local agent's config, starting the agent in the background when none runs."""
    home = local_agent_home()
    config = running_agent(home)
    if config is not None:
        return config
    port = _requested_port()
    existing = read_config(home)
    if existing is not None and "WORKBENCH_AGENT_PORT" not in os.environ:
        port = existing.port
    if _port_in_use(port):
        raise LocalAgentError(
            f"port {port} on 127.0.0.1 is taken by another program, so the local agent cannot "
            f"start there; free it or choose another port with WORKBENCH_AGENT_PORT=NNNN"
        )
    home.mkdir(parents=True, exist_ok=True)
    if on_start:
        on_start(f"starting the local agent on 127.0.0.1:{port} (log: {home / 'agent.log'})")
    log = (home / "agent.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "workbench.agent", "serve", "--home", str(home), "--port", str(port)],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
    )
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LocalAgentError(
                f"the local agent exited with code {process.returncode}; last lines of "
                f"{home / 'agent.log'}:\n" + _tail(home / "agent.log")
            )
        config = read_config(home)
        if config is not None and config.port == port and _port_in_use(port) and _owned_by_us(config):
            return config
        time.sleep(0.1)
    process.terminate()
    raise LocalAgentError(f"the local agent did not answer within {timeout:.0f} s; see {home / 'agent.log'}")


def stop_agent(timeout: float = 15.0) -> bool:
    """Stop the local agent (replicas keep running). Returns False when none was running."""
    home = local_agent_home()
    pidfile = home / "agent.pid"
    if running_agent(home) is None or not pidfile.is_file():
        return False
    pid = int(pidfile.read_text().strip())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    return True


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
