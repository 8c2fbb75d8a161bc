"""Helpers for tests that drive real parts: a Docker engine, free ports, a workbench home."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


def docker_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=5)
        client.ping()
        client.close()
        return True
    except Exception:
        return False


def require_docker() -> None:
    """Skip without a Docker engine on a laptop; under CI=true a missing engine is a failure."""
    if docker_answers():
        return
    if IN_CI:
        pytest.fail("CI=true but no Docker engine answers (scripts/setup should have started dockerd)")
    pytest.skip("no Docker engine answers (start dockerd to run this test)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@dataclass
class Workbench:
    """A workbench home of its own (WORKBENCH_HOME + agent port) and the CLI run against it."""

    home: Path
    agent_port: int
    port: int = 0  # the controller's (router + control API)
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, home: Path) -> Workbench:
        agent_port, port = free_port(), free_port()
        env = dict(os.environ, WORKBENCH_HOME=str(home), WORKBENCH_AGENT_PORT=str(agent_port),
                   WORKBENCH_PORT=str(port), NO_COLOR="1", COLUMNS="200")
        return cls(home=home, agent_port=agent_port, port=port, env=env)

    @property
    def url(self) -> str:
        """The controller's address: the router and the control API."""
        return f"http://127.0.0.1:{self.port}"

    def run(self, *args: str, input: str | None = None, timeout: float = 900,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([sys.executable, "-m", "workbench", *args], env=self.env,
                                input=input, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"workbench {' '.join(args)} exited {result.returncode}\n"
                                 f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
        return result

    def json(self, *args: str) -> object:
        return json.loads(self.run(*args, "--json").stdout)

    @property
    def agent_home(self) -> Path:
        return self.home / "agent"

    def agent_id(self) -> str | None:
        config = self.agent_home / "config.json"
        return json.loads(config.read_text())["agent_id"] if config.is_file() else None

    def cleanup(self) -> None:
        """Stop the controller, remove every container and process this home's agent started,
        then stop the agent."""
        controller = self.home / "controller" / "controller.json"
        if controller.is_file():
            try:
                pid = json.loads(controller.read_text()).get("pid")
            except ValueError:
                pid = None
            if pid:
                _kill(int(pid), signal.SIGKILL)
        agent_id = self.agent_id()
        pidfile = self.agent_home / "agent.pid"
        if pidfile.is_file():
            _kill(int(pidfile.read_text().strip()), signal.SIGKILL)
        for meta in (self.agent_home / "replicas").glob("*.json"):
            try:
                pid = json.loads(meta.read_text()).get("pid")
            except ValueError:
                continue
            if pid:
                _kill_group(int(pid))
        if agent_id and docker_answers():
            import docker

            client = docker.from_env()
            mine = {"label": f"workbench.agent={agent_id}"}
            for container in client.containers.list(all=True, filters=mine):
                container.remove(force=True)
            client.close()


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        _kill(pid, signal.SIGKILL)
