"""Issue 14 in the TUI, through Pilot against a real controller: errors in the user's words,
unknown names refused, text never read as markup, a help screen that says where and fits, and
the UI's exit status and web glyph."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Static
from workbench.tui.app import WorkbenchApp
from workbench.tui.screens.api_detail import ApiDetailScreen
from workbench.tui.screens.base import WEB_ICON, header_icon
from workbench.tui.screens.fleet import FleetScreen
from workbench.tui.screens.forms import ScaleScreen
from workbench.tui.screens.help import HelpScreen
from workbench.tui.table import LiveTable

from tests.controller.helpers import Controller
from tests.support.real_parts import Workbench
from tests.support.terminal import run_on_terminal
from tests.tui.conftest import make_echo, until
from workbench.clients.control import ControllerConfig


def make_app(ctl: Controller) -> WorkbenchApp:
    return WorkbenchApp(ControllerConfig(ctl.url, ctl.token), interval=0.5)


def notes(app: WorkbenchApp) -> list[str]:
    return [str(n.message) for n in app._notifications]


def shown(widget: Static) -> str:
    return str(widget.render())


async def test_the_scale_dialog_says_what_is_wrong_in_words(live: Controller) -> None:
    app = make_app(live)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        table = app.screen.query_one("#apis", LiveTable)
        await until(pilot, lambda: table.row_keys == ["echo"], what="the echo row")
        await pilot.press("s")
        assert isinstance(app.screen, ScaleScreen)
        app.screen.query_one("#replicas", Input).value = "-1"
        await pilot.press("enter")
        error = shown(app.screen.query_one("#error", Static))
        assert error == "replicas must be 0 or more", error
        app.screen.query_one("#replicas", Input).value = "1"
        app.screen.query_one("#max", Input).value = "0"
        await pilot.press("enter")
        assert shown(app.screen.query_one("#error", Static)) == "max must be 1 or more"
        assert isinstance(app.screen, ScaleScreen)  # nothing was sent
    assert live.detail("echo")["replicas"]["requested"] == 1


async def test_unknown_names_and_themes_are_refused_not_opened(live: Controller) -> None:
    app = make_app(live)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.state.loaded, what="the first poll")
        await pilot.press("colon", *"api nope", "enter")
        await pilot.pause(0.2)
        assert isinstance(app.screen, FleetScreen)  # no empty "nope (deleted)" screen
        assert "no API named 'nope' (deployed: echo)" in notes(app)
        await pilot.press("colon", *"logs nope", "enter")
        await pilot.pause(0.2)
        assert isinstance(app.screen, FleetScreen)
        await pilot.press("colon", *"theme nope", "enter")
        await pilot.pause(0.2)
        assert any(n.startswith("no theme 'nope'") for n in notes(app)), notes(app)
        await pilot.press("colon", *"api [bold]x", "enter")  # markup in a name is text
        await pilot.pause(0.2)
        assert "no API named '[bold]x' (deployed: echo)" in notes(app)
        assert all(n.markup is False for n in app._notifications)
        await pilot.press("colon", *"api echo", "enter")
        assert isinstance(app.screen, ApiDetailScreen)
    assert app.return_code in (0, None)


async def test_help_says_where_lists_only_our_keys_and_fits_24_rows(live: Controller) -> None:
    app = make_app(live)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        table = app.screen.query_one("#apis", LiveTable)
        await until(pilot, lambda: table.row_keys == ["echo"], what="the echo row")
        table.focus()
        await pilot.press("enter")
        assert isinstance(app.screen, ApiDetailScreen)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        bindings = app.screen.query_one("#bindings", DataTable)
        rows = [[str(cell) for cell in bindings.get_row_at(i)] for i in range(bindings.row_count)]
        where = {row[2] for row in rows}
        assert "API detail" in where and "apidetail" not in where
        keys = {row[0] for row in rows}
        assert not keys & {"super+c", "ctrl+c", "tab", "shift+tab", "ctrl+q"}, keys
        assert {"r", "s", "l", "/", "?", "esc"} <= keys
        dialog = app.screen.query_one("#help")
        assert dialog.region.bottom <= 24 and dialog.region.y >= 0
        bindings.scroll_end(animate=False)
        await pilot.pause(0.2)
        last = bindings.row_count - 1
        assert bindings.scroll_y + bindings.scrollable_content_region.height >= last  # all reachable
        await pilot.press("escape")
        await pilot.press("1")
        assert isinstance(app.screen, FleetScreen)
        await pilot.press("question_mark")
        where = {str(app.screen.query_one("#bindings", DataTable).get_row_at(0)[2])}
        assert where == {"hosts"}


async def test_the_hosts_table_names_its_replicas_column(live: Controller) -> None:
    app = make_app(live)
    async with app.run_test(size=(120, 30)) as pilot:
        hosts = app.screen.query_one("#hosts", LiveTable)
        await until(pilot, lambda: "local" in hosts.row_keys, what="the local host")
        column = list(hosts.labels).index("REPLICAS")
        assert hosts.widths[column] >= len("REPLICAS")
        assert sum(w + 2 for w in hosts.widths) <= 120  # room to spare: the header is whole


async def test_a_pending_note_is_on_the_api_screen(live: Controller, tmp_path: Path) -> None:
    cpus = float(live.api("GET", "/v1/hosts").json()[0]["info"]["cpu_count"])
    project = make_echo(tmp_path, "hog")  # one replica takes the host's every core: the second waits
    (project / "workbench.yaml").write_text(f"name: hog\nruntime: process\nreplicas: 2\n"
                                            f"compute: {{cpu: {cpus:g}}}\n")
    live.deploy(project)
    app = make_app(live)
    try:
        async with app.run_test(size=(160, 40)) as pilot:
            await until(pilot, lambda: app.state.loaded and any(a.name == "hog" for a in app.state.apis),
                        what="the hog API")
            await pilot.press("colon", *"api hog", "enter")
            summary = app.screen.query_one("#summary", Static)
            await until(pilot, lambda: "live  1/2 ready  (1 pending: no CPU)" in shown(summary),
                        timeout=60, what="one serving, one waiting for room")
    finally:
        live.api("DELETE", "/v1/apis/hog")


def test_the_web_ui_gets_a_glyph_its_font_has(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEXTUAL_DRIVER", raising=False)
    assert header_icon() is None  # a terminal keeps Textual's icon
    monkeypatch.setenv("TEXTUAL_DRIVER", "textual.drivers.web_driver:WebDriver")
    assert header_icon() == WEB_ICON
    import textual_serve

    font = Path(textual_serve.__file__).parent / "static" / "fonts" / "RobotoMono-VariableFont_wght.ttf"
    covered = _characters(font.read_bytes())
    assert ord(WEB_ICON) in covered
    assert ord("⭘") not in covered  # why Textual's own icon showed as a box


def _characters(font: bytes) -> set[int]:
    """The code points a TrueType font maps (its cmap's format 4 subtable)."""
    tables = struct.unpack(">H", font[4:6])[0]
    offsets = {font[12 + 16 * i:16 + 16 * i]: struct.unpack(">I", font[20 + 16 * i:24 + 16 * i])[0]
               for i in range(tables)}
    cmap = offsets[b"cmap"]
    found: set[int] = set()
    for i in range(struct.unpack(">H", font[cmap + 2:cmap + 4])[0]):
        at = cmap + struct.unpack(">I", font[cmap + 8 + 8 * i:cmap + 12 + 8 * i])[0]
        if struct.unpack(">H", font[at:at + 2])[0] != 4:
            continue
        count = struct.unpack(">H", font[at + 6:at + 8])[0] // 2
        ends = struct.unpack(f">{count}H", font[at + 14:at + 14 + 2 * count])
        starts = struct.unpack(f">{count}H", font[at + 16 + 2 * count:at + 16 + 4 * count])
        for start, end in zip(starts, ends, strict=True):
            found.update(range(start, end + 1))
    return found


def test_a_crashed_ui_exits_non_zero(workbench: Workbench) -> None:
    """`workbench` whose UI dies on an error exits 1 (it used to exit 0), on a real terminal."""
    crash = ("import workbench.tui.app as tui\n"
             "def boom(self): raise RuntimeError('the UI broke')\n"
             "tui.WorkbenchApp.on_mount = boom\n"
             "import sys; sys.argv = ['workbench']\n"
             "from workbench.cli.main import run\n"
             "run()\n")
    code, text = run_on_terminal([sys.executable, "-c", crash], workbench.env, columns=100, rows=30,
                                 timeout=120)
    assert code == 1, text[-2000:]
    assert "the UI broke" in text


def test_under_the_web_driver_the_ui_starts_without_a_terminal(workbench: Workbench) -> None:
    """textual-serve runs `python -m workbench` over pipes: that is not "no terminal"."""
    env = dict(workbench.env, TEXTUAL_DRIVER="textual.drivers.web_driver:WebDriver")
    process = subprocess.Popen([sys.executable, "-m", "workbench"], env=env, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and process.poll() is None and not (
                workbench.home / "controller" / "controller.json").exists():
            time.sleep(0.2)
        time.sleep(2)
        assert process.poll() is None, process.communicate(timeout=5)  # still running: the UI is up
    finally:
        os.killpg(process.pid, 9)
        process.wait(timeout=10)
