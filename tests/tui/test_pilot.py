"""Pilot tests: every action end to end against a real controller, checked through the control API."""

from __future__ import annotations

import signal

from textual.pilot import Pilot
from textual.widgets import DataTable, Input, RichLog, Static, TextArea
from workbench.tui.app import WorkbenchApp
from workbench.tui.screens.api_detail import ApiDetailScreen
from workbench.tui.screens.apis import ApisScreen
from workbench.tui.screens.fleet import FleetScreen
from workbench.tui.screens.forms import ConfirmScreen, PredictScreen, ScaleScreen
from workbench.tui.screens.help import HelpScreen
from workbench.tui.screens.logs import LogsScreen
from workbench.tui.table import LiveTable
from workbench.tui.widgets import Banner

from tests.controller.helpers import Controller
from tests.support.real_parts import wait_until
from tests.tui.conftest import until
from workbench.clients.control import ControllerConfig


def make_app(ctl: Controller) -> WorkbenchApp:
    return WorkbenchApp(ControllerConfig(ctl.url, ctl.token), interval=0.5)


def rows(table: LiveTable) -> list[str]:
    return table.row_keys


async def apis_with_echo(pilot: Pilot[None]) -> LiveTable:
    """Switch to the APIs screen and wait for the echo row; its table."""
    await pilot.press("2")
    table = pilot.app.screen.query_one("#apis", LiveTable)
    await until(pilot, lambda: rows(table) == ["echo"], what="the echo row")
    return table


async def test_navigation_filter_drill_in_and_back(live: Controller) -> None:
    app = make_app(live)
    async with app.run_test(size=(120, 40)) as pilot:
        assert isinstance(app.screen, FleetScreen)
        assert app.sub_title.startswith("attached to http://127.0.0.1:")
        hosts = app.screen.query_one("#hosts", LiveTable)
        await until(pilot, lambda: "local" in rows(hosts), what="the local host row")
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        bindings = app.screen.query_one("#bindings", DataTable)
        keys = [str(bindings.get_row_at(i)[0]) for i in range(bindings.row_count)]
        for key in ("?", "/", ":", "q", "a", "d", "u", "esc"):
            assert key in keys, (key, keys)
        await pilot.press("escape")
        assert isinstance(app.screen, FleetScreen)
        await pilot.press("2")
        assert isinstance(app.screen, ApisScreen)
        table = app.screen.query_one("#apis", LiveTable)
        await until(pilot, lambda: rows(table) == ["echo"], what="the echo row")
        await pilot.press("slash", *"zzz")
        await until(pilot, lambda: rows(table) == [], what="the filter to hide echo")
        await pilot.press("escape")
        await until(pilot, lambda: rows(table) == ["echo"], what="the filter to clear")
        await pilot.press("slash", *"ech", "enter")
        await until(pilot, lambda: rows(table) == ["echo"], what="echo to match")
        await pilot.press("escape")
        table.focus()
        await pilot.press("enter")
        assert isinstance(app.screen, ApiDetailScreen)
        replicas = app.screen.query_one("#replicas", LiveTable)
        await until(pilot, lambda: replicas.row_count == 1, what="the replica row")
        await pilot.press("escape")
        assert isinstance(app.screen, ApisScreen)
        await pilot.press("colon", *"hosts", "enter")
        assert isinstance(app.screen, FleetScreen)
        await pilot.press("colon", *"logs echo", "enter")
        assert isinstance(app.screen, LogsScreen)
        await pilot.press("escape")
        await pilot.press("q")
    assert app.return_code in (0, None)


async def test_predict_shows_the_answer_and_logs_show_the_print(live: Controller) -> None:
    app = make_app(live)
    async with app.run_test(size=(120, 40)) as pilot:
        await apis_with_echo(pilot)
        await pilot.press("p")
        assert isinstance(app.screen, PredictScreen)
        app.screen.query_one("#payload", TextArea).text = '{"word": "marmalade"}'
        await pilot.press("ctrl+s")
        answer = app.screen.query_one("#answer", Static)
        await until(pilot, lambda: "marmalade" in str(answer.render()), what="the prediction")
        text = str(answer.render())
        assert "HTTP 200" in text and "ms" in text
        await pilot.press("escape")
        await pilot.press("l")
        assert isinstance(app.screen, LogsScreen)
        logs = app.screen
        await until(pilot, lambda: any("predicted {'word': 'marmalade'}" in line for line in logs.lines),
                    what=f"the predictor's print in the log: {list(logs.lines)[-5:]} {logs.problem}")
        log = logs.query_one(RichLog)
        await pilot.press("slash", *"marmalade", "enter")
        await until(pilot, lambda: "matching 'marmalade'" in str(logs.query_one("#log-status").render()))
        assert all("marmalade" in str(strip.text) for strip in log.lines)
        await pilot.press("space")
        assert logs.paused
        await pilot.press("w")
        assert logs.wrap and log.wrap
        await pilot.press("G")
        await pilot.press("escape")  # clears the filter first
        assert logs.filter_text == "" and isinstance(app.screen, LogsScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, ApisScreen)


