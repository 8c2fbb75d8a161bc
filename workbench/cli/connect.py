"""Finding (or starting) the controller the CLI talks to."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import typer

from workbench.cli import render
from workbench.clients.control import ControlClient
from workbench.daemons import LaunchFailed
from workbench.wire.errors import WorkbenchError

T = TypeVar("T")


def controller(start: bool = True) -> ControlClient:
    """A client for the running controller; start one in the background when asked to."""
    from workbench.controller import launcher

    try:
        config = launcher.ensure_controller(on_start=render.say) if start else launcher.running_controller()
    except LaunchFailed as error:
        render.fail(str(error))
        raise typer.Exit(1) from None
    if config is None:
        render.fail("no controller is running, so nothing is deployed (start one with `workbench serve`, "
                    "or deploy something: `workbench deploy PATH`)")
        raise typer.Exit(1)
    return ControlClient(config.url, config.token)


def call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a control-API call; a refusal becomes a clear error and exit code 1."""
    try:
        return function(*args, **kwargs)
    except WorkbenchError as error:
        render.fail(str(error))
        raise typer.Exit(1) from None
