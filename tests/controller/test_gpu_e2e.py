"""GPU awareness end to end ON THE GPU SIMULATOR (no GPU here): a real controller whose local agent
sees a simulated 4-GPU host (the fixture, WORKBENCH_FAKE_GPUS), process replicas pinned one GPU
each, telemetry mapping each GPU's process to its replica, pending with a reason when the GPUs run
out, fractional sharing, and a Docker replica with the env/labels (and the recorded DeviceRequest) a
real GPU host would give it. What is simulated: the GPUs' values and the load they show (they follow
the agent's allocations). What is real: scheduling, pinning, the replicas' environment, and the
processes on each GPU, which the simulator finds in /proc as NVML would (by the GPU ids in their
environment); mapping their PIDs to replicas is the agent's own code, as on a real GPU host."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.controller.helpers import EXAMPLES, Controller, make_project
from tests.support.real_parts import Workbench, require_docker, wait_until

GIB = 1024**3

#: Answers with the GPU environment the replica was started with, and its PID.
GPU_PREDICTOR = '''
import os


class Predictor:
    def __init__(self, config):
        pass

    def predict(self, payload):
        return {key: os.environ.get(key) for key in
                ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "WORKBENCH_GPU_IDS")} | {"pid": os.getpid()}
'''

#: Mixed memory and names; GPU 0 has the most free memory, so "spread" starts there.
FIXTURE = {
    "driver_version": "550.54.15",
    "nvml_version": "12.550.54.15",
    "cuda_driver_version": "12.4",
    "gpus": [
        {"index": 0, "uuid": "GPU-sim-0", "name": "NVIDIA A100-SXM4-80GB", "memory_total_bytes": 80 * GIB,
         "memory_used_bytes": 0, "memory_free_bytes": 80 * GIB, "utilization_gpu": 0, "temperature_c": 34,
         "power_draw_w": 55, "power_limit_w": 400},
        {"index": 1, "uuid": "GPU-sim-1", "name": "NVIDIA A100-SXM4-40GB", "memory_total_bytes": 40 * GIB,
         "memory_used_bytes": 0, "memory_free_bytes": 40 * GIB, "utilization_gpu": 0, "temperature_c": 33,
         "power_draw_w": 50, "power_limit_w": 400},
        {"index": 2, "uuid": "GPU-sim-2", "name": "Tesla T4", "memory_total_bytes": 16 * GIB,
         "memory_used_bytes": 0, "memory_free_bytes": 16 * GIB, "utilization_gpu": 0, "temperature_c": 30,
         "power_draw_w": 20, "power_limit_w": 70},
        {"index": 3, "uuid": "GPU-sim-3", "name": "Tesla T4", "memory_total_bytes": 16 * GIB,
         "memory_used_bytes": 0, "memory_free_bytes": 16 * GIB, "utilization_gpu": 0, "temperature_c": 31,
         "power_draw_w": 21, "power_limit_w": 70},
    ],
}


@pytest.fixture
def gpu_controller(workbench: Workbench, tmp_path: Path) -> Iterator[Controller]:
    path = tmp_path / "gpus.json"
    path.write_text(json.dumps(FIXTURE))
    workbench.env["WORKBENCH_FAKE_GPUS"] = str(path)  # the controller's local agent inherits it
    ctl = Controller(workbench)
    ctl.start()
    try:
        yield ctl
    finally:
        ctl.stop()  # the workbench fixture then removes the agent, replica processes and containers


def gpu_project(root: Path, name: str, gpu: float, replicas: int, runtime: str = "process") -> Path:
    folder = make_project(root, f"name: {name}\nruntime: {runtime}\nreplicas: {replicas}\n"
                                f"compute: {{cpu: 0.1, mem: 64Mi, gpu: {gpu}}}\n", name=name)
    (folder / "predictor.py").write_text(GPU_PREDICTOR)
    return folder


def report(ctl: Controller) -> dict[str, Any]:
    response = ctl.api("GET", "/v1/hosts/local/gpus", params={"history": "true"})
    assert response.status_code == 200, response.text
    return dict(response.json())


def ask(url: str) -> dict[str, Any]:
    response = httpx.post(url, json={}, timeout=30)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_simulator_pinning_telemetry_pending_and_sharing(gpu_controller: Controller, tmp_path: Path) -> None:
    ctl = gpu_controller
    events = ctl.deploy(gpu_project(tmp_path, "gpus", gpu=1, replicas=3))
    assert events[-1]["kind"] == "done", events[-3:]
    detail = ctl.wait_ready("gpus", 3)

    # each replica has its own GPU, and sees exactly it
    replicas = {r["id"]: r for r in detail["replica_list"]}
    pinned = {rid: r["gpu_ids"] for rid, r in replicas.items()}
    assert all(len(ids) == 1 for ids in pinned.values()), pinned
    assert len({ids[0] for ids in pinned.values()}) == 3, pinned
    assert all(r["gpu_share"] is None for r in replicas.values())
    pid_of: dict[str, int] = {}
    for rid, r in replicas.items():
        answer = ask(r["url"] + "/")
        gpu_id = pinned[rid][0]
        assert answer["CUDA_VISIBLE_DEVICES"] == gpu_id and answer["WORKBENCH_GPU_IDS"] == gpu_id
        assert answer["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
        pid_of[rid] = answer["pid"]

    # telemetry maps each GPU's process (found in /proc) back to its replica; nobody wrote PIDs
    def mapped() -> dict[str, Any] | None:
        rep = report(ctl)
        on = {str(g["index"]): g for g in rep["gpus"]}
        ok = all(any(p["replica_id"] == rid for p in on[ids[0]]["processes"]) for rid, ids in pinned.items())
        return rep if ok else None

    rep = wait_until(mapped, 15, interval=0.5, what="each GPU's process mapped to its replica")
    assert rep["source"] == "fixture" and "SIMULATED" in rep["note"]
    for g in rep["gpus"]:
        owners = [p["replica_id"] for p in g["processes"]]
        expected = [rid for rid, ids in pinned.items() if ids[0] == str(g["index"])]
        assert owners == expected, (g["index"], owners, expected)
        assert g["allocated_to"] == expected
        if expected:
            [proc] = g["processes"]
            assert proc["api"] == "gpus" and proc["pid"] > 0
            assert g["utilization_gpu"] > 50 and g["memory_used_bytes"] > 0  # load follows the replica
        else:
            assert g["utilization_gpu"] < 20
    # the PID on each GPU is the replica's own (os.getpid() inside it), and the agent's record agrees
    agent_pids = {r["id"]: r["pid"] for r in ctl.agent_replicas("gpus")}
    for g in rep["gpus"]:
        for p in g["processes"]:
            assert p["pid"] == pid_of[p["replica_id"]] == agent_pids[p["replica_id"]]
    assert all(len(samples) >= 1 for samples in rep["history"].values())

    # the CLI shows it
    got = json.loads(ctl.bench.run("get", "gpus", "--json").stdout)
    assert {r["id"]: r["gpu_ids"] for r in got["replica_list"]} == pinned
    shown = ctl.bench.run("host", "show", "local").stdout
    assert "SIMULATED" in shown and "Tesla T4" in shown
    for rid in pinned:
        assert f"gpus/{rid}" in shown
    table = ctl.bench.run("get", "gpus").stdout
    assert "GPUS" in table and all(ids[0] in table for ids in pinned.values())

    # scaling to 5: four run (one per GPU), and the API says why the fifth waits
    scaled = ctl.api("POST", "/v1/apis/gpus/scale", json={"replicas": 5})
    assert scaled.status_code == 200, scaled.text

    seen: list[dict[str, Any]] = []

    def pending() -> dict[str, Any] | None:
        d = ctl.detail("gpus")
        seen[:] = [d]
        running = [r for r in d["replica_list"] if r["state"] == "ready"]
        message = d.get("message") or ""
        return d if len(running) == 4 and "GPUs free" in message else None

    try:
        d = wait_until(pending, 60, interval=0.5, what="4 ready replicas and a pending reason")
    except AssertionError as error:
        last = seen[0] if seen else {}
        states = [(r["state"], r["gpu_ids"], r["message"]) for r in last.get("replica_list", [])]
        raise AssertionError(f"{error}: message={last.get('message')!r} replicas={states}") from None
    assert "local" in d["message"] and "pending" in d["message"], d["message"]
    assert sorted(r["gpu_ids"][0] for r in d["replica_list"]) == ["0", "1", "2", "3"]

    # the GPUs free up when the API goes; then a fractional API shares one GPU between two replicas
    assert ctl.api("DELETE", "/v1/apis/gpus", timeout=120).status_code == 200
    wait_until(lambda: not ctl.agent_replicas("gpus"), 60, what="the gpus replicas to go")
    # 8 half-GPU replicas fill the 4 GPUs two by two (spread fills the emptiest GPU first)
    events = ctl.deploy(gpu_project(tmp_path, "halves", gpu=0.5, replicas=8))
    assert events[-1]["kind"] == "done", events[-3:]
    halves = ctl.wait_ready("halves", 8, timeout=180)["replica_list"]
    assert all(r["gpu_share"] == 0.5 and len(r["gpu_ids"]) == 1 for r in halves)
    by_gpu: dict[str, list[str]] = {}
    for r in halves:
        by_gpu.setdefault(r["gpu_ids"][0], []).append(r["id"])
        assert ask(r["url"] + "/")["CUDA_VISIBLE_DEVICES"] == r["gpu_ids"][0]
    assert {k: len(v) for k, v in by_gpu.items()} == {"0": 2, "1": 2, "2": 2, "3": 2}

    def shared() -> dict[str, Any] | None:
        rep = report(ctl)
        ok = all(sorted(p["replica_id"] for p in g["processes"]) == sorted(by_gpu[str(g["index"])])
                 for g in rep["gpus"])
        return rep if ok else None

    rep = wait_until(shared, 15, interval=0.5, what="two sharing replicas mapped on each GPU")
    for g in rep["gpus"]:
        assert g["allocated_share"] == 1.0 and sorted(g["allocated_to"]) == sorted(by_gpu[str(g["index"])])
    assert "0.5 shared" in ctl.bench.run("get", "halves").stdout
    assert ctl.api("DELETE", "/v1/apis/halves", timeout=120).status_code == 200
    wait_until(lambda: not ctl.agent_replicas("halves"), 60, what="the halves replicas to go")


@pytest.mark.docker
def test_simulator_docker_replica(gpu_controller: Controller, tmp_path: Path) -> None:
    require_docker()
    import docker

    ctl = gpu_controller
    folder = tmp_path / "echo-gpu"
    folder.mkdir()
    (folder / "predictor.py").write_text((EXAMPLES / "echo" / "predictor.py").read_text())
    (folder / "workbench.yaml").write_text(
        "name: echo-gpu\nruntime: docker\nreplicas: 1\ncompute: {cpu: 0.1, mem: 128Mi, gpu: 1}\n")
    events = ctl.deploy(folder)
    assert events[-1]["kind"] == "done", events[-5:]
    [replica] = ctl.wait_ready("echo-gpu", 1, timeout=300)["replica_list"]
    [gpu_id] = replica["gpu_ids"]
    [info] = ctl.agent_replicas("echo-gpu")
    client = docker.from_env()
    try:
        container = client.containers.get(info["container_id"])
        env = dict(e.split("=", 1) for e in container.attrs["Config"]["Env"])
        # inside a container CUDA numbers its devices from 0, so no host CUDA_VISIBLE_DEVICES;
        # NVIDIA_VISIBLE_DEVICES is what the NVIDIA runtime would set from the DeviceRequest
        assert env["WORKBENCH_GPU_IDS"] == gpu_id and env["NVIDIA_VISIBLE_DEVICES"] == gpu_id
        assert "CUDA_VISIBLE_DEVICES" not in env
        labels = container.labels
        assert labels["workbench.gpus"] == gpu_id
        # no NVIDIA runtime here, so no DeviceRequest; the label records the one it would have had
        assert not container.attrs["HostConfig"].get("DeviceRequests")
        request = json.loads(labels["workbench.gpu-device-request"])
        assert request["DeviceIDs"] == [gpu_id] and request["Capabilities"] == [["gpu"]]
        assert request.get("Driver", "") in ("", None, "nvidia")
    finally:
        client.close()
    # telemetry: the simulator finds the container's process in /proc (NVIDIA_VISIBLE_DEVICES), and
    # the agent maps its host PID to the replica through its cgroup's container id
    def mapped() -> dict[str, Any] | None:
        [g] = [g for g in report(ctl)["gpus"] if str(g["index"]) == gpu_id]
        return g if g["processes"] else None

    g = wait_until(mapped, 15, interval=0.5, what="the container's process on its GPU")
    assert g["allocated_to"] == [replica["id"]]
    [proc] = g["processes"]
    assert proc["container_id"] == info["container_id"] and proc["replica_id"] == replica["id"]
    assert proc["pid"] == container.attrs["State"]["Pid"]  # the container's init, as the host sees it
    assert ctl.api("DELETE", "/v1/apis/echo-gpu", timeout=120).status_code == 200
    wait_until(lambda: not ctl.agent_replicas("echo-gpu"), 60, what="the docker replica to go")
