"""Find, start and stop the controller on this machine (used by the CLI and the TUI)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from workbench.controller.home import ControllerHome, default_port
from workbench.wire.errors import Failed


class ControllerError(Failed):
    """The controller could not be found or started; the message says why and what to do."""


@dataclass(frozen=True)
class ControllerConfig:
    url: str
    token: str


def _connect_host(host: str) -> str:
    if host in ("0.0.0.0", "", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def running_controller(home: ControllerHome | None = None) -> ControllerConfig | None:
    """The controller of this home when one answers with our token, else None."""
    home = home or ControllerHome.default()
    info = home.read_info()
    token = home.read_token()
    if info is None or token is None or not isinstance(info.get("port"), int):
        return None
    url = f"http://{_connect_host(str(info.get('host', '127.0.0.1')))}:{info['port']}"
    try:
        response = httpx.get(f"{url}/v1/events", params={"limit": 1},
                             headers={"Authorization": f"Bearer {token}"}, timeout=3.0)
    except httpx.HTTPError:
        return None
    return ControllerConfig(url, token) if response.status_code == 200 else None


def _tail(home: ControllerHome, lines: int = 20) -> str:
    text = ""
    for path in (home.root / "controller.out", home.log_file):
        with contextlib.suppress(OSError):
            text += path.read_text(errors="replace")
    return "\n".join(text.splitlines()[-lines:]) or "(no output)"


def ensure_controller(on_start: Callable[[str], None] | None = None,
                      timeout: float = 60.0) -> ControllerConfig:
    """Return the running controller, starting one in the background when none answers."""
    home = ControllerHome.default()
    config = running_controller(home)
    if config is not None:
        return config
    try:
        port = default_port()
    except ValueError as error:
        raise ControllerError(str(error)) from None
    if _port_in_use(port):
        raise ControllerError(
            f"port {port} on 127.0.0.1 is taken by another program, so the controller cannot start "
            f"there; free it or choose another port with WORKBENCH_PORT=NNNN")
    home.create()
    if on_start:
        on_start(f"starting the controller on 127.0.0.1:{port} (log: {home.log_file})")
    out = (home.root / "controller.out").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "workbench.controller", "serve", "--port", str(port)],
        stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    out.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ControllerError(f"the controller exited with code {process.returncode}:\n{_tail(home)}")
        config = running_controller(home)
        if config is not None:
            return config
        time.sleep(0.2)
    raise ControllerError(f"the controller did not answer within {timeout:.0f} s; see {home.log_file}")


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_controller(timeout: float = 45.0) -> bool:
    """SIGTERM the controller (it drains; replicas keep running). False when none was running."""
    home = ControllerHome.default()
    info = home.read_info()
    if info is None or running_controller(home) is None or not isinstance(info.get("pid"), int):
        return False
    pid = int(info["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return True
