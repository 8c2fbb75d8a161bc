"""A real controller (subprocess, process runtime) with an echo-like API, shared by a test module."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from textual.pilot import Pilot

from tests.controller.helpers import Controller
from tests.support.real_parts import Workbench

#: echoes the payload and prints one line per prediction (the logs tests look for it)
PREDICTOR = '''
class Predictor:
    def __init__(self, config):
        pass

    def predict(self, payload):
        print(f"predicted {payload!r}", flush=True)
        return {"echo": payload}
'''


def make_echo(root: Path, name: str = "echo", replicas: int = 1) -> Path:
    folder = root / f"project-{name}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "predictor.py").write_text(PREDICTOR)
    (folder / "workbench.yaml").write_text(f"name: {name}\nruntime: process\nreplicas: {replicas}\n")
    return folder


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Controller]:
    """A started controller with API `echo` (1 ready replica); stopped and cleaned up afterwards."""
    root = tmp_path_factory.mktemp("tui")
    bench = Workbench.create(root / "home")
    ctl = Controller(bench)
    try:
        ctl.start()
        ctl.deploy(make_echo(root))
        ctl.wait_ready("echo", 1)
        yield ctl
    finally:
        ctl.stop()
        bench.cleanup()


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_TUI_FROZEN", "1")


async def until(pilot: Pilot[None], condition: Callable[[], object], timeout: float = 30,
                what: str = "condition") -> None:
    """Let the app run until `condition()` holds (a timing here only bounds a hang)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await pilot.pause(0.1)
