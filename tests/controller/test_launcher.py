"""launcher: start the controller in the background, find it, refuse a taken port, stop it."""

from __future__ import annotations

import socket

import pytest

from tests.support.real_parts import Workbench, free_port
from workbench.controller.launcher import ensure_controller, running_controller, stop_controller
from workbench.daemons import LaunchFailed


def test_ensure_find_and_stop(workbench: Workbench, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("WORKBENCH_HOME", "WORKBENCH_AGENT_PORT"):
        monkeypatch.setenv(key, workbench.env[key])
    port = free_port()
    monkeypatch.setenv("WORKBENCH_PORT", str(port))
    assert running_controller() is None
    said: list[str] = []
    config = ensure_controller(on_start=said.append)
    try:
        assert config.url == f"http://127.0.0.1:{port}" and said and str(port) in said[0]
        assert ensure_controller() == config == running_controller()
    finally:
        assert stop_controller() is True
    assert running_controller() is None and stop_controller() is False


def test_a_taken_port_is_a_clear_error(workbench: Workbench, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_HOME", workbench.env["WORKBENCH_HOME"])
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        monkeypatch.setenv("WORKBENCH_PORT", str(busy.getsockname()[1]))
        with pytest.raises(LaunchFailed, match=r"port \d+ .*WORKBENCH_PORT"):
            ensure_controller()
    monkeypatch.setenv("WORKBENCH_PORT", "70000")
    with pytest.raises(LaunchFailed, match="WORKBENCH_PORT"):
        ensure_controller()
