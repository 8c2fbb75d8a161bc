"""Adding and removing an SSH host from the fleet screen, end to end: a real controller (subprocess)
and a real sshd box (its own non-root user on 127.0.0.2). The add-host form shows the box's unknown
host key fingerprint; declining it changes nothing; trusting it runs preflight and the agent install
with live progress, after which the controller lists the box as ready with exactly the box's key
recorded. `d` + confirm removes it from the controller again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from textual.widgets import Button, Input, RichLog, Static
from workbench.remote.layout import Layout
from workbench.tui.app import WorkbenchApp
from workbench.tui.screens.fleet import FleetScreen
from workbench.tui.screens.forms import AddHostScreen, ConfirmScreen

from tests.controller.helpers import Controller
from tests.support.real_parts import Workbench
from tests.support.sshd import Box, require_sshd, sshd_boxes
from tests.tui.conftest import cell, host_of, row_keys, until
from workbench.clients.control import ControllerConfig

pytestmark = [pytest.mark.slow, pytest.mark.sshd]


@pytest.fixture(scope="module")
def box() -> Iterator[Box]:
    require_sshd()
    with sshd_boxes(1) as boxes:
        yield boxes[0]


@pytest.fixture(scope="module")
def ctl(tmp_path_factory: pytest.TempPathFactory, box: Box) -> Iterator[Controller]:
    bench = Workbench.create(tmp_path_factory.mktemp("tui-hosts") / "home")
    controller = Controller(bench)
    try:
        controller.start()
        yield controller
    finally:
        if controller.process is not None:  # whatever a failed test left behind
            controller.api("DELETE", "/v1/hosts/box0", params={"purge": "true"}, timeout=120)
        controller.stop()
        bench.cleanup()
        box.kill_user_processes()


def log_text(screen: AddHostScreen) -> str:
    return "\n".join(strip.text for strip in screen.query_one("#progress", RichLog).lines)


def last_attempt(screen: AddHostScreen) -> str:
    """The progress log from the last `adding …` line on (the first, untrusted try ends in an error)."""
    text = log_text(screen)
    return text[text.rindex("adding box0"):]


def recorded_keys(ctl: Controller, box: Box) -> list[str]:
    """`type blob` of every key the controller recorded for the box (workbench's known_hosts)."""
    known = ctl.bench.home / "known_hosts"
    lines = known.read_text().splitlines() if known.is_file() else []
    return [" ".join(line.split()[1:3]) for line in lines if line.split()[:1] == [box.known_hosts_name]]


async def open_form(pilot: Any, box: Box) -> AddHostScreen:
    """`a` on the fleet screen, fill name/target/key file, enter; wait for the fingerprint question."""
    await pilot.press("a")
    screen = pilot.app.screen
    assert isinstance(screen, AddHostScreen)
    screen.query_one("#name", Input).value = "box0"
    screen.query_one("#target", Input).value = box.target
    screen.query_one("#identity", Input).value = str(box.client_key)
    screen.query_one("#name", Input).focus()
    await pilot.press("enter")
    await until(pilot, lambda: screen.query_one("#trust").display, timeout=60,
                what=f"the unknown host key question: {log_text(screen)}")
    question = str(screen.query_one("#fingerprint", Static).render())
    assert "Unknown host key" in question and box.fingerprint() in question, question
    assert "ed25519" in question
    return screen


async def test_declining_the_fingerprint_changes_nothing(ctl: Controller, box: Box) -> None:
    before = box.home_listing()
    app = WorkbenchApp(ControllerConfig(ctl.url, ctl.token), interval=0.5)
    async with app.run_test(size=(120, 50)) as pilot:
        screen = await open_form(pilot, box)
        assert isinstance(app.focused, Button) and app.focused.id == "trust-no"  # the safe default
        await pilot.press("enter")
        await until(pilot, lambda: "nothing was changed" in log_text(screen), what="the refusal")
        assert not screen.query_one("#trust").display
        await until(pilot, lambda: not screen.running, what="the stream to end")
    assert host_of(ctl, "box0") is None
    assert recorded_keys(ctl, box) == []
    assert box.home_listing() == before


async def test_add_host_with_trust_then_remove_it(ctl: Controller, box: Box) -> None:
    app = WorkbenchApp(ControllerConfig(ctl.url, ctl.token), interval=0.5)
    async with app.run_test(size=(120, 50)) as pilot:
        screen = await open_form(pilot, box)
        screen.query_one("#trust-yes", Button).focus()
        await pilot.press("enter")
        preflight: Any = screen.query_one("#preflight")
        await until(pilot, lambda: preflight.display and preflight.row_count > 0, timeout=120,
                    what=f"the preflight table: {last_attempt(screen)}")
        checks = {str(preflight.get_row_at(i)[0]) for i in range(preflight.row_count)}
        assert len(checks) >= 3, checks
        await until(pilot, lambda: "done:" in last_attempt(screen) or "error:" in last_attempt(screen),
                    timeout=600, what="the install to finish")
        progress = last_attempt(screen)
        assert "error:" not in progress, progress
        assert sum(line.startswith("• ") for line in progress.splitlines()) >= 3, progress  # live steps

        host = host_of(ctl, "box0")
        assert host is not None and host["state"] == "ready" and host["kind"] == "ssh", host
        assert host["address"] == box.target
        assert recorded_keys(ctl, box) == [" ".join(box.known_hosts_line().split()[1:3])]

        await pilot.press("escape")
        assert isinstance(app.screen, FleetScreen)
        hosts: Any = app.screen.query_one("#hosts")
        await until(pilot, lambda: "box0" in row_keys(hosts), what="the box0 row")
        await until(pilot, lambda: "ready" in cell(hosts, "box0", 2), what="box0 ready on screen")
        hosts.focus()
        hosts.move_cursor(row=row_keys(hosts).index("box0"))
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmScreen)
        assert "box0" in str(app.screen.query_one("#question", Static).render())
        await pilot.press("y")
        await until(pilot, lambda: host_of(ctl, "box0") is None, timeout=120, what="box0 removed")
        await until(pilot, lambda: "box0" not in row_keys(hosts), what="the row to go")
    assert ctl.api("GET", "/v1/hosts/box0").status_code == 404


def test_removal_uninstalled_the_agent(box: Box) -> None:
    """`d` removes without purge: the agent is stopped and its venv, wheels and marker are gone."""
    layout = Layout.for_home(str(box.home))
    for path in (layout.venv, layout.dist, layout.marker):
        assert not Path(str(path)).exists(), path
    running = [p.info["cmdline"] for p in psutil.process_iter(["uids", "cmdline"])
               if p.info["uids"] is not None and p.info["uids"].real == box.uid
               and "workbench.agent" in " ".join(p.info["cmdline"] or [])]
    assert running == []
