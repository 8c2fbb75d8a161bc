"""Snapshots of each screen against a real controller, with WORKBENCH_TUI_FROZEN=1 masking ages,
timings, ports and ids. Regenerate with `pytest tests/tui --snapshot-update` and review the SVGs."""

from __future__ import annotations

import html
import re
import time
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input
from workbench.tui.app import WorkbenchApp
from workbench.tui.screens.logs import LogsScreen
from workbench.tui.table import LiveTable

from tests.controller.helpers import Controller
from tests.tui.conftest import until
from workbench.clients.control import ControllerConfig

pytestmark = pytest.mark.usefixtures("frozen")


def make_app(ctl: Controller) -> WorkbenchApp:
    return WorkbenchApp(ControllerConfig(ctl.url, ctl.token), interval=3600)  # one poll, then still


async def loaded(pilot: Pilot[Any]) -> None:
    app = pilot.app
    assert isinstance(app, WorkbenchApp)
    await until(pilot, lambda: app.state.loaded and app.state.apis and app.state.hosts
                and all(h.state == "ready" and h.info for h in app.state.hosts), what="the first poll")
    await until(pilot, lambda: not app._polling, what="the poll to settle")
    await settled(pilot)


def screen_text(app: WorkbenchApp) -> str:
    """The words on screen (the SVG screenshot's text, spaces restored)."""
    svg = app.export_screenshot()
    return html.unescape("".join(re.findall(r">([^<>]*)</text>", svg))).replace("\xa0", " ")


async def settled(pilot: Pilot[Any], timeout: float = 20.0) -> None:
    """Wait until two renders 0.3 s apart are the same: on a loaded machine the tables may still be
    refilling (and their columns resizing) after the data arrived."""
    deadline = time.monotonic() + timeout
    previous = None
    while time.monotonic() < deadline:
        await pilot.wait_for_scheduled_animations()
        await pilot.pause(0.3)
        current = pilot.app.export_screenshot()
        if current == previous:
            return
        previous = current
    raise AssertionError(f"the screen kept changing for {timeout:.0f} s")


async def press_and_open(pilot: Pilot[Any], *keys: str) -> None:
    """Press keys that open a screen, then wait until it is on top and drawn (a loaded machine
    may take longer than any fixed pause)."""
    depth = len(pilot.app.screen_stack)
    await pilot.press(*keys)
    await until(pilot, lambda: len(pilot.app.screen_stack) > depth, what="the screen to open")
    await settled(pilot)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_fleet(live: Controller, snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(make_app(live), terminal_size=size, run_before=loaded)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_apis(live: Controller, snap_compare: Any, size: tuple[int, int]) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        await pilot.press("2")
        await settled(pilot)

    assert snap_compare(make_app(live), terminal_size=size, run_before=before)


async def open_detail(pilot: Pilot[Any], name: str, replicas: int) -> None:
    """`:api NAME`, then wait until its detail and `replicas` replica rows are on screen."""
    await pilot.press("colon", *f"api {name}", "enter")
    app = pilot.app
    assert isinstance(app, WorkbenchApp)
    await until(pilot, lambda: name in app.state.details, what="the detail")
    await until(pilot, lambda: app.screen.query_one("#replicas", LiveTable).row_count == replicas)
    await settled(pilot)


def test_api_detail(live: Controller, snap_compare: Any) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        await open_detail(pilot, "echo", 1)

    assert snap_compare(make_app(live), terminal_size=(120, 36), run_before=before)


def test_logs(live: Controller, snap_compare: Any) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        await pilot.press("colon", *"logs echo", "enter")
        screen = pilot.app.screen
        assert isinstance(screen, LogsScreen)
        await until(pilot, lambda: any("predictor ready" in line for line in screen.lines))
        await pilot.press("slash", *"ready", "enter")
        await settled(pilot)

    assert snap_compare(make_app(live), terminal_size=(100, 24), run_before=before)


def test_help(live: Controller, snap_compare: Any) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        await press_and_open(pilot, "question_mark")

    assert snap_compare(make_app(live), terminal_size=(100, 40), run_before=before)


# The two dialogs are checked by their content, not by snapshot: the screen behind a modal is
# redrawn on Textual's idle schedule, so its table headers could be caught mid-resize (seen on a
# loaded CI machine), which would make a snapshot flaky.
async def test_add_host_form(live: Controller) -> None:
    app = make_app(live)
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(pilot)
        await press_and_open(pilot, "a")
        screen = app.screen
        for field_id in ("name", "target", "identity", "jump"):
            assert screen.query_one(f"#{field_id}", Input).value == ""
        assert "Add host" in screen_text(app)


async def test_confirm_dialog(live: Controller) -> None:
    app = make_app(live)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        await pilot.press("2")
        await settled(pilot)
        await press_and_open(pilot, "d")
        text = screen_text(app)
        assert "echo" in text and "Yes (y)" in text and "No (n)" in text
        depth = len(app.screen_stack)
        await pilot.press("n")
        await until(pilot, lambda: len(app.screen_stack) < depth, what="the dialog to close")