async def test_scale_really_scales(live: Controller) -> None:
    app = make_app(live)
    async with app.run_test(size=(120, 40)) as pilot:
        table = await apis_with_echo(pilot)
        await pilot.press("s")
        assert isinstance(app.screen, ScaleScreen)
        box = app.screen.query_one("#replicas", Input)
        box.value = "2"
        await pilot.press("enter")
        await until(pilot, lambda: live.detail("echo")["replicas"]["requested"] == 2, what="2 requested")
        live.wait_ready("echo", 2)
        await until(pilot, lambda: "2/2" in str(table.get_row("echo")[2]), what="2/2 on screen")
        await pilot.press("enter")
        assert isinstance(app.screen, ApiDetailScreen)
        replicas = app.screen.query_one("#replicas", LiveTable)
        await until(pilot, lambda: replicas.row_count == 2, what="two replica rows")
        await pilot.press("s")
        app.screen.query_one("#replicas", Input).value = "1"
        await pilot.press("enter")
        await until(pilot, lambda: live.detail("echo")["replicas"]["requested"] == 1, what="1 requested")
        live.wait_ready("echo", 1)


async def test_scale_with_a_non_number_says_so_and_changes_nothing(live: Controller) -> None:
    before = live.detail("echo")["replicas"]["requested"]
    app = make_app(live)
    async with app.run_test(size=(120, 40)) as pilot:
        await apis_with_echo(pilot)
        await pilot.press("s")
        form = app.screen
        assert isinstance(form, ScaleScreen)
        box = form.query_one("#replicas", Input)
        box.value = ""
        await pilot.press(*"abc")
        assert box.value == ""  # the integer field refuses letters as they are typed
        await pilot.press("enter")
        error = form.query_one("#error", Static)
        assert "give a replica count" in str(error.render())
        for text in ("-", "abc"):  # a lone "-" gets past the field's filter, as does a pasted word
            box.value = text
            await pilot.press("enter")
            await pilot.pause()
            assert app.screen is form, f"the form closed on {text!r}"
            assert str(error.render()) == f"replicas must be a whole number, not {text!r}"
        await pilot.press("escape")
        assert isinstance(app.screen, ApisScreen)
    assert app.return_code in (0, None)
    assert live.detail("echo")["replicas"]["requested"] == before


async def test_predict_with_invalid_json_sends_it_as_text(live: Controller) -> None:
    """Not JSON: the form sends it as text/plain (the backend's rule) and shows the answer; the
    predictor got the text as a str."""
    app = make_app(live)
    async with app.run_test(size=(120, 40)) as pilot:
        await apis_with_echo(pilot)
        await pilot.press("p")
        form = app.screen
        assert isinstance(form, PredictScreen)
        form.query_one("#payload", TextArea).text = '{"word": marmalade'
        await pilot.press("ctrl+s")
        answer = form.query_one("#answer", Static)
        await until(pilot, lambda: "HTTP" in str(answer.render()), what="the answer")
        text = str(answer.render())
        assert "HTTP 200" in text and '{"echo":"{\\"word\\": marmalade"}' in text, text
        assert app.screen is form
        await pilot.press("escape")
    assert app.return_code in (0, None)


async def test_restart_replica(live: Controller) -> None:
    before = live.wait_ready("echo", 1)["replica_list"][0]
    app = make_app(live)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("colon", *"api echo", "enter")
        assert isinstance(app.screen, ApiDetailScreen)
        replicas = app.screen.query_one("#replicas", LiveTable)
        await until(pilot, lambda: replicas.row_count == 1, what="the replica row")
        replicas.focus()
        await pilot.press("r")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")

        def restarted() -> bool:
            replica_list = live.detail("echo")["replica_list"]
            return any(r["id"] != before["id"] or r["restarts"] > before["restarts"] for r in replica_list)

        wait_until(restarted, 60, what="the replica to restart")
        live.wait_ready("echo", 1)


async def test_controller_killed_shows_banner_and_recovers(live: Controller) -> None:
    app = make_app(live)
    async with app.run_test(size=(100, 30)) as pilot:
        hosts = app.screen.query_one("#hosts", LiveTable)
        await until(pilot, lambda: "local" in rows(hosts), what="the host row")
        banner = app.screen.query_one(Banner)
        assert not banner.has_class("-shown")
        live.signal(signal.SIGKILL)
        await until(pilot, lambda: banner.has_class("-shown"), what="the banner")
        assert "controller not answering" in str(banner.render())
        assert "local" in rows(hosts)  # the last data stays on screen
        await pilot.press("2")  # the keyboard still works
        assert isinstance(app.screen, ApisScreen)
        await pilot.press("1")
        live.start()
        await until(pilot, lambda: not banner.has_class("-shown"), timeout=60, what="recovery")
        live.wait_ready("echo", 1)


async def test_delete_with_confirm_really_deletes(live: Controller) -> None:
    app = make_app(live)
    async with app.run_test(size=(120, 40)) as pilot:
        table = await apis_with_echo(pilot)
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")  # no: nothing happens
        assert isinstance(app.screen, ApisScreen)
        assert live.api("GET", "/v1/apis/echo").status_code == 200
        await pilot.press("d", "y")
        await until(pilot, lambda: live.api("GET", "/v1/apis/echo").status_code == 404, what="deletion")
        await until(pilot, lambda: rows(table) == [], what="the row to go")
