"""Find, start and stop the controller on this machine (for the CLI), with workbench.daemons."""

from __future__ import annotations

from collections.abc import Callable

from workbench import daemons
from workbench.clients.control import ControlClient, ControllerConfig
from workbench.controller.home import ControllerHome, default_port
from workbench.daemons import LaunchFailed
from workbench.wire.errors import WorkbenchError


def _connect_host(host: str) -> str:
    if host in ("0.0.0.0", "", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def running_controller(home: ControllerHome | None = None) -> ControllerConfig | None:
    """The controller of this home when one answers with our token, else None."""
    home = home or ControllerHome.default()
    info = home.read_info()
    token = home.read_token()
    if info is None or token is None or not isinstance(info.get("port"), int):
        return None
    url = f"http://{_connect_host(str(info.get('host', '127.0.0.1')))}:{info['port']}"
    try:
        with ControlClient(url, token, timeout=3.0) as client:
            client.events(None, 1)
    except WorkbenchError:
        return None
    return ControllerConfig(url, token)


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
        raise LaunchFailed(str(error)) from None
    home.create()
    controller = daemons.Daemon(
        what="the controller", module="workbench.controller", args=("serve", "--port", str(port)),
        port=port, port_variable="WORKBENCH_PORT", log=home.log_file, output=home.root / "controller.out",
        answers=lambda: running_controller(home),
        stop_when_late=False)  # it may still be reconnecting boxes: the next command finds it
    return daemons.start(controller, timeout=timeout, on_start=on_start, poll=0.2)


def stop_controller(timeout: float = 45.0) -> bool:
    """SIGTERM the controller (it drains; replicas keep running). False when none was running."""
    home = ControllerHome.default()
    info = home.read_info()
    if info is None or running_controller(home) is None or not isinstance(info.get("pid"), int):
        return False
    daemons.stop(int(info["pid"]), timeout)
    return True
