"""Prices, cost and idle rules through a real controller (subprocess, its own home and agent): bad
input at the CLI and at the control API changes nothing; a price set shows in `host list` and
`workbench cost`; and, on a simulated GPU host (WORKBENCH_FAKE_GPUS, utilization held still), an
idle command runs exactly once — not while a GPU is busy, not while requests flow."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.controller.helpers import Controller, Load, make_project
from tests.support.real_parts import Workbench, wait_until

GIB = 1024**3


def host(ctl: Controller, name: str = "local") -> dict[str, Any]:
    response = ctl.api("GET", f"/v1/hosts/{name}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def refused(ctl: Controller, method: str, path: str, status: int = 400, **body: Any) -> str:
    response = ctl.api(method, path, **body)
    assert response.status_code == status, (path, body, response.status_code, response.text)
    return str(response.json()["error"])


def test_bad_input_changes_nothing_then_a_price_counts(controller: Controller, tmp_path: Path) -> None:
    ctl, bench = controller, controller.bench

    def cli(*args: str, code: int) -> str:
        result = bench.run(*args, check=False)
        assert result.returncode == code, (args, result.returncode, result.stdout, result.stderr)
        return result.stderr

    assert "cannot be negative" in cli("host", "set", "local", "--price", "-1", code=2)
    assert "is not a price" in cli("host", "set", "local", "--price", "abc", code=2)
    assert "has no price yet" in cli("host", "set", "local", "--currency", "EUR", code=1)
    assert "three-letter code" in cli("host", "set", "local", "--price", "1", "--currency", "euro", code=2)
    assert "is not a duration" in cli("cost", "--since", "7x", code=2)
    assert "is not a duration" in cli("host", "idle", "local", "--after", "soon", code=2)
    assert "0 to 100" in cli("host", "idle", "local", "--util-threshold", "150", code=2)
    assert "not a program" in cli("host", "idle", "local", "--run", "no-such-program-here --now", code=1)
    assert "No closing quotation" in cli("host", "idle", "local", "--run", "echo 'oops", code=1)
    assert "cannot be removed" in cli("host", "idle", "local", "--remove", code=1)
    assert "cannot be negative" in cli("host", "add", "box", "me@box.example", "--price", "-2", code=2)
    assert "no host named 'nobody'" in cli("host", "set", "nobody", "--price", "1", code=1)

    # a body that does not validate is a 422 naming the field (as every body of the control API)
    assert refused(ctl, "PATCH", "/v1/hosts/local", 422, json={"price": "-1"}).startswith("price ")
    assert "cannot be negative" in refused(ctl, "PATCH", "/v1/hosts/local", 422, json={"price": "-1"})
    assert "is not a price" in refused(ctl, "PATCH", "/v1/hosts/local", 422, json={"price": "abc"})
    assert "nothing to set" in refused(ctl, "PATCH", "/v1/hosts/local", json={})
    assert "is not a duration" in refused(ctl, "PUT", "/v1/hosts/local/idle", 422, json={"after": "soon"})
    assert "0 to 100" in refused(ctl, "PUT", "/v1/hosts/local/idle", 422, json={"util_threshold": -5})
    assert "not a program" in refused(ctl, "PUT", "/v1/hosts/local/idle", json={"command": "nope-nope"})
    assert "is not a duration" in refused(ctl, "GET", "/v1/cost", params={"since": "forever"})
    refused(ctl, "PATCH", "/v1/hosts/nobody", 404, json={"price": "1"})
    refused(ctl, "DELETE", "/v1/hosts/local/idle", 404)

    shown = host(ctl)
    assert shown["price"] is None and shown["idle_rule"] is None
    assert not [e for e in ctl.api("GET", "/v1/events").json() if e["kind"] == "idle"]
    # the dry run changes nothing either, and says what would happen
    dry = json.loads(bench.run("host", "idle", "local", "--after", "1h", "--run", "true", "--dry-run",
                               "--json").stdout)
    assert dry["saved"] is False and dry["rule"]["argv"] == ["true"]
    assert dry["env"]["WORKBENCH_HOST_NAME"] == "local" and dry["env"]["WORKBENCH_HOST_ADDRESS"]
    assert any("`true` runs on this machine" in step for step in dry["steps"])
    assert host(ctl)["idle_rule"] is None

    # a price: in host list, in the cost report (exact, a string on the wire), in the fleet's $/h
    bench.run("host", "set", "local", "--price", "1.20")
    assert "$1.20/h" in bench.run("host", "list").stdout
    assert host(ctl)["price"] == "1.200000" and host(ctl)["currency"] == "USD"
    time.sleep(1.5)
    report = json.loads(bench.run("cost", "--since", "1h", "--json").stdout)
    [local] = report["hosts"]
    assert local["price"] == "1.200000" and Decimal(local["spend"]) > 0 and local["hours"] > 0
    assert report["per_hour"] == {"USD": "1.200000"} and Decimal(report["total"]["USD"]) > 0
    table = bench.run("cost").stdout
    assert "fleet total $" in table and "now $1.20/h" in table
    bench.run("host", "set", "local", "--currency", "EUR")
    assert host(ctl)["currency"] == "EUR" and host(ctl)["price"] == "1.200000"


# -- the GPU fixture -------------------------------------------------------------------------------
def gpus(utilization: float) -> dict[str, Any]:
    return {"driver_version": "550.54.15", "motion": False, "gpus": [
        {"index": i, "uuid": f"GPU-sim-{i}", "name": "NVIDIA A100-SXM4-80GB", "memory_total_bytes": 80 * GIB,
         "memory_used_bytes": 0, "memory_free_bytes": 80 * GIB, "utilization_gpu": utilization if i == 1
         else 0, "temperature_c": 35, "power_draw_w": 60, "power_limit_w": 400} for i in range(2)]}


@pytest.fixture
def gpu_host(workbench: Workbench, tmp_path: Path) -> Iterator[tuple[Controller, Path]]:
    """A controller whose local agent sees two simulated GPUs, GPU 1 at 50 % (busy)."""
    path = tmp_path / "gpus.json"
    path.write_text(json.dumps(gpus(50)))
    workbench.env["WORKBENCH_FAKE_GPUS"] = str(path)
    ctl = Controller(workbench)
    ctl.start()
    try:
        yield ctl, path
    finally:
        ctl.stop()


def test_the_idle_command_runs_once_not_while_busy(gpu_host: tuple[Controller, Path], tmp_path: Path) -> None:
    ctl, fixture = gpu_host
    bench = ctl.bench
    project = make_project(tmp_path, "name: echo\nruntime: process\nreplicas: 1\n"
                                     "compute: {cpu: 0.5, mem: 64Mi}\n", name="echo")
    assert ctl.deploy(project)[-1]["kind"] == "done"
    ctl.wait_ready("echo", 1)
    marker = tmp_path / "marker"
    script = tmp_path / "on-idle"
    script.write_text(f"#!{sys.executable}\nimport os, sys\nopen(sys.argv[1], 'a').write("
                      "os.environ['WORKBENCH_HOST_NAME'] + ' ' + "
                      "os.environ['WORKBENCH_HOST_ADDRESS'] + '\\n')\nprint('notified')\n")
    script.chmod(0o755)
    bench.run("host", "idle", "local", "--after", "3s", "--run", f"{script} {marker}")
    rule = host(ctl)["idle_rule"]
    assert rule["after_seconds"] == 3 and rule["util_threshold"] == 5 and rule["argv"] == [str(script),
                                                                                          str(marker)]

    # a GPU at 50 %: never idle, however quiet the API
    time.sleep(12)
    assert not marker.exists() and host(ctl)["idle"] is False

    # every GPU at 0 %, but requests flow: still not idle
    fixture.write_text(json.dumps(gpus(0)))
    with Load(f"{ctl.url}/echo", clients=1) as load:
        time.sleep(12)
    assert load.ok > 10 and not load.failures
    assert not marker.exists() and host(ctl)["idle"] is False

    # quiet and cold: idle after 3 s; the command runs once, however long it stays idle
    wait_until(marker.exists, 45, what="the idle command to run")
    time.sleep(10)
    assert marker.read_text().splitlines() == [f"local {host(ctl)['address']}"]
    shown = host(ctl)
    assert shown["idle"] is True and shown["quiet_since"] is not None
    events = [e["message"] for e in ctl.api("GET", "/v1/events", params={"limit": 1000}).json()]
    assert sum(m.startswith("host local is idle") for m in events) == 1
    assert events.count("the idle command for local exited 0: notified") == 1
    assert "idle" in bench.run("host", "list").stdout

    # the usage it was metered with: GPU hours (busy while GPU 1 was at 50 %), requests to echo
    report = json.loads(bench.run("cost", "--json").stdout)
    [local] = report["hosts"]
    assert local["gpus"] == 2 and local["gpu_hours"] > 0 and local["gpu_busy_hours"] > 0
    assert local["gpu_unallocated_hours"] == local["gpu_hours"] and local["spend"] is None  # no price
    assert report["unpriced"] == ["local"] and report["total"] == {}
    [echo] = report["apis"]
    assert echo["name"] == "echo" and echo["requests"] >= load.ok and echo["replica_hours"] > 0
