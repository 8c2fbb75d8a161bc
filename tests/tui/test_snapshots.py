"""Snapshots of each screen against a real controller, with WORKBENCH_TUI_FROZEN=1 masking ages,
timings, ports and ids. Regenerate with `pytest tests/tui --snapshot-update` and review the SVGs."""

from __future__ import annotations

from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable
from workbench.tui.app import WorkbenchApp
from workbench.tui.screens.logs import LogsScreen

from tests.controller.helpers import Controller
from tests.tui.conftest import until
from workbench.controller.launcher import ControllerConfig

pytestmark = pytest.mark.usefixtures("frozen")


def make_app(ctl: Controller) -> WorkbenchApp:
    return WorkbenchApp(ControllerConfig(ctl.url, ctl.token), interval=3600)  # one poll, then still


async def loaded(pilot: Pilot[Any]) -> None:
    app = pilot.app
    assert isinstance(app, WorkbenchApp)
    await until(pilot, lambda: app.state.loaded and app.state.apis and app.state.hosts
                and all(h.state == "ready" and h.info for h in app.state.hosts), what="the first poll")
    await until(pilot, lambda: not app._polling, what="the poll to settle")
    await pilot.pause(0.5)


async def press_and_open(pilot: Pilot[Any], *keys: str) -> None:
    """Press keys that open a screen, then wait until it is on top and drawn (a loaded machine
    may take longer than any fixed pause)."""
    depth = len(pilot.app.screen_stack)
    await pilot.press(*keys)
    await until(pilot, lambda: len(pilot.app.screen_stack) > depth, what="the screen to open")
    await pilot.wait_for_scheduled_animations()
    await pilot.pause(0.3)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_fleet(live: Controller, snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(make_app(live), terminal_size=size, run_before=loaded)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_apis(live: Controller, snap_compare: Any, size: tuple[int, int]) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        await pilot.press("2")
        await pilot.pause(0.2)

    assert snap_compare(make_app(live), terminal_size=size, run_before=before)


def test_api_detail(live: Controller, snap_compare: Any) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        await pilot.press("colon", *"api echo", "enter")
        app = pilot.app
        assert isinstance(app, WorkbenchApp)
        await until(pilot, lambda: "echo" in app.state.details, what="the detail")
        await until(pilot, lambda: app.screen.query_one("#replicas", DataTable).row_count == 1)
        await pilot.pause(0.2)

    assert snap_compare(make_app(live), terminal_size=(120, 36), run_before=before)


def test_logs(live: Controller, snap_compare: Any) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        await pilot.press("colon", *"logs echo", "enter")
        screen = pilot.app.screen
        assert isinstance(screen, LogsScreen)
        await until(pilot, lambda: any("predictor ready" in line for line in screen.lines))
        await pilot.press("slash", *"ready", "enter")
        await pilot.pause(0.2)

    assert snap_compare(make_app(live), terminal_size=(100, 24), run_before=before)


def test_help(live: Controller, snap_compare: Any) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        await press_and_open(pilot, "question_mark")

    assert snap_compare(make_app(live), terminal_size=(100, 40), run_before=before)


def test_add_host_form(live: Controller, snap_compare: Any) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        await press_and_open(pilot, "a")

    assert snap_compare(make_app(live), terminal_size=(100, 30), run_before=before)


def test_confirm_dialog(live: Controller, snap_compare: Any) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        await pilot.press("2")
        await pilot.pause(0.2)
        await press_and_open(pilot, "d")

    assert snap_compare(make_app(live), terminal_size=(80, 24), run_before=before)
