"""`workbench` without a command: the terminal UI, attached to the running controller, or to one
started in the background when none runs (also what `workbench web` serves per browser tab)."""

from __future__ import annotations

import os
import sys

from workbench.clients.control import ControllerConfig
from workbench.daemons import LaunchFailed


def has_terminal() -> bool:
    """Whether the UI has somewhere to draw: a terminal on stdin and stdout, or a browser tab
    (textual-serve runs each tab's app with its web driver, over pipes)."""
    if "web_driver" in os.environ.get("TEXTUAL_DRIVER", ""):
        return True
    return sys.stdin.isatty() and sys.stdout.isatty()


def controller_for_ui(embedded_ok: bool = True) -> tuple[ControllerConfig, str]:
    """The controller to attach to and how it was found ("attached" or "started"); exits 1 with
    the reason when there is none (and none may be started) or it cannot start."""
    from workbench.controller.launcher import ensure_controller, running_controller

    config = running_controller()
    if config is not None:
        return config, "attached"
    if not embedded_ok:
        print("error: no controller is running; start one with `workbench serve`", file=sys.stderr)
        raise SystemExit(1)
    try:
        config = ensure_controller(lambda message: print(message, file=sys.stderr))
    except LaunchFailed as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    return config, "started"


def run_ui(embedded_ok: bool = True) -> None:
    """Find (or start) the controller, then run the terminal UI against it until it quits; a UI
    that ended on an error exits with status 1 (Textual has printed the error)."""
    config, origin = controller_for_ui(embedded_ok)
    from workbench.tui.app import WorkbenchApp

    app = WorkbenchApp(config, origin)
    app.run()
    if app.return_code:
        raise SystemExit(app.return_code)
