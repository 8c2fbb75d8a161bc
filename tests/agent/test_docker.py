"""The Docker runtime end to end: build, replica, logs, kill → restart, delete."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from tests.agent.helpers import Agent, containers_of, read_events, replica_request, wait_state
from tests.support.base_image import BOOTSTRAPPED, PULLED, available_base_image, built_from

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_required")]


def test_build_streams_steps_then_is_cached(
    client: httpx.Client, docker_image: tuple[str, list[dict[str, object]]]
) -> None:
    tag, events = docker_image
    kinds = [e["kind"] for e in events]
    assert kinds.count("done") == 1 and kinds[-1] == "done" and "error" not in kinds
    steps = [e for e in events if e["kind"] == "step"]
    assert steps and steps[0]["step"] == 1 and steps[0]["total_steps"] >= 5
    # the base: python:3.11-slim where setup pulled it; else the agent fell back to the
    # bootstrapped image and said so once. Either way the image really is FROM it.
    base = available_base_image()
    notes = [e["message"] for e in events if "using the bootstrapped base image" in str(e.get("message"))]
    if base == PULLED:
        assert notes == [], notes
    else:
        assert base == BOOTSTRAPPED and len(notes) == 1, notes
        assert f"cannot pull {PULLED}" in notes[0] and BOOTSTRAPPED in notes[0]
    assert built_from(tag, base)
    assert client.get("/v1/artifacts", params={"runtime": "docker", "name": tag}).json() == {"exists": True}
    _, tar = __import__("tests.agent.helpers", fromlist=["x"]).docker_context()
    again = read_events(client.post("/v1/builds", params={"runtime": "docker", "artifact": tag}, content=tar))
    assert again == [{"kind": "done", "message": "image exists", "artifact": tag, "cached": True}]


def test_build_error_is_one_error_event(client: httpx.Client) -> None:
    from tests.agent.helpers import make_tar

    tar = make_tar({"Dockerfile": f"FROM {available_base_image()}\nRUN exit 7\n".encode()})
    resp = client.post("/v1/builds", params={"runtime": "docker", "artifact": "wb-test/fails:1"}, content=tar)
    events = read_events(resp)
    assert events[-1]["kind"] == "error" and "7" in events[-1]["message"]
    assert [e["kind"] for e in events].count("error") == 1
    missing = client.get("/v1/artifacts", params={"runtime": "docker", "name": "wb-test/fails:1"})
    assert missing.status_code == 404


def test_docker_replica_lifecycle(
    agent: Agent, client: httpx.Client, docker_image: tuple[str, list[dict[str, object]]]
) -> None:
    tag, _ = docker_image
    resp = client.post("/v1/replicas", json=replica_request("docker", tag))
    assert resp.status_code == 201, resp.text
    info = resp.json()
    rid = info["id"]
    assert info["state"] == "starting" and info["container_id"]
    assert info["url"].startswith("http://127.0.0.1:")
    ready = wait_state(client, rid, ["ready"], 120)
    answer = httpx.post(ready["url"] + "/", json={"x": 1})
    assert answer.status_code == 200 and answer.json()["echo"] == {"x": 1}

    attrs = subprocess.run(
        ["docker", "inspect", "-f", "{{json .HostConfig.PortBindings}} {{.Name}}", info["container_id"]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert '"HostIp":"127.0.0.1"' in attrs and f"wb-echo-{rid}" in attrs
    assert [r["id"] for r in client.get("/v1/replicas", params={"api": "echo"}).json()] == [rid]
    assert client.get("/v1/replicas", params={"api": "other"}).json() == []

    logs = client.get(f"/v1/replicas/{rid}/logs", params={"tail": 50})
    assert logs.status_code == 200 and "predict called" in logs.text
    with client.stream("GET", f"/v1/replicas/{rid}/logs", params={"follow": "true", "tail": 1}) as stream:
        chunks = stream.iter_text()
        assert next(chunks)  # the tail line arrives at once
        httpx.post(ready["url"] + "/", json={"x": 2})
        seen = ""
        while "predict called" not in seen:
            seen += next(chunks)

    # docker kill: reported failed, then restarted by the agent and ready again
    subprocess.run(["docker", "kill", info["container_id"]], check=True, capture_output=True)
    failed = wait_state(client, rid, ["failed"], 30)
    assert "137" in failed["message"] or "killed" in failed["message"]
    again = wait_state(client, rid, ["ready"], 120)
    assert again["restarts"] >= 1
    assert httpx.post(again["url"] + "/", json=2).json()["echo"] == 2

    assert client.delete(f"/v1/replicas/{rid}", params={"grace": 1}).status_code == 204
    assert client.get(f"/v1/replicas/{rid}").status_code == 404
    assert containers_of(agent) == []


def test_docker_predictor_crash_is_failed_with_log_tail(
    client: httpx.Client, docker_image: tuple[str, list[dict[str, object]]]
) -> None:
    tag, _ = docker_image
    rid = client.post("/v1/replicas", json=replica_request("docker", tag, env={"WB_TEST_CRASH": "1"})).json()[
        "id"
    ]
    failed = wait_state(client, rid, ["failed"], 60)
    assert "boom-at-import" in "\n".join(failed["log_tail"])
    assert "predictor failed to load" in failed["message"]


def test_docker_logs_carry_their_time_and_select_by_it(
    client: httpx.Client, docker_image: tuple[str, list[dict[str, object]]]
) -> None:
    import re
    import time

    tag, _ = docker_image
    rid = client.post("/v1/replicas", json=replica_request("docker", tag)).json()["id"]
    ready = wait_state(client, rid, ["ready"], 120)
    time.sleep(1.1)  # Docker's clock and ours agree to the second
    before = time.time()
    httpx.post(ready["url"] + "/", json=1)
    stamped = client.get(f"/v1/replicas/{rid}/logs", params={"tail": 100, "timestamps": "true"}).text
    assert all(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z ", line) for line in stamped.splitlines())
    recent = client.get(f"/v1/replicas/{rid}/logs", params={"since": repr(before)}).text
    assert "predict called" in recent and "serving" not in recent
    future = client.get(f"/v1/replicas/{rid}/logs", params={"since": repr(time.time() + 60)})
    assert future.status_code == 200 and future.text == ""
