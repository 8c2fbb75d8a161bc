"""Faults against real parts: SIGKILL the controller or the agent, docker kill a replica under load."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.controller.helpers import Controller, Load, make_project, pids_of
from tests.controller.test_deploy import spec
from tests.support.real_parts import require_docker, wait_until


def test_sigkill_controller_mid_load_readopts_without_duplicates(controller: Controller,
                                                                 tmp_path: Path) -> None:
    assert controller.deploy(make_project(tmp_path, spec(replicas=2)))[-1]["kind"] == "done"
    before = sorted(r["id"] for r in controller.agent_replicas("echo"))
    with Load(f"{controller.url}/echo", clients=4) as load:
        time.sleep(1)
        assert controller.signal(signal.SIGKILL) == -signal.SIGKILL
    assert load.ok > 0
    controller.start()
    controller.wait_ready("echo", 2, timeout=60)
    with Load(f"{controller.url}/echo", clients=4) as load:
        time.sleep(2)
    assert load.failures == [] and load.ok > 0, load.failures[:5]
    assert [a["name"] for a in controller.api("GET", "/v1/apis").json()] == ["echo"]
    assert sorted(r["id"] for r in controller.agent_replicas("echo")) == before
    assert len(pids_of(controller.bench)) == 2
    assert [h["name"] for h in controller.api("GET", "/v1/hosts").json()] == ["local"]


def test_agent_sigkill_marks_the_host_unreachable_until_it_returns(controller: Controller,
                                                                   tmp_path: Path) -> None:
    assert controller.deploy(make_project(tmp_path, spec()))[-1]["kind"] == "done"
    ids = [r["id"] for r in controller.agent_replicas("echo")]
    pid = int((controller.bench.agent_home / "agent.pid").read_text())
    os.kill(pid, signal.SIGKILL)

    def unreachable() -> bool:
        hosts = controller.api("GET", "/v1/hosts").json()
        return bool(hosts[0]["state"] == "unreachable" and hosts[0]["last_seen"])

    wait_until(unreachable, 20, what="host marked unreachable")
    assert controller.detail("echo")["replicas"]["ready"] == 0
    response = controller.predict("echo", 1)
    assert response.status_code == 503 and "Retry-After" in response.headers
    subprocess.run([sys.executable, "-c", "from workbench.local_agent import ensure_agent; ensure_agent()"],
                   env=controller.bench.env, check=True, timeout=60)
    wait_until(lambda: controller.api("GET", "/v1/hosts").json()[0]["state"] == "ready", 30, what="host back")
    controller.wait_ready("echo", 1, timeout=60)
    assert controller.predict("echo", 1).status_code == 200
    assert [r["id"] for r in controller.agent_replicas("echo")] == ids


@pytest.mark.docker
def test_docker_kill_one_of_three_replicas_under_load(controller: Controller, tmp_path: Path) -> None:
    require_docker()
    text = spec(replicas=3).replace("runtime: process", "runtime: docker")
    events = controller.deploy(make_project(tmp_path, text), timeout=900)
    assert events[-1]["kind"] == "done", events[-5:]
    replicas = controller.agent_replicas("echo")
    assert len(replicas) == 3 and all(r["container_id"] for r in replicas)
    victim = replicas[0]
    with Load(f"{controller.url}/echo", clients=10) as load:
        time.sleep(1.5)
        subprocess.run(["docker", "kill", victim["container_id"]], check=True, capture_output=True)
        time.sleep(4)
    assert load.failures == [] and load.ok > 0, load.failures[:5]

    def healed() -> bool:
        detail = controller.detail("echo")
        mine = {r["id"]: r for r in detail["replica_list"]}
        restarted = victim["id"] not in mine or mine[victim["id"]]["restarts"] >= 1
        return bool(detail["replicas"]["ready"] == 3 and restarted)

    wait_until(healed, 60, what="the killed replica restarted or replaced")
    assert httpx.post(f"{controller.url}/echo", json=1).status_code == 200
