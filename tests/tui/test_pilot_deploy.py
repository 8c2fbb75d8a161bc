"""Deploying from the TUI against a real controller (process runtime): `:deploy PATH` opens the deploy
form, which shows build and rollout progress as it happens; afterwards the controller has the API
with its replicas ready and a prediction through the router answers. `n` on the APIs screen deploys
a predictor that crashes at start: the form shows the error with the predictor's output, and the
controller is left without that API. (Scale and delete are driven in test_pilot.py.)"""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Input, RichLog
from workbench.tui.app import WorkbenchApp
from workbench.tui.screens.apis import ApisScreen
from workbench.tui.screens.forms import DeployScreen

from tests.controller.helpers import Controller, make_project
from tests.tui.conftest import cell, make_echo, row_keys, until
from workbench.clients.control import ControllerConfig


def make_app(ctl: Controller) -> WorkbenchApp:
    return WorkbenchApp(ControllerConfig(ctl.url, ctl.token), interval=0.5)


def progress(screen: DeployScreen) -> list[str]:
    return [strip.text for strip in screen.query_one("#progress", RichLog).lines]


async def test_deploy_shows_progress_and_the_api_serves(live: Controller, tmp_path: Path) -> None:
    project = make_echo(tmp_path, "greet", replicas=2)
    app = make_app(live)
    async with app.run_test(size=(140, 45)) as pilot:
        await pilot.press("colon", *f"deploy {project}", "enter")
        screen = app.screen
        assert isinstance(screen, DeployScreen)
        assert screen.query_one("#path", Input).value == str(project)
        await pilot.press("enter")
        await until(pilot, lambda: any(line.startswith(("done:", "error:")) for line in progress(screen)),
                    timeout=600, what="the deployment to finish")
        lines = progress(screen)
        assert not any(line.startswith("error:") for line in lines), lines
        assert lines[0].startswith("deploying") and "project-greet" in "".join(lines[:3])
        assert any(line.startswith("[greet] build") for line in lines), lines
        assert any(line.startswith("[greet] rollout:") for line in lines), lines
        assert any(line.strip().startswith("greet → http://127.0.0.1:") for line in lines), lines

        detail = live.wait_ready("greet", 2)
        assert detail["replicas"] == {**detail["replicas"], "requested": 2, "ready": 2}
        answer = live.predict("greet", {"hello": "tui"})
        assert answer.status_code == 200 and answer.json() == {"echo": {"hello": "tui"}}

        await pilot.press("escape")
        await pilot.press("2")
        assert isinstance(app.screen, ApisScreen)
        table = app.screen.query_one("#apis")
        await until(pilot, lambda: "greet" in row_keys(table), what="the greet row")
        await until(pilot, lambda: "2/2" in cell(table, "greet", 2), what="2/2 ready on screen")
    live.api("DELETE", "/v1/apis/greet")


async def test_failed_deploy_shows_the_error_and_changes_nothing(live: Controller, tmp_path: Path) -> None:
    spec = "name: crashy\nruntime: process\npredictor: {config: {crash: true}}\n"
    project = make_project(tmp_path, spec, "crashy")
    app = make_app(live)
    async with app.run_test(size=(140, 45)) as pilot:
        await pilot.press("2")
        await pilot.press("n")
        screen = app.screen
        assert isinstance(screen, DeployScreen)
        await pilot.press(*str(tmp_path / "no-such-project"), "enter")
        await until(pilot, lambda: any(line.startswith("error:") for line in progress(screen)),
                    what="the error for a missing folder")
        assert "no-such-project" in "\n".join(progress(screen))
        box = screen.query_one("#path", Input)
        box.value = str(project)
        box.focus()
        await pilot.press("enter")
        await until(pilot, lambda: sum(line.startswith("error:") for line in progress(screen)) == 2,
                    timeout=600, what="the failed rollout")
        text = "\n".join(progress(screen))
        assert "failed to start" in text, text
        assert "RuntimeError: boom" in text, text  # the tail of the predictor's own output
        assert screen.running is False
    assert live.api("GET", "/v1/apis/crashy").status_code == 404
    assert live.detail("echo")["replicas"]["ready"] == 1  # the rest of the fleet is untouched
