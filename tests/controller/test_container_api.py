"""Container APIs through a real controller and agent: someone else's server from its own Dockerfile
deployed, routed, listed, scaled, rolled to a new image, kept serving when the next image is broken;
the same server as a process-runtime command; an image the host has; and each bad input refused
with a clear error and nothing deployed."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.controller.helpers import Controller, Load
from tests.support.base_image import available_base_image
from tests.support.echo_server import server_project
from tests.support.real_parts import Workbench, require_docker, wait_until

pytestmark = pytest.mark.docker

@pytest.fixture(scope="module")
def ctl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Controller]:
    """One controller (and agent) for the module, on a host with two simulated GPUs; each test
    deletes what it deployed. The images the deploys built (workbench/ctr*) are removed at the end."""
    require_docker()
    root = tmp_path_factory.mktemp("containers")
    gpus = [{"index": i, "name": "NVIDIA A100-SXM4-80GB", "uuid": f"GPU-ctr-{i}",
             "memory_total_bytes": 80 * 2**30, "memory_used_bytes": 0, "memory_free_bytes": 80 * 2**30}
            for i in range(2)]
    fixture = {"driver_version": "550.54.15", "gpus": gpus, "motion": False}
    (root / "gpus.json").write_text(json.dumps(fixture))
    bench = Workbench.create(root / "home")
    bench.env["WORKBENCH_FAKE_GPUS"] = str(root / "gpus.json")  # the controller's agent inherits it
    controller = Controller(bench)
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()
        bench.cleanup()
        images = subprocess.run(["docker", "images", "-q", "--filter", "reference=workbench/ctr*"],
                                capture_output=True, text=True, check=False).stdout.split()
        if images:
            subprocess.run(["docker", "rmi", "-f", *set(images)], capture_output=True, check=False)


def delete(ctl: Controller, name: str) -> None:
    assert ctl.api("DELETE", f"/v1/apis/{name}").status_code == 200
    wait_until(lambda: ctl.agent_replicas(name) == [], 60, what=f"the replicas of {name} removed")


def dockerfile_spec(name: str = "ctr", replicas: int = 1, startup_timeout: int = 60) -> str:
    return (f"name: {name}\nruntime: docker\nreplicas: {replicas}\n"
            "container:\n  build: Dockerfile\n  port: 8080\n  health: /health\n  env: {TAG: one}\n"
            f"  startup_timeout: {startup_timeout}\n"
            "serving: {graceful_shutdown: 1}\nupdate: {max_surge: 1, max_unavailable: 0}\n")


def test_a_dockerfile_api_serves_scales_rolls_and_outlives_a_broken_image(ctl: Controller,
                                                                          tmp_path: Path) -> None:
    project = server_project(tmp_path / "ctr", dockerfile_spec())
    events = ctl.deploy(project)
    assert events[-1]["kind"] == "done", events
    (result,) = events[-1]["results"]
    assert result["built"] and result["runtime"] == "docker"
    assert result["artifact"].startswith("workbench/ctr:")
    assert any(e["kind"] == "build" and e["build"]["kind"] == "step" for e in events)

    # /<api> reaches the server's /, /<api>/<path> its /<path>; a chunked answer passes through
    root = httpx.post(f"{ctl.url}/ctr", content=b"payload", timeout=30).json()
    assert (root["path"], root["method"], root["body"], root["tag"], root["version"]) == (
        "/", "POST", "payload", "one", "v1")
    assert root["port_env"] == "8080"
    assert httpx.get(f"{ctl.url}/ctr/echo/models?x=1", timeout=30).json()["path"] == "/echo/models?x=1"
    assert httpx.get(f"{ctl.url}/ctr/readyz", timeout=30).status_code == 404  # the server's own answer
    assert httpx.get(f"{ctl.url}/ctr/chunks", timeout=30).text == "chunk 0\nchunk 1\nchunk 2\n"

    listed = ctl.bench.run("get").stdout
    row = next(line for line in listed.splitlines() if line.startswith("ctr "))
    assert row.split()[:6] == ["ctr", "live", "1", "1", "1", "0"], listed
    detail = ctl.bench.run("get", "ctr").stdout
    assert "runtime=docker" in detail and "ready" in detail, detail

    again = ctl.deploy(project)[-1]
    assert again["results"][0]["unchanged"] and not again["results"][0]["built"]

    assert ctl.api("POST", "/v1/apis/ctr/scale", json={"replicas": 2}).status_code == 200
    ctl.wait_ready("ctr", 2)

    # a changed image rolls out under load without a failed request
    (project / "version.txt").write_text("v2\n")
    (project / "workbench.yaml").write_text(dockerfile_spec(replicas=2))
    with Load(f"{ctl.url}/ctr", clients=2) as load:
        rolled = ctl.deploy(project)
    assert rolled[-1]["kind"] == "done", rolled[-3:]
    assert rolled[-1]["results"][0]["built"] and rolled[-1]["results"][0]["replaced"] == 2
    assert load.failures == [] and load.ok > 0, load.failures[:3]
    good = ctl.wait_ready("ctr", 2)
    assert httpx.post(f"{ctl.url}/ctr", timeout=30).json()["version"] == "v2"

    # a new image whose server never turns healthy: the rollout fails, v2 keeps serving
    (project / "Dockerfile").write_text((project / "Dockerfile").read_text() + "ENV MODE=sick\n")
    (project / "workbench.yaml").write_text(dockerfile_spec(replicas=2, startup_timeout=4))
    with Load(f"{ctl.url}/ctr", clients=2) as load:
        broken = ctl.deploy(project)
    last = broken[-1]
    assert last["kind"] == "error", broken[-3:]
    assert "not healthy after startup_timeout (4s): GET /health on port 8080 got HTTP 503" in last["message"]
    assert "previous version keeps serving" in last["message"] and "Fix the server" in last["message"]
    assert "listening on port 8080" in last["log_tail"], last["log_tail"]
    progress = [e["message"] for e in broken if e["kind"] == "rollout"]
    assert any("(starting: listening on port 8080)" in line for line in progress), progress
    assert load.failures == [] and load.ok > 0, load.failures[:3]
    assert ctl.detail("ctr")["spec_hash"] == good["spec_hash"]
    assert httpx.post(f"{ctl.url}/ctr", timeout=30).json()["version"] == "v2"
    wait_until(lambda: {r["spec_hash"] for r in ctl.agent_replicas("ctr")} == {good["spec_hash"]}, 60,
               what="the broken replicas removed")
    delete(ctl, "ctr")


def test_the_same_server_as_a_process_api(ctl: Controller, tmp_path: Path) -> None:
    project = server_project(tmp_path / "ctr-proc", "name: ctr-proc\nruntime: process\n"
                             "container: {command: [python, echo_server.py], env: {TAG: proc}}\n")
    events = ctl.deploy(project)
    assert events[-1]["kind"] == "done", events[-3:]
    assert events[-1]["results"][0]["runtime"] == "process"
    answer = httpx.post(f"{ctl.url}/ctr-proc/hello", timeout=30).json()
    (replica,) = ctl.agent_replicas("ctr-proc")
    assert answer["path"] == "/hello" and answer["tag"] == "proc" and answer["pid"] == replica["pid"]
    assert answer["port_env"] == replica["url"].rsplit(":", 1)[1]
    row = next(line for line in ctl.bench.run("get").stdout.splitlines() if line.startswith("ctr-proc "))
    assert row.split()[:2] == ["ctr-proc", "live"]
    delete(ctl, "ctr-proc")


def test_an_image_the_host_has_runs_as_it_is(ctl: Controller, tmp_path: Path) -> None:
    base = available_base_image()  # the Python image scripts/setup left here, pulled or bootstrapped
    folder = tmp_path / "ctr-image"
    folder.mkdir()
    (folder / "workbench.yaml").write_text(
        f"name: ctr-image\ncontainer:\n  image: {base}\n"
        "  command: [python3, -m, http.server, $PORT, --bind, 0.0.0.0]\n  port: 8000\n  health: /\n"
        "serving: {graceful_shutdown: 1}\n")  # http.server as PID 1 ignores SIGTERM
    events = ctl.deploy(folder)
    assert events[-1]["kind"] == "done", events[-3:]
    (result,) = events[-1]["results"]
    assert result["artifact"] == base and not result["built"] and result["runtime"] == "docker"
    assert any(f"image {base} is present (sha256:" in e["message"] for e in events if e["kind"] == "log")
    listing = httpx.get(f"{ctl.url}/ctr-image/", timeout=30)
    assert listing.status_code == 200 and "Directory listing" in listing.text
    delete(ctl, "ctr-image")


def test_gpus_are_pinned_as_for_predictors(ctl: Controller, tmp_path: Path) -> None:
    """compute.gpu: a container gets its GPU as a DeviceRequest (recorded in a label on this
    simulated host, which has no NVIDIA runtime), a process its CUDA_VISIBLE_DEVICES."""
    import docker

    project = server_project(tmp_path / "ctr-gpu", "name: ctr-gpu\nruntime: docker\ncompute: {gpu: 1}\n"
                             "container: {build: Dockerfile}\nserving: {graceful_shutdown: 1}\n")
    assert ctl.deploy(project)[-1]["kind"] == "done"
    [replica] = ctl.wait_ready("ctr-gpu", 1)["replica_list"]
    [gpu] = replica["gpu_ids"]
    [info] = ctl.agent_replicas("ctr-gpu")
    client = docker.from_env()
    try:
        container = client.containers.get(info["container_id"])
        request = json.loads(container.labels["workbench.gpu-device-request"])
        env = dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])
    finally:
        client.close()
    assert request["DeviceIDs"] == [gpu] and request["Capabilities"] == [["gpu"]]
    assert env["NVIDIA_VISIBLE_DEVICES"] == gpu and env["PORT"] == "8080"

    (project / "workbench.yaml").write_text("name: ctr-gpu\nruntime: process\ncompute: {gpu: 1}\n"
                                            "container: {command: [python, echo_server.py]}\n")
    assert ctl.deploy(project)[-1]["kind"] == "done"
    [replica] = ctl.wait_ready("ctr-gpu", 1)["replica_list"]
    assert httpx.post(f"{ctl.url}/ctr-gpu", timeout=30).json()["cuda"] == replica["gpu_ids"][0]
    delete(ctl, "ctr-gpu")


def test_bad_container_apis_are_refused_and_nothing_is_deployed(ctl: Controller, tmp_path: Path) -> None:
    def refused(text: str, name: str) -> list[str]:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "workbench.yaml").write_text(text)
        response = ctl.api("POST", "/v1/deployments", json={"path": str(folder)})
        assert response.status_code == 400, response.text
        return list(response.json()["problems"])

    [missing] = refused("name: ctr-a\ncontainer: {build: Dockerfile.gpu}\n", "a")
    assert missing.endswith(":2: container.build: Dockerfile Dockerfile.gpu not found in "
                            f"{(tmp_path / 'a').resolve()}")
    [both] = refused("name: ctr-b\npredictor: {}\ncontainer: {image: x}\n", "b")
    assert "container: set either predictor or container, not both" in both

    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "workbench.yaml").write_text("name: ctr-c\ncontainer: {image: 'workbench-test/no-such:1'}\n")
    pulled = ctl.deploy(folder)[-1]
    assert pulled["kind"] == "error"
    assert pulled["message"].startswith(
        "ctr-c: the pull of image workbench-test/no-such:1 on local failed: "
        "workbench-test/no-such:1 is not on this host and cannot be pulled"), pulled
    process = ctl.deploy(folder, runtime="process")[-1]
    assert process["kind"] == "error" and "container.command" in process["message"], process
    assert ctl.api("GET", "/v1/apis").json() == []


def test_a_first_deploy_that_fails_prints_its_reason_and_log_once(ctl: Controller, tmp_path: Path) -> None:
    project = server_project(tmp_path / "ctr-fail", dockerfile_spec("ctr-fail").replace(
        "{TAG: one}", "{MODE: exit}"))
    result = ctl.bench.run("deploy", str(project), check=False)
    assert result.returncode == 1, result
    assert "failed to start: exited with code 1; nothing was deployed" in result.stderr, result.stderr
    # the wait may show the log's last line as progress; the log itself is printed once
    assert result.stderr.count("│ boom: this server refuses to start") == 1, result.stderr

    elsewhere = dockerfile_spec("ctr-fail").replace("{TAG: one}", "{MODE: elsewhere}")
    (project / "workbench.yaml").write_text(elsewhere)
    result = ctl.bench.run("deploy", str(project), check=False)
    assert result.returncode == 1
    assert "the server listens on port 8081, not on port 8080 (container.port)" in result.stderr, \
        result.stderr
    assert ctl.api("GET", "/v1/apis").json() == []
    wait_until(lambda: ctl.agent_replicas() == [], 60, what="the failed replicas removed")
