"""A container API's replica on a real agent: someone else's server from its own Dockerfile (and as
a process-runtime command), probed on its health path, re-adopted after an agent restart; a server
on the wrong port, one that never turns healthy and one that exits at once each fail naming why."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator

import httpx
import pytest

from tests.agent.helpers import (
    Agent,
    read_events,
    server_bundle_context,
    server_context,
    server_request,
    wait_for,
    wait_state,
)
from tests.support.real_parts import require_docker

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_required")]

MiB = 2**20


@pytest.fixture(scope="module")
def server_image(agent: Agent) -> Iterator[str]:
    """The echo server's image, built once through /v1/builds from its own Dockerfile, whose
    `ARG BASE_IMAGE=python:3.11-slim` the agent points at the Python image this host has."""
    require_docker()
    tag, tar = server_context()
    with agent.client(timeout=600) as c:
        events = read_events(c.post("/v1/builds", params={"runtime": "docker", "artifact": tag}, content=tar))
    assert events[-1]["kind"] == "done", events[-10:]
    try:
        yield tag
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)


@pytest.fixture(scope="module")
def server_bundle(agent: Agent) -> str:
    artifact, tar = server_bundle_context()
    with agent.client(timeout=600) as c:
        events = read_events(c.post("/v1/builds", params={"runtime": "process", "artifact": artifact},
                                    content=tar))
    assert events[-1]["kind"] == "done", events[-10:]
    return artifact


def inspect(container_id: str) -> dict[str, object]:
    out = subprocess.run(["docker", "inspect", container_id], capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout)[0])


def test_a_server_runs_its_command_on_its_port_and_is_readopted(
    agent: Agent, client: httpx.Client, server_image: str
) -> None:
    request = server_request("docker", server_image, env={"TAG": "t1"}, port=9000, shm_size=64 * MiB,
                             command=["python3", "/srv/echo_server.py"], args=["--port", "$PORT"],
                             health={"path": "/health", "period": 1})
    info = client.post("/v1/replicas", json=request).json()
    assert info["state"] == "starting" and info["url"].startswith("http://127.0.0.1:"), info
    ready = wait_state(client, info["id"], ["ready"], 60)
    answer = httpx.post(ready["url"] + "/some/path?q=1", content=b"hi").json()
    assert answer == {"path": "/some/path?q=1", "method": "POST", "body": "hi", "tag": "t1",
                      "version": "agent", "pid": answer["pid"], "port_env": "9000",
                      "argv": ["--port", "9000"], "cuda": None}
    attrs = inspect(info["container_id"])
    host = attrs["HostConfig"]
    assert isinstance(host, dict) and host["ShmSize"] == 64 * MiB
    assert [b["HostIp"] for b in host["PortBindings"]["9000/tcp"]] == ["127.0.0.1"]

    agent.kill(signal.SIGKILL)
    assert httpx.get(ready["url"] + "/echo/x").json()["path"] == "/echo/x"  # serves while no agent watches
    agent.start()
    with agent.client() as c:
        again = wait_state(c, info["id"], ["ready"], 60)
    assert again["container_id"] == info["container_id"] and again["url"] == ready["url"]


def test_a_server_on_another_port_fails_naming_both(client: httpx.Client, server_image: str) -> None:
    info = client.post("/v1/replicas", json=server_request("docker", server_image, env={"MODE": "elsewhere"},
                                                           startup_timeout=300)).json()
    failed = wait_state(client, info["id"], ["failed"], 40)
    assert failed["message"].startswith("the server listens on port 8081, not on port 8080 (container.port)")
    assert "set container.port" in failed["message"]
    assert any("listening on port 8081" in line for line in failed["log_tail"]), failed["log_tail"]


def test_a_server_that_never_turns_healthy_fails_after_startup_timeout(
    client: httpx.Client, server_image: str
) -> None:
    info = client.post("/v1/replicas", json=server_request("docker", server_image, env={"MODE": "sick"},
                                                           startup_timeout=3)).json()
    def progress() -> bool:
        message = client.get(f"/v1/replicas/{info['id']}").json().get("message") or ""
        return message.startswith("starting: listening on port 8080")

    assert wait_for(progress, 20, "the last log line as progress", every=0.1)
    failed = wait_state(client, info["id"], ["failed"], 30)
    assert failed["message"] == ("not healthy after startup_timeout (3s): GET /health on port 8080 got "
                                 "HTTP 503")
    assert failed["log_tail"][-1] == "listening on port 8080", failed["log_tail"]


def test_a_server_that_exits_at_once_reports_its_last_run_once(client: httpx.Client,
                                                               server_image: str) -> None:
    request = server_request("docker", server_image, env={"MODE": "exit"})
    info = client.post("/v1/replicas", json=request).json()
    failed = wait_state(client, info["id"], ["failed"], 30)
    assert failed["message"] == "exited with code 1"
    again = wait_for(lambda: (r := client.get(f"/v1/replicas/{info['id']}").json())["restarts"] >= 1
                     and r["state"] == "failed" and r, 60, "a restart that fails again")
    logs = client.get(f"/v1/replicas/{info['id']}/logs", params={"tail": 100}).text
    assert logs.count("boom: this server refuses to start") >= 2  # Docker keeps every run's output
    assert again["log_tail"].count("boom: this server refuses to start") == 1, again["log_tail"]


def test_pulls_find_a_present_image_and_name_a_missing_one(client: httpx.Client, server_image: str) -> None:
    present = read_events(client.post("/v1/pulls", params={"image": server_image}))
    assert len(present) == 1 and present[0]["kind"] == "done" and present[0]["cached"] is True
    assert present[0]["image_id"].startswith("sha256:")
    missing = read_events(client.post("/v1/pulls", params={"image": "workbench-test/no-such-image:1"}))
    assert [e["kind"] for e in missing] == ["log", "error"], missing
    assert missing[-1]["message"].startswith(
        "workbench-test/no-such-image:1 is not on this host and cannot be pulled: ")
    assert client.post("/v1/pulls", params={"image": "bad image"}).status_code == 400
    stranger = client.post("/v1/pulls", params={"image": "x"}, headers={"Authorization": "Bearer no"})
    assert stranger.status_code == 401


def test_a_command_on_the_process_runtime(agent: Agent, client: httpx.Client, server_bundle: str) -> None:
    info = client.post("/v1/replicas", json=server_request(
        "process", server_bundle, env={"TAG": "p-$PORT"}, command=["python", "echo_server.py"])).json()
    ready = wait_state(client, info["id"], ["ready"], 30)
    port = ready["url"].rsplit(":", 1)[1]
    answer = httpx.post(ready["url"] + "/").json()
    assert answer["port_env"] == port and answer["tag"] == f"p-{port}" and answer["version"] == "agent"
    assert answer["pid"] == ready["pid"]

    agent.kill(signal.SIGKILL)
    agent.start()
    with agent.client() as c:
        again = wait_state(c, info["id"], ["ready"], 30)
    assert again["pid"] == ready["pid"] and again["url"] == ready["url"]


def test_process_runtime_failures_name_the_port_and_the_command(client: httpx.Client,
                                                               server_bundle: str) -> None:
    elsewhere = client.post("/v1/replicas", json=server_request(
        "process", server_bundle, env={"MODE": "elsewhere"}, command=["python", "echo_server.py"])).json()
    missing = client.post("/v1/replicas", json=server_request(
        "process", server_bundle, command=["no-such-server", "--port", "$PORT"])).json()
    failed = wait_state(client, elsewhere["id"], ["failed"], 40)
    port = int(elsewhere["url"].rsplit(":", 1)[1])
    assert failed["message"].startswith(f"the server listens on port {port + 1}, not on port {port} ($PORT)")
    gone = wait_state(client, missing["id"], ["failed"], 20)
    assert gone["message"].startswith("cannot run 'no-such-server': No such file or directory")
    assert any("cannot run 'no-such-server'" in line for line in gone["log_tail"])
