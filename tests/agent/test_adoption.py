"""SIGKILL of the agent: replicas keep serving; a new agent on the same home re-adopts them."""

from __future__ import annotations

import os
import signal
import subprocess

import httpx
import psutil
import pytest

from tests.agent.helpers import Agent, containers_of, replica_request, wait_state
from tests.support.real_parts import require_docker


def _restart_agent(agent: Agent) -> None:
    agent.kill(signal.SIGKILL)
    agent.start()


def test_process_replica_survives_agent_sigkill_and_is_readopted(
    agent: Agent, client: httpx.Client, bundle: str
) -> None:
    keep = client.post("/v1/replicas", json=replica_request("process", bundle)).json()
    dies = client.post("/v1/replicas", json=replica_request("process", bundle)).json()
    wait_state(client, keep["id"], ["ready"], 60)
    wait_state(client, dies["id"], ["ready"], 60)

    agent.kill(signal.SIGKILL)
    assert httpx.post(keep["url"] + "/", json="still here").json()["echo"] == "still here"
    os.killpg(dies["pid"], signal.SIGKILL)  # dies while nobody watches
    agent.start()

    with agent.client() as c:
        listed = {r["id"]: r for r in c.get("/v1/replicas").json()}
        assert set(listed) == {keep["id"], dies["id"]}
        assert listed[keep["id"]]["pid"] == keep["pid"]
        back = wait_state(c, dies["id"], ["ready"], 60)
        assert back["restarts"] >= 1 and back["pid"] != dies["pid"]
        ready = wait_state(c, keep["id"], ["ready"], 30)
        assert ready["pid"] == keep["pid"] and ready["restarts"] == 0
        # no duplicates: one serving process per replica
        servers = [
            p
            for p in psutil.process_iter(["cmdline"])
            if "workbench.serving" in " ".join(p.info["cmdline"] or [])
            and str(agent.home) in " ".join(p.info["cmdline"] or [])
        ]
        assert len(servers) == 2


@pytest.mark.docker
def test_container_survives_agent_sigkill_and_is_readopted(
    agent: Agent, client: httpx.Client, docker_image: tuple[str, list[dict[str, object]]]
) -> None:
    require_docker()
    tag, _ = docker_image
    info = client.post("/v1/replicas", json=replica_request("docker", tag)).json()
    wait_state(client, info["id"], ["ready"], 120)

    agent.kill(signal.SIGKILL)
    assert httpx.post(info["url"] + "/", json=5).json()["echo"] == 5
    agent.start()

    with agent.client() as c:
        listed = c.get("/v1/replicas").json()
        assert [r["id"] for r in listed] == [info["id"]]
        again = wait_state(c, info["id"], ["ready"], 60)
        assert again["container_id"] == info["container_id"] and again["url"] == info["url"]
        assert again["created_at"] == pytest.approx(info["created_at"])
    assert containers_of(agent) == [info["container_id"][:12]]
    state = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Running}}", info["container_id"]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert state == "true"


def test_sigterm_of_agent_leaves_replicas_running(agent: Agent, client: httpx.Client, bundle: str) -> None:
    info = client.post("/v1/replicas", json=replica_request("process", bundle)).json()
    wait_state(client, info["id"], ["ready"], 60)
    agent.kill(signal.SIGTERM)
    assert psutil.pid_exists(info["pid"])
    assert httpx.post(info["url"] + "/", json=1).status_code == 200
    agent.start()
    with agent.client() as c:
        assert wait_state(c, info["id"], ["ready"], 30)["pid"] == info["pid"]
