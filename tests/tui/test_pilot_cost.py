"""The TUI's money and idle columns against a real controller: the local host given a price shows
it ($/h), its spend and the fleet's $/h in the header; an API that reserves CPU and memory shows
its spend; a host idle past its rule is in the warning colour with how long it has been idle."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from rich.text import Text
from textual.pilot import Pilot
from workbench.tui.app import WorkbenchApp
from workbench.tui.table import LiveTable
from workbench.tui.views import API_COLUMNS, HOST_COLUMNS, IDLE_STYLE

from tests.controller.helpers import Controller
from tests.support.real_parts import Workbench
from tests.tui.conftest import cell, make_echo, until
from workbench.clients.control import ControllerConfig


@pytest.fixture(scope="module")
def priced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Controller]:
    """A controller whose local host costs 1.20/h and is flagged idle after 2 s; API `echo`
    reserves one core and 256 MiB."""
    root = tmp_path_factory.mktemp("tui-cost")
    bench = Workbench.create(root / "home")
    ctl = Controller(bench)
    try:
        ctl.start()
        folder = make_echo(root)
        (folder / "workbench.yaml").write_text("name: echo\nruntime: process\nreplicas: 1\n"
                                               "compute: {cpu: 1, mem: 256Mi}\n")
        ctl.deploy(folder)
        ctl.wait_ready("echo", 1)
        assert ctl.api("PATCH", "/v1/hosts/local", json={"price": "1.20"}).status_code == 200
        assert ctl.api("PUT", "/v1/hosts/local/idle", json={"after": "2s"}).status_code == 200
        time.sleep(2)  # some priced time to spend
        yield ctl
    finally:
        ctl.stop()
        bench.cleanup()


async def test_prices_spend_and_idle_on_the_fleet_and_apis_screens(priced: Controller) -> None:
    app = WorkbenchApp(ControllerConfig(priced.url, priced.token), interval=0.5)
    async with app.run_test(size=(200, 40)) as pilot:
        hosts = app.screen.query_one("#hosts", LiveTable)
        await until(pilot, lambda: "local" in hosts.row_keys, what="the local host row")
        await until(pilot, lambda: "fleet $1.20/h" in app.sub_title, what="the fleet's $/h in the header")
        assert cell(hosts, "local", HOST_COLUMNS.index("$/H")) == "$1.20/h"
        await until(pilot, lambda: cell(hosts, "local", HOST_COLUMNS.index("SPEND 7D")).startswith("$"),
                    what="the host's spend")
        await until(pilot, lambda: cell(hosts, "local", HOST_COLUMNS.index("IDLE FOR")) != "-", 30,
                    what="the idle host's idle-for column")
        name = hosts.get_row("local")[0]
        assert isinstance(name, Text) and name.style == IDLE_STYLE
        since = cell(hosts, "local", HOST_COLUMNS.index("IDLE FOR"))
        assert since[-1] in "smhd" and since[:-1].isdigit(), since

        await pilot.press("2")
        apis = app.screen.query_one("#apis", LiveTable)
        await until(pilot, lambda: apis.row_keys == ["echo"], what="the echo row")
        await until(pilot, lambda: cell(apis, "echo", API_COLUMNS.index("SPEND 7D")).startswith("$"), 30,
                    what="the API's spend")
        await pilot.press("q")


@pytest.mark.usefixtures("frozen")
def test_fleet_snapshot_with_a_price_and_an_idle_host(priced: Controller, snap_compare: Any) -> None:
    """The warning colour, the idle-for column, $/h, the (masked) spend and the header's fleet $/h."""
    from tests.tui.test_snapshots import loaded

    async def before(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        app = pilot.app
        assert isinstance(app, WorkbenchApp)
        await until(pilot, lambda: all(h.idle for h in app.state.hosts) and app.state.cost is not None,
                    what="the idle flag and the cost report")

    app = WorkbenchApp(ControllerConfig(priced.url, priced.token), interval=3600)
    assert snap_compare(app, terminal_size=(160, 16), run_before=before)
