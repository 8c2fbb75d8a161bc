"""The agent's home: config.json (0600), init, pid file, port conflicts, loopback refusal."""

from __future__ import annotations

import json
import socket
import stat
import subprocess
import sys
from pathlib import Path

from tests.agent.helpers import Agent, free_port

AGENT = [sys.executable, "-m", "workbench.agent"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AGENT, *args], capture_output=True, text=True, timeout=60, env=env)


def test_init_writes_private_config_and_never_prints_token(tmp_path: Path) -> None:
    home = tmp_path / "h"
    res = run("init", "--home", str(home), "--port", "9911")
    assert res.returncode == 0, res.stderr
    cfg_path = home / "config.json"
    assert res.stdout.strip() == str(cfg_path)
    cfg = json.loads(cfg_path.read_text())
    assert cfg["port"] == 9911 and len(cfg["agent_id"]) >= 8 and len(cfg["token"]) >= 32
    assert stat.S_IMODE(cfg_path.stat().st_mode) == 0o600
    assert cfg["token"] not in res.stdout + res.stderr
    again = run("init", "--home", str(home))
    assert json.loads(cfg_path.read_text()) == cfg, again.stderr


def test_home_from_workbench_home_env(tmp_path: Path) -> None:
    import os

    env = {**os.environ, "WORKBENCH_HOME": str(tmp_path / "wb")}
    res = run("init", env=env)
    assert res.stdout.strip() == str(tmp_path / "wb" / "agent" / "config.json")


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = run("serve", "--home", str(tmp_path / "h"), "--port", str(port))
    assert res.returncode != 0
    assert str(port) in res.stderr and "--port" in res.stderr
    assert not (tmp_path / "h" / "agent.pid").exists()


def test_refuses_non_loopback_host(tmp_path: Path) -> None:
    res = run("serve", "--home", str(tmp_path / "h"), "--port", str(free_port()), "--host", "0.0.0.0")
    assert res.returncode != 0 and "127.0.0.1" in res.stderr


def test_pid_file_lifecycle_and_second_agent_refused(tmp_path: Path) -> None:
    a = Agent(tmp_path / "h").start()
    try:
        assert assert_pid(a)
        res = run("serve", "--home", str(a.home), "--port", str(free_port()))
        assert res.returncode != 0 and "already" in res.stderr
    finally:
        a.kill(15)
    assert a.proc is not None and a.proc.returncode in (0, -15)  # uvicorn re-raises SIGTERM
    assert not (a.home / "agent.pid").exists()


def assert_pid(a: Agent) -> bool:
    assert a.proc is not None
    return (a.home / "agent.pid").read_text().strip() == str(a.proc.pid)


def test_config_parser_is_the_one_reader_and_refuses_garbage() -> None:
    """AgentConfig.parse reads config.json for the agent, the local-agent launcher and the SSH
    installer alike."""
    import pytest
    from workbench.agent.home import DEFAULT_PORT, AgentConfig

    config = AgentConfig.parse('{"agent_id": "a1", "token": "t0ken", "port": 9911}')
    assert (config.agent_id, config.token, config.port) == ("a1", "t0ken", 9911)
    assert config.url == "http://127.0.0.1:9911" and "t0ken" not in repr(config)
    assert AgentConfig.parse(config.to_json()) == config
    assert AgentConfig.parse('{"agent_id": "a1", "token": "t"}').port == DEFAULT_PORT
    for garbage, says in (("not json", "not JSON"), ("[1]", "not a JSON object"),
                          ('{"agent_id": "a1"}', "lacks its agent_id or token"),
                          ('{"agent_id": "a1", "token": ""}', "lacks"),
                          ('{"agent_id": "a1", "token": "t", "port": 70000}', "no usable port"),
                          ('{"agent_id": "a1", "token": "t", "port": true}', "no usable port")):
        with pytest.raises(ValueError, match=says):
            AgentConfig.parse(garbage)
