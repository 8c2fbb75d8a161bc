"""A host whose agent hangs delays neither the keyboard nor the other values. A real controller
whose local agent has simulated GPUs; the agent is frozen with SIGSTOP, so the controller's read
of that host's GPU report hangs until its per-host deadline. While the agent stays frozen:

- switching screens ("2" then "1", ten times) is timed from the key reaching the app (as the
  terminal driver hands it over) to the target screen painted; the bound only catches a blocked
  UI, the figures are printed;
- polls keep landing with the controller's answers (no "controller not answering" banner), and
  the fleet screen names the host whose GPUs could not be read.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import time
from collections.abc import Iterator

import pytest
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import Static
from textual.worker import WorkerState
from workbench.tui.app import WorkbenchApp
from workbench.tui.screens.apis import ApisScreen
from workbench.tui.screens.fleet import FleetScreen

from bench.tui_refresh import press
from tests.controller.helpers import Controller
from tests.support.real_parts import Workbench, wait_until
from tests.tui.conftest import agent_pid, host_of, until, write_gpus
from workbench.clients.control import ControllerConfig

ROUND_TRIPS = 10


@pytest.fixture(scope="module")
def ctl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Controller]:
    root = tmp_path_factory.mktemp("tui-hang")
    bench = Workbench.create(root / "home")
    bench.env["WORKBENCH_FAKE_GPUS"] = str(write_gpus(root / "gpus.json"))  # the local agent inherits it
    controller = Controller(bench)
    try:
        controller.start()
        wait_until(lambda: (h := host_of(controller, "local")) and h["state"] == "ready"
                   and h["info"]["gpus"], 60, what="the local host with its GPUs")  # type: ignore[index]
        yield controller
    finally:
        controller.stop()
        bench.cleanup()


def poll_in_flight(app: WorkbenchApp) -> bool:
    return any(w.group == "poll" and w.state in (WorkerState.PENDING, WorkerState.RUNNING)
               for w in app.workers)


async def stuck_poll(pilot: Pilot[None], app: WorkbenchApp, stuck_for: float = 1.0) -> float:
    """Wait until one poll has been in flight for `stuck_for` s (a normal one takes milliseconds);
    return when it was first seen running."""
    deadline = time.monotonic() + 30
    since: float | None = None  # a normal poll takes milliseconds: sampled every 20 ms
    while time.monotonic() < deadline:
        now = time.monotonic()
        since = (since or now) if poll_in_flight(app) else None
        if since is not None and now - since >= stuck_for:
            return since
        await asyncio.sleep(0.02)
    raise AssertionError("no poll got stuck on the frozen agent")


async def key_to_paint(pilot: Pilot[None], key: str, target: type[Screen[None]]) -> float:
    """Seconds from the key reaching the app until `target` is on top and painted. (Pilot.press
    would also wait for the whole process to go idle, which is not what a user waits for.)"""
    app = pilot.app
    painted = asyncio.Event()
    started = time.perf_counter()
    press(app, key)
    while not isinstance(app.screen, target):
        await asyncio.sleep(0.001)
    app.call_after_refresh(painted.set)
    await painted.wait()
    return time.perf_counter() - started


async def test_frozen_agent_does_not_delay_keys_or_the_others(ctl: Controller) -> None:
    app = WorkbenchApp(ControllerConfig(ctl.url, ctl.token), interval=0.5)  # the default 5 s timeout
    pid = agent_pid(ctl.bench)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.state.loaded and app.state.gpu_reports.get("local"),
                    what="a first poll with the local GPUs")
        os.kill(pid, signal.SIGSTOP)
        try:
            hang_seen = await stuck_poll(pilot, app)
            polls = app.state.polls
            times = []
            errors = set()
            for _ in range(ROUND_TRIPS):
                times.append(await key_to_paint(pilot, "2", ApisScreen))
                times.append(await key_to_paint(pilot, "1", FleetScreen))
                errors.add(app.state.error)
                await pilot.pause(0.2)
            await until(pilot, lambda: app.state.polls >= polls + 2 and "local" in app.state.gpu_errors,
                        what="polls to land with the hung host's GPUs missing")
            note = str(app.screen.query_one("#gpu-note", Static).render())
            hung_for = time.monotonic() - hang_seen
            assert app.state.hosts, "the controller's answers kept coming"
        finally:
            os.kill(pid, signal.SIGCONT)
        median, worst = statistics.median(times), max(times)
        print(f"\nkey-to-paint while an agent is frozen: {len(times)} switches, "
              f"median {median * 1000:.1f} ms, p90 {sorted(times)[int(len(times) * 0.9)] * 1000:.1f} ms, "
              f"max {worst * 1000:.1f} ms; agent frozen for {hung_for:.1f} s, "
              f"{app.state.polls - polls} polls landed meanwhile")
        assert errors == {None}, f"the banner said the controller was down: {errors}"
        assert "local: cannot read GPUs" in note and "did not answer" in note, note
        assert median < 0.3 and worst < 2.0, times
        await until(pilot, lambda: "local" not in app.state.gpu_errors and app.state.gpu_reports.get("local"),
                    timeout=60, what="the GPUs to come back after SIGCONT")
    wait_until(lambda: (h := host_of(ctl, "local")) and h["state"] == "ready", 60, what="local ready again")
