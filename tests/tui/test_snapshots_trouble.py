"""Snapshots of a fleet in trouble: a real controller whose local agent has two simulated GPUs, an SSH
box host that went away (sshd stopped, agent killed: listed as unreachable, greyed, with last-seen),
API `echo` (live) and API `broken`, whose only replica failed (its predictor hangs at start after a
restart, so the agent reports it not ready after startup_timeout). Fleet and APIs screens at 80x24 and
160x48, and the broken API's detail screen. WORKBENCH_TUI_FROZEN=1 masks ages, ports, ids.

The controller replaces a replica that stays failed for 30 s (then the new one fails the same way),
so each test first waits for a failed window with time left; the detail screen (which lists the
replica's restart count and the API's events) is taken in the first window, right after setup.
Regenerate with `pytest tests/tui/test_snapshots_trouble.py --snapshot-update` and review the SVGs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest
from textual.pilot import Pilot
from workbench.tui.app import WorkbenchApp

import tests.support.sshd as sshd
from tests.controller.helpers import Controller
from tests.support.real_parts import Workbench, wait_until
from tests.support.sshd import Box, require_sshd
from tests.tui.conftest import add_host, host_of, make_echo, until, write_gpus
from tests.tui.test_snapshots import open_detail, settled
from workbench.clients.control import ControllerConfig

pytestmark = [pytest.mark.slow, pytest.mark.sshd, pytest.mark.usefixtures("frozen")]

#: a fixed box user: the host's address (user@127.0.0.2:PORT) is on screen, and only the port is masked
BOX_USER_SUFFIX = "trouble1"
#: starts normally; once the marker file exists it freezes itself at start (SIGSTOP, like a process
#: stuck in the kernel): alive but never ready, so the agent reports it failed and does not restart it
#: (a predictor that merely sleeps would be ended by the runtime's own load timeout, and restarted)
BROKEN = '''
import os, signal


class Predictor:
    def __init__(self, config):
        if os.path.exists(config["marker"]):
            print("broken: stuck at start", flush=True)
            os.kill(os.getpid(), signal.SIGSTOP)

    def predict(self, payload):
        return payload
'''
FAILED_FOR = 30.0  # the controller's FAILED_REPLACE_AFTER: a failed replica is replaced after this


@contextlib.contextmanager
def fixed_user_box() -> Iterator[Box]:
    """One sshd box (as tests.support.sshd makes them) whose user is always wb + BOX_USER_SUFFIX."""
    user = "wb" + BOX_USER_SUFFIX
    found = subprocess.run(["id", "-u", user], capture_output=True, text=True)
    if found.returncode == 0:  # left behind by a run that was killed
        for proc in psutil.process_iter(["uids"]):
            if proc.info["uids"] is not None and proc.info["uids"].real == int(found.stdout):
                with contextlib.suppress(psutil.Error):
                    proc.kill()
        subprocess.run(["userdel", "-r", "-f", user], capture_output=True)
    original = sshd.secrets
    sshd.secrets = SimpleNamespace(token_hex=lambda _: BOX_USER_SUFFIX)  # type: ignore[assignment]
    try:
        with sshd.sshd_boxes(1) as boxes:
            sshd.secrets = original
            yield boxes[0]
    finally:
        sshd.secrets = original


def broken_project(root: Path, marker: Path) -> Path:
    folder = root / "project-broken"
    folder.mkdir()
    (folder / "predictor.py").write_text(BROKEN)
    (folder / "workbench.yaml").write_text(
        "name: broken\nruntime: process\nreplicas: 1\nserving: {startup_timeout: 2}\n"
        f"predictor: {{config: {{marker: {json.dumps(str(marker))}}}}}\n")
    return folder


class Trouble:
    """The controller, and when each failed replica of `broken` was first seen failed."""

    def __init__(self, ctl: Controller):
        self.ctl = ctl
        self.first_failed: dict[tuple[str, int], float] = {}

    def failed_replica(self) -> dict[str, Any] | None:
        """The only replica of broken when it is failed for not getting ready (not the moment it
        was killed: the agent restarts that at once)."""
        replicas = self.ctl.detail("broken")["replica_list"]
        failed = [r for r in replicas if r["state"] == "failed" and "startup_timeout" in (r["message"] or "")]
        if len(replicas) != 1 or not failed:
            return None
        self.first_failed.setdefault((failed[0]["id"], failed[0]["restarts"]), time.monotonic())
        return dict(failed[0])

    def window(self, left: float = 12.0, timeout: float = 120.0) -> dict[str, Any]:
        """Wait until the broken replica is failed with at least `left` s before it is replaced."""
        def ok() -> dict[str, Any] | None:
            replica = self.failed_replica()
            if replica is None:
                return None
            since = self.first_failed[(replica["id"], replica["restarts"])]
            return replica if time.monotonic() - since < FAILED_FOR - left else None

        found: dict[str, Any] = wait_until(ok, timeout, interval=0.1, what="a failed replica of broken")
        return found


@pytest.fixture(scope="module")
def trouble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trouble]:
    require_sshd()
    root = tmp_path_factory.mktemp("tui-trouble")
    bench = Workbench.create(root / "home")
    bench.env["WORKBENCH_FAKE_GPUS"] = str(write_gpus(root / "gpus.json"))
    ctl = Controller(bench)
    marker = root / "broken.marker"
    with fixed_user_box() as box:
        try:
            ctl.start()
            ctl.deploy(make_echo(root))
            ctl.deploy(broken_project(root, marker))
            ctl.wait_ready("echo", 1)
            ctl.wait_ready("broken", 1)
            events = add_host(ctl, name="gpu-box", target=box.target, identity=str(box.client_key),
                              trust=box.fingerprint())
            assert events[-1]["kind"] == "done", events[-1]
            box.stop()
            box.kill_user_processes()
            wait_until(lambda: (host_of(ctl, "gpu-box") or {}).get("state") == "unreachable", 60,
                       what="gpu-box unreachable")
            marker.touch()
            replica = ctl.detail("broken")["replica_list"][0]
            meta = json.loads((bench.agent_home / "replicas" / f"{replica['id']}.json").read_text())
            os.killpg(int(meta["pid"]), signal.SIGKILL)  # the agent restarts it; now it never gets ready
            found = Trouble(ctl)
            wait_until(found.failed_replica, 60, interval=0.1, what="broken's replica to fail")
            yield found
        finally:
            ctl.stop()
            bench.cleanup()
            box.kill_user_processes()


def make_app(ctl: Controller) -> WorkbenchApp:
    return WorkbenchApp(ControllerConfig(ctl.url, ctl.token), interval=3600)  # one poll, then still


async def loaded(pilot: Pilot[Any]) -> None:
    app = pilot.app
    assert isinstance(app, WorkbenchApp)
    await until(pilot, lambda: app.state.loaded and len(app.state.apis) == 2 and len(app.state.hosts) == 2,
                what="the first poll")
    await until(pilot, lambda: not app._polling, what="the poll to settle")
    await settled(pilot)


def test_api_detail_of_the_broken_api(trouble: Trouble, snap_compare: Any) -> None:
    replica = trouble.window(left=15)
    assert replica["restarts"] == 1, replica  # the first window: the replica the test killed

    async def before(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        await open_detail(pilot, "broken", 1)

    assert snap_compare(make_app(trouble.ctl), terminal_size=(120, 30), run_before=before)
    assert trouble.failed_replica() == replica, "the replica changed while the snapshot was taken"


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_apis(trouble: Trouble, snap_compare: Any, size: tuple[int, int]) -> None:
    replica = trouble.window()

    async def before(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        await pilot.press("2")
        await settled(pilot)

    assert snap_compare(make_app(trouble.ctl), terminal_size=size, run_before=before)
    assert trouble.failed_replica() == replica, "the replica changed while the snapshot was taken"


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_fleet(trouble: Trouble, snap_compare: Any, size: tuple[int, int]) -> None:
    replica = trouble.window()
    host = host_of(trouble.ctl, "gpu-box")
    assert host is not None and host["state"] == "unreachable" and host["last_seen"], host
    assert snap_compare(make_app(trouble.ctl), terminal_size=size, run_before=loaded)
    assert trouble.failed_replica() == replica, "the replica changed while the snapshot was taken"
