"""Start, find and stop the agent on this machine (the local host of the fleet), with
workbench.daemons; its config.json is read with the agent's own parser."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from workbench import daemons
from workbench.agent.home import AgentConfig
from workbench.clients.agent import AgentClient
from workbench.daemons import LaunchFailed
from workbench.paths import DEFAULT_AGENT_PORT, local_agent_home
from workbench.wire.errors import WorkbenchError

PORT_VARIABLE = "WORKBENCH_AGENT_PORT"


def _requested_port() -> int:
    raw = os.environ.get(PORT_VARIABLE)
    if raw is None:
        return DEFAULT_AGENT_PORT
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise LaunchFailed(f"{PORT_VARIABLE}={raw!r} is not a TCP port (1-65535)")
    return int(raw)


def read_config(home: Path) -> AgentConfig | None:
    """The agent's config.json in `home`, or None when there is none (yet) or it is unreadable
    (the agent then refuses to start, and says why in its log)."""
    try:
        return AgentConfig.parse((home / "config.json").read_text())
    except (OSError, ValueError):
        return None


def _owned_by_us(config: AgentConfig) -> bool:
    """True when the agent on the config's port accepts our token (so it is ours)."""
    with AgentClient(config.url, config.token, timeout=3.0) as client:
        try:
            client.host()
        except WorkbenchError:
            return False
    return True


def running_agent(home: Path | None = None, port: int | None = None) -> AgentConfig | None:
    """The local agent's config when an agent answers on its port with its token, else None
    (`port`: only one on that port)."""
    config = read_config(home or local_agent_home())
    if config is None or (port is not None and config.port != port) or not daemons.port_in_use(config.port):
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
    if existing is not None and PORT_VARIABLE not in os.environ:
        port = existing.port
    home.mkdir(parents=True, exist_ok=True)
    agent = daemons.Daemon(
        what="the local agent", module="workbench.agent",
        args=("serve", "--home", str(home), "--port", str(port)), port=port, port_variable=PORT_VARIABLE,
        log=home / "agent.log", output=home / "agent.log", answers=lambda: running_agent(home, port))
    return daemons.start(agent, timeout=timeout, on_start=on_start)


def stop_agent(timeout: float = 15.0) -> bool:
    """Stop the local agent (replicas keep running). Returns False when none was running."""
    home = local_agent_home()
    try:
        pid = int((home / "agent.pid").read_text().strip())
    except (OSError, ValueError):
        return False
    if running_agent(home) is None:
        return False
    daemons.stop(pid, timeout)
    return True
