"""Deploys through a real controller: routing, no-op redeploys, rolling updates, failures, scale, delete."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.controller.helpers import Controller, Load, make_project, pids_of
from tests.support.real_parts import wait_until


def spec(name: str = "echo", replicas: int = 1, tag: str = "v1", extra: str = "") -> str:
    return (f"name: {name}\nruntime: process\nreplicas: {replicas}\n"
            "compute: {cpu: 0.1, mem: 64Mi}\n"
            "serving: {max_concurrency: 8, graceful_shutdown: 5, startup_timeout: 60}\n"
            f"predictor: {{config: {{tag: {tag}}}}}\n{extra}")


def test_deploy_routes_redeploy_is_noop_scale_and_delete(controller: Controller, tmp_path: Path) -> None:
    project = make_project(tmp_path, spec())
    events = controller.deploy(project)
    assert events[-1]["kind"] == "done", events
    (result,) = events[-1]["results"]
    assert result["built"] and not result["unchanged"] and result["endpoint"] == f"{controller.url}/echo"
    assert any(e["kind"] == "build" for e in events) and any(e["kind"] == "rollout" for e in events)
    response = controller.predict("echo", {"hi": 1})
    assert response.status_code == 200 and response.json()["echo"] == {"hi": 1}
    before = {r["id"] for r in controller.agent_replicas("echo")}

    again = controller.deploy(project)
    assert again[-1]["kind"] == "done"
    assert again[-1]["results"][0]["unchanged"] and not again[-1]["results"][0]["built"]
    assert {r["id"] for r in controller.agent_replicas("echo")} == before

    scaled = controller.api("POST", "/v1/apis/echo/scale", json={"replicas": 2})
    assert scaled.status_code == 200, scaled.text
    assert scaled.json()["replicas"]["requested"] == 2
    controller.wait_ready("echo", 2)
    kinds = [e["kind"] for e in controller.detail("echo")["events"]]
    assert "scale" in kinds and "deploy" in kinds

    deleted = controller.api("DELETE", "/v1/apis/echo")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"name": "echo", "deleted_replicas": 2}
    assert controller.api("GET", "/v1/apis/echo").status_code == 404
    assert controller.predict("echo", {}).status_code == 404
    wait_until(lambda: controller.agent_replicas() == [], 30, what="replicas removed")
    wait_until(lambda: pids_of(controller.bench) == [], 30, what="replica processes gone")


def test_rolling_update_under_load_has_no_failed_requests(controller: Controller, tmp_path: Path) -> None:
    project = make_project(tmp_path, spec(replicas=2))
    assert controller.deploy(project)[-1]["kind"] == "done"
    old = {r["id"] for r in controller.agent_replicas("echo")}
    (project / "workbench.yaml").write_text(spec(replicas=2, tag="v2"))
    with Load(f"{controller.url}/echo", clients=4) as load:
        events = controller.deploy(project)
    assert events[-1]["kind"] == "done", events
    assert events[-1]["results"][0]["replaced"] == 2
    assert load.failures == [] and load.ok > 0, load.failures[:5]
    detail = controller.wait_ready("echo", 2)
    assert all(r["up_to_date"] for r in detail["replica_list"])
    wait_until(lambda: len(controller.agent_replicas("echo")) == 2, 30, what="old replicas removed")
    assert not old & {r["id"] for r in controller.agent_replicas("echo")}
    assert controller.predict("echo", 1).json()["tag"] == "v2"


def test_failed_rollout_keeps_the_old_version_and_reverts(controller: Controller, tmp_path: Path) -> None:
    project = make_project(tmp_path, spec(replicas=2))
    assert controller.deploy(project)[-1]["kind"] == "done"
    good = controller.detail("echo")
    crashing = spec(replicas=2, tag="v2").replace("tag: v2", "tag: v2, crash: true")
    (project / "workbench.yaml").write_text(crashing)
    with Load(f"{controller.url}/echo", clients=2) as load:
        events = controller.deploy(project)
    last = events[-1]
    assert last["kind"] == "error", events
    assert "failed to start" in last["message"] and "previous version keeps serving" in last["message"]
    assert any("boom" in line for line in last["log_tail"]), last["log_tail"]
    assert load.failures == [], load.failures[:5]
    detail = controller.detail("echo")
    assert detail["spec_hash"] == good["spec_hash"]
    assert controller.predict("echo", 1).json()["tag"] == "v1"
    wait_until(lambda: {r["spec_hash"] for r in controller.agent_replicas("echo")} == {good["spec_hash"]}
               and len(controller.agent_replicas("echo")) == 2, 30, what="failed replicas removed")
    assert any(e["kind"] == "rollout" and "failed" in e["message"] for e in detail["events"])


def test_failed_first_deploy_leaves_nothing(controller: Controller, tmp_path: Path) -> None:
    project = make_project(tmp_path, spec(tag="x").replace("tag: x", "tag: x, crash: true"))
    events = controller.deploy(project)
    assert events[-1]["kind"] == "error" and "nothing was deployed" in events[-1]["message"]
    assert controller.api("GET", "/v1/apis").json() == []
    wait_until(lambda: controller.agent_replicas() == [], 30, what="failed replica removed")


def test_traffic_splitter_routes_to_its_apis(controller: Controller, tmp_path: Path) -> None:
    body = ("- " + spec("blue", tag="blue").replace("\n", "\n  ").rstrip() + "\n"
            "- kind: traffic_splitter\n  name: split\n  apis:\n    - {name: blue, weight: 100}\n")
    project = make_project(tmp_path, body)
    events = controller.deploy(project)
    assert events[-1]["kind"] == "done", events
    kinds = {r["name"]: r["kind"] for r in events[-1]["results"]}
    assert kinds == {"blue": "api", "split": "traffic_splitter"}
    assert controller.predict("split", 1).json()["tag"] == "blue"
    assert controller.api("DELETE", "/v1/apis/blue").status_code == 409
    assert controller.api("DELETE", "/v1/apis/split").status_code == 200
    assert controller.api("DELETE", "/v1/apis/blue").status_code == 200


def test_second_controller_on_the_same_home_is_refused(controller: Controller) -> None:
    second = Controller(controller.bench)
    process = second.spawn()
    assert process.wait(timeout=30) == 1
    text = second.output()
    assert f"another controller is running (pid {controller.process.pid} on port {controller.port})" in text  # type: ignore[union-attr]


def test_sigterm_exits_zero_and_replicas_keep_running(controller: Controller, tmp_path: Path) -> None:
    assert controller.deploy(make_project(tmp_path, spec()))[-1]["kind"] == "done"
    assert controller.signal(signal.SIGTERM) == 0
    assert len(controller.agent_replicas("echo")) == 1
    assert not (controller.home / "controller.json").exists()
    controller.start()
    controller.wait_ready("echo", 1)
    assert len(controller.agent_replicas("echo")) == 1


def test_bad_port_and_bad_env_are_clear_errors(controller: Controller) -> None:
    env = dict(controller.env, WORKBENCH_HOME=str(controller.bench.home / "other"), WORKBENCH_PORT="nope")
    result = subprocess.run([sys.executable, "-m", "workbench.controller", "serve"], env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "WORKBENCH_PORT" in result.stderr
    env["WORKBENCH_PORT"] = str(controller.port)
    result = subprocess.run([sys.executable, "-m", "workbench.controller", "serve"], env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert str(controller.port) in result.stderr and "WORKBENCH_PORT" in result.stderr
    assert httpx.get(f"{controller.url}/healthz").json()["ok"] is True
