"""The process runtime end to end: replica, logs, SIGKILL → restart, crash, delete."""

from __future__ import annotations

import json
import os
import signal
import threading

import httpx
import psutil

from tests.agent.helpers import Agent, replica_request, wait_for, wait_state


def test_process_replica_lifecycle(agent: Agent, client: httpx.Client, bundle: str) -> None:
    resp = client.post("/v1/replicas", json=replica_request("process", bundle))
    assert resp.status_code == 201, resp.text
    info = resp.json()
    rid, pid = info["id"], info["pid"]
    assert info["state"] == "starting" and info["url"].startswith("http://127.0.0.1:")
    meta = json.loads((agent.home / "replicas" / f"{rid}.json").read_text())
    assert meta["pid"] == pid and meta["request"]["artifact"] == bundle
    ready = wait_state(client, rid, ["ready"], 60)
    answer = httpx.post(ready["url"] + "/", json={"x": 1}).json()
    assert answer["echo"] == {"x": 1} and answer["six"] and answer["built"] is True

    proc = psutil.Process(pid)
    assert proc.cwd() == str(agent.home / "bundles" / bundle / "project")
    assert os.getpgid(pid) == pid  # own session: survives the agent
    env = proc.environ()
    assert "CUDA_VISIBLE_DEVICES" not in env
    assert agent.config["token"] not in json.dumps(env)

    logs = client.get(f"/v1/replicas/{rid}/logs", params={"tail": 5})
    assert logs.status_code == 200 and logs.headers["content-type"].startswith("text/plain")
    assert 0 < len(logs.text.splitlines()) <= 5

    # SIGKILL the replica: reported failed, restarted, ready again
    os.kill(pid, signal.SIGKILL)
    failed = wait_state(client, rid, ["failed"], 20)
    assert "killed" in failed["message"]
    again = wait_state(client, rid, ["ready"], 60)
    assert again["restarts"] >= 1 and again["pid"] != pid
    assert httpx.post(again["url"] + "/", json=3).json()["echo"] == 3
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() != psutil.STATUS_ZOMBIE

    new_pid = again["pid"]
    assert client.delete(f"/v1/replicas/{rid}").status_code == 204
    assert client.get(f"/v1/replicas/{rid}").status_code == 404
    assert not psutil.pid_exists(new_pid)
    assert not list((agent.home / "replicas").glob(f"{rid}.*"))


def test_logs_follow_streams_new_output(client: httpx.Client, bundle: str) -> None:
    info = client.post("/v1/replicas", json=replica_request("process", bundle)).json()
    ready = wait_state(client, info["id"], ["ready"], 60)
    seen: list[str] = []

    def follow() -> None:
        with client.stream(
            "GET", f"/v1/replicas/{info['id']}/logs", params={"follow": "true", "tail": 0}
        ) as resp:
            assert resp.status_code == 200
            for chunk in resp.iter_text():
                seen.append(chunk)
                if "predict called" in "".join(seen):
                    return

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    wait_for(
        lambda: (
            httpx.post(ready["url"] + "/", json=1).status_code == 200 and (t.join(0.5) or not t.is_alive())
        ),
        20,
        "the followed log to show the request",
    )
    assert "predict called" in "".join(seen)


def test_crash_at_import_is_failed_with_log_tail(client: httpx.Client, bundle: str) -> None:
    rid = client.post(
        "/v1/replicas", json=replica_request("process", bundle, env={"WB_TEST_CRASH": "1"})
    ).json()["id"]
    failed = wait_state(client, rid, ["failed"], 30)
    assert "predictor failed to load" in failed["message"]
    assert "boom-at-import" in "\n".join(failed["log_tail"])


def test_gpu_ids_become_cuda_visible_devices(client: httpx.Client, bundle: str) -> None:
    body = replica_request("process", bundle)
    body["gpu_ids"] = ["1", "0"]
    info = client.post("/v1/replicas", json=body).json()
    assert psutil.Process(info["pid"]).environ()["CUDA_VISIBLE_DEVICES"] == "1,0"


STAMPED = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z "


def test_logs_carry_their_time_and_select_by_it(client: httpx.Client, bundle: str) -> None:
    """Each line of a process replica's log has the time it was written: shown with timestamps,
    chosen with since, and never shown without timestamps (the log reads as the replica wrote it)."""
    import re
    import time

    rid = client.post("/v1/replicas", json=replica_request("process", bundle)).json()["id"]
    ready = wait_state(client, rid, ["ready"], 60)
    before = time.time()
    time.sleep(0.05)
    httpx.post(ready["url"] + "/", json=1)
    plain = client.get(f"/v1/replicas/{rid}/logs", params={"tail": 100}).text.splitlines()
    stamped = client.get(f"/v1/replicas/{rid}/logs", params={"tail": 100, "timestamps": "true"}).text
    assert plain and "predict called" in plain
    assert not any(re.match(STAMPED, line) for line in plain)
    lines = stamped.splitlines()
    assert len(lines) == len(plain) and all(re.match(STAMPED, line) for line in lines)
    assert [line.split(" ", 1)[1] for line in lines] == plain
    recent = client.get(f"/v1/replicas/{rid}/logs", params={"since": repr(before)}).text.splitlines()
    assert recent == ["predict called"]
    future = client.get(f"/v1/replicas/{rid}/logs", params={"since": repr(time.time() + 60)})
    assert future.status_code == 200 and future.text == ""
    with client.stream("GET", f"/v1/replicas/{rid}/logs",
                       params={"follow": "true", "tail": 0, "timestamps": "true"}) as stream:
        chunks = stream.iter_text()
        httpx.post(ready["url"] + "/", json=2)
        seen = ""
        while "predict called" not in seen:
            seen += next(chunks)
    assert re.match(STAMPED + "predict called", seen)


def test_a_failed_run_reports_its_own_output_only(client: httpx.Client, bundle: str) -> None:
    """After restarts, a failed replica's log tail is its last run's, whole: not the previous
    runs' tracebacks with the first one cut."""
    rid = client.post(
        "/v1/replicas", json=replica_request("process", bundle, env={"WB_TEST_CRASH": "1"})
    ).json()["id"]
    failed = wait_for(lambda: (info := client.get(f"/v1/replicas/{rid}").json())["restarts"] >= 2
                      and info["state"] == "failed" and info, 60, "a second restart that fails too")
    whole = client.get(f"/v1/replicas/{rid}/logs", params={"tail": 1000}).text
    assert whole.count("Traceback (most recent call last)") >= 2  # every run is in the log
    tail = failed["log_tail"]
    assert sum("Traceback (most recent call last)" in line for line in tail) == 1, tail
    assert sum("boom-at-import" in line for line in tail) >= 1
    assert tail[-1].startswith("workbench: predictor failed to load")
