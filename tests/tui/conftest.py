"""A real controller (subprocess, process runtime) with an echo-like API, shared by a test module."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from textual.pilot import Pilot
from workbench.tui.table import LiveTable

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


# -- helpers for the host, hang and trouble tests (added with test_pilot_hosts.py and friends) --------
def add_host(ctl: Controller, **body: object) -> list[dict[str, object]]:
    """POST /v1/hosts as the CLI does; the NDJSON events, ending with done or error."""
    events: list[dict[str, object]] = []
    with httpx.stream("POST", f"{ctl.url}/v1/hosts", headers=ctl.headers, json=body,
                      timeout=600) as response:
        assert response.status_code == 200, response.read()
        events = [json.loads(line) for line in response.iter_lines() if line.strip()]
    assert events and events[-1]["kind"] in ("done", "error"), events
    return events


def host_of(ctl: Controller, name: str) -> dict[str, object] | None:
    """The controller's view of one host (GET /v1/hosts), or None when it is not in the fleet."""
    response = ctl.api("GET", "/v1/hosts")
    assert response.status_code == 200, response.text
    return next((dict(h) for h in response.json() if h["name"] == name), None)


def write_gpus(path: Path, count: int = 2) -> Path:
    """A GPU fixture (WORKBENCH_FAKE_GPUS) with `count` simulated GPUs whose values do not move."""
    gpus = [{"index": i, "name": "NVIDIA A100-SXM4-80GB", "uuid": f"GPU-0000000{i}",
             "memory_total_bytes": 80 * 2**30, "memory_used_bytes": (3 + 10 * i) * 2**30,
             "memory_free_bytes": (77 - 10 * i) * 2**30, "utilization_gpu": 20 + 30 * i,
             "temperature_c": 41 + 5 * i, "power_draw_w": 90 + 60 * i, "power_limit_w": 400}
            for i in range(count)]
    path.write_text(json.dumps({"driver_version": "550.54.15", "cuda_driver_version": "12.4",
                                "gpus": gpus, "motion": False}))
    return path


def agent_pid(bench: Workbench) -> int:
    """The pid of the controller's local agent (written by the agent into its home)."""
    return int((bench.agent_home / "agent.pid").read_text().strip())


def row_keys(table: LiveTable) -> list[str]:
    """The row keys of a screen's table (#hosts, #gpus, #apis, #replicas), top to bottom."""
    return table.row_keys


def cell(table: LiveTable, key: str, column: int) -> str:
    """The text of one cell of the row with `key`."""
    return str(table.get_row(key)[column])
