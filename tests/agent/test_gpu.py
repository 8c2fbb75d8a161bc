"""GPU telemetry, allocation and pinning through a real agent on the GPU simulator (the fixture,
WORKBENCH_FAKE_GPUS): values from the file, processes found in /proc as NVML would find them."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.agent.helpers import Agent, bundle_context, read_events, replica_request, wait_for, wait_state

GIB = 2**30

ENV_PREDICTOR = """
import os


class Predictor:
    def __init__(self, config):
        pass

    def predict(self, payload):
        keys = ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "WORKBENCH_GPU_IDS")
        if payload == "pid":
            return os.getpid()
        return {k: os.environ.get(k) for k in keys}
"""


def gpu(index: int, **over: Any) -> dict[str, Any]:
    base = {
        "index": index,
        "uuid": f"GPU-fake-{index}",
        "name": "NVIDIA A100-SXM4-80GB",
        "memory_total_bytes": 80 * GIB,
        "memory_used_bytes": GIB,
        "memory_free_bytes": 79 * GIB,
        "utilization_gpu": 10.0 + index,
        "utilization_memory": 5.0,
        "temperature_c": 40.0,
        "power_draw_w": 60.0,
        "power_limit_w": 400.0,
        "fan_percent": 30.0,
        "clock_sm_mhz": 1410,
        "clock_memory_mhz": 1593,
        "mig_mode": False,
    }
    base.update(over)
    return base


def write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def fixture_data(**extra: Any) -> dict[str, Any]:
    return {
        "driver_version": "550.54.15",
        "nvml_version": "12.550.54.15",
        "cuda_driver_version": "12.4",
        "gpus": [gpu(i) for i in range(4)],
        "motion": False,  # these tests compare the file's values exactly
        **extra,
    }


@pytest.fixture(scope="module")
def gpu_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gpus") / "gpus.json"
    write(path, fixture_data())
    return path


@pytest.fixture(scope="module")
def gpu_agent(tmp_path_factory: pytest.TempPathFactory, gpu_file: Path) -> Iterator[Agent]:
    env = {**os.environ, "WORKBENCH_FAKE_GPUS": str(gpu_file)}
    a = Agent(tmp_path_factory.mktemp("gpu-agent") / "home", env=env)
    try:
        yield a.start()
    finally:
        a.cleanup()


@pytest.fixture
def gclient(gpu_agent: Agent, gpu_file: Path) -> Iterator[httpx.Client]:
    write(gpu_file, fixture_data())
    with gpu_agent.client() as c:

        def reset() -> bool:
            gpus = c.get("/v1/gpus", params={"history": "false"}).json()["gpus"]
            return len(gpus) == 4 and not any(g["error"] or g["processes"] for g in gpus)

        wait_for(reset, 5, "the agent to read the reset fixture")
        yield c
        for r in c.get("/v1/replicas").json():
            c.delete(f"/v1/replicas/{r['id']}", params={"grace": 0})


@pytest.fixture(scope="module")
def env_bundle(gpu_agent: Agent) -> str:
    artifact, tar = bundle_context(
        requirements="", commands=[], extra={"project/predictor.py": ENV_PREDICTOR.encode()}
    )
    with gpu_agent.client(timeout=600) as c:
        resp = c.post("/v1/builds", params={"runtime": "process", "artifact": artifact}, content=tar)
    events = read_events(resp)
    assert events[-1]["kind"] == "done", events[-5:]
    return artifact


def test_fixture_values_and_history(gclient: httpx.Client) -> None:
    report = gclient.get("/v1/gpus").json()
    assert report["source"] == "fixture" and "SIMULATED" in report["note"]
    assert report["driver_version"] == "550.54.15" and report["cuda_driver_version"] == "12.4"
    assert [g["index"] for g in report["gpus"]] == [0, 1, 2, 3]
    g1 = report["gpus"][1]
    assert g1["name"] == "NVIDIA A100-SXM4-80GB" and g1["utilization_gpu"] == 11.0
    assert g1["memory_total_bytes"] == 80 * GIB and g1["clock_sm_mhz"] == 1410 and g1["mig_mode"] is False
    before = len(report["history"]["1"])
    time.sleep(3.2)
    after = gclient.get("/v1/gpus").json()["history"]["1"]
    assert len(after) > before  # sampling goes on (its rate is measured by bench/gpu_sampler)
    gaps = [b["at"] - a["at"] for a, b in zip(after[-4:], after[-3:], strict=False)]
    assert all(0 < gap < 10 for gap in gaps), gaps  # bounds a hang only
    assert gclient.get("/v1/gpus", params={"history": "false"}).json()["history"] == {}
    since = after[-3]["at"]  # only what came after: the last two samples (or a newer third)
    newer = gclient.get("/v1/gpus", params={"since": since}).json()["history"]["1"]
    assert [s["at"] for s in newer[:2]] == [s["at"] for s in after[-2:]] and len(newer) <= 4
    assert all(s["at"] > since for s in newer)


def test_values_follow_the_file(gclient: httpx.Client, gpu_file: Path) -> None:
    write(gpu_file, fixture_data(gpus=[gpu(0, utilization_gpu=97.0), gpu(1)]))

    def moved() -> bool:
        gpus = gclient.get("/v1/gpus", params={"history": "false"}).json()["gpus"]
        return len(gpus) == 2 and gpus[0]["utilization_gpu"] == 97.0

    wait_for(moved, 5, "the new fixture values")


def test_lost_gpu_is_na_with_a_note_others_fine(gclient: httpx.Client, gpu_file: Path) -> None:
    write(gpu_file, fixture_data(gpus=[gpu(0), gpu(1, lost=True), gpu(2)]))

    def lost() -> dict[str, Any] | None:
        r = gclient.get("/v1/gpus", params={"history": "false"}).json()
        return r if r["gpus"][1]["error"] else None

    report = wait_for(lost, 5, "GPU 1 to be lost")
    g1 = report["gpus"][1]
    assert g1["name"] is None and g1["utilization_gpu"] is None and "lost" in g1["error"]
    assert "GPU 1 not answering" in report["note"]
    assert report["gpus"][0]["utilization_gpu"] == 10.0 and report["gpus"][2]["name"]
    host = gclient.get("/v1/host").json()
    assert len(host["gpus"]) == 3 and host["gpu_driver_version"] == "550.54.15"
    assert "GPU 1 not answering" in host["gpu_note"]


def test_missing_fields_are_none(gclient: httpx.Client, gpu_file: Path) -> None:
    write(gpu_file, fixture_data(gpus=[{"index": 0, "name": "Tesla T4"}]))
    def t4() -> dict[str, Any] | None:
        gpus = gclient.get("/v1/gpus").json()["gpus"]
        return gpus[0] if gpus and gpus[0]["name"] == "Tesla T4" else None

    g = wait_for(t4, 5, "the T4")
    assert g["fan_percent"] is None and g["power_draw_w"] is None and g["memory_total_bytes"] is None


def test_metrics_are_gauges_and_need_the_token(gclient: httpx.Client, gpu_agent: Agent) -> None:
    assert httpx.get(gpu_agent.url + "/metrics").status_code == 401
    text = gclient.get("/metrics").text
    assert 'workbench_gpu_utilization_percent{gpu="2",uuid="GPU-fake-2"' in text
    assert (
        'workbench_gpu_memory_total_bytes{gpu="0",uuid="GPU-fake-0",name="NVIDIA A100-SXM4-80GB",'
        f'simulated="true"}} {80 * GIB}'
        in text
    )
    for name in ("temperature_celsius", "power_watts", "memory_used_bytes", "sampler_cpu_seconds_total"):
        assert f"workbench_gpu_{name}" in text


def test_pinning_mapping_conflicts_and_sharing(
    gclient: httpx.Client, gpu_file: Path, env_bundle: str
) -> None:
    req = replica_request("process", env_bundle, api="gpu-echo")
    r1 = gclient.post("/v1/replicas", json={**req, "gpu_ids": ["1", "2"]}).json()
    info = wait_state(gclient, r1["id"], ["ready"], 60)
    assert info["gpu_ids"] == ["1", "2"]
    answer = httpx.post(info["url"] + "/", json={}).json()
    assert answer == {
        "CUDA_VISIBLE_DEVICES": "1,2",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "WORKBENCH_GPU_IDS": "1,2",
    }

    # taken: refused, state unchanged
    resp = gclient.post("/v1/replicas", json={**req, "gpu_ids": ["2"]})
    assert resp.status_code == 409 and "GPU 2 is already allocated" in resp.json()["error"]
    resp = gclient.post("/v1/replicas", json={**req, "gpu_ids": ["7"]})
    assert resp.status_code == 400 and "no GPU 7" in resp.json()["error"]
    assert len(gclient.get("/v1/replicas").json()) == 1

    # the simulator sees the replica's process (in /proc, by its CUDA_VISIBLE_DEVICES) on GPUs
    # 1 and 2, and the agent maps that PID back to the replica
    own_pid = httpx.post(info["url"] + "/", json="pid").json()
    assert own_pid == info["pid"]

    def seen() -> list[dict[str, Any]] | None:
        gpus = gclient.get("/v1/gpus", params={"history": "false"}).json()["gpus"]
        on = [gpus[i]["processes"] for i in (1, 2)]
        return on if all(len(p) == 1 for p in on) else None

    on_gpus: Any = wait_for(seen, 5, "the replica's process on its simulated GPUs")
    for procs_on in on_gpus:
        assert procs_on[0]["pid"] == own_pid and procs_on[0]["replica_id"] == r1["id"]
        assert procs_on[0]["api"] == "gpu-echo"
    assert gclient.get("/v1/gpus", params={"history": "false"}).json()["gpus"][0]["processes"] == []

    # the replica's pid on GPU 1 (and a stranger's) written in the fixture -> mapped / unmapped
    write(
        gpu_file,
        fixture_data(
            processes=[
                {"gpu": 1, "pid": info["pid"], "used_memory_bytes": 2 * GIB},
                {"gpu": 1, "pid": 1, "used_memory_bytes": GIB},
            ]
        ),
    )

    def mapped() -> list[dict[str, Any]] | None:
        procs = gclient.get("/v1/gpus", params={"history": "false"}).json()["gpus"][1]["processes"]
        return procs if len(procs) == 2 else None

    procs = {p["pid"]: p for p in wait_for(mapped, 5, "GPU 1's processes")}
    assert procs[info["pid"]]["replica_id"] == r1["id"] and procs[info["pid"]]["api"] == "gpu-echo"
    assert procs[info["pid"]]["used_memory_bytes"] == 2 * GIB and procs[1]["replica_id"] is None
    gpus = gclient.get("/v1/gpus", params={"history": "false"}).json()["gpus"]
    assert gpus[1]["allocated_to"] == [r1["id"]] and gpus[1]["allocated_share"] == 1.0
    assert gpus[0]["allocated_to"] == []

    # fractional sharing: two halves on GPU 3, not a third, and never with a whole replica
    half = {**req, "gpu_ids": ["3"], "gpu_share": 0.5}
    a = gclient.post("/v1/replicas", json=half)
    b = gclient.post("/v1/replicas", json=half)
    assert a.status_code == 201 and b.status_code == 201, (a.text, b.text)
    c = gclient.post("/v1/replicas", json=half)
    assert c.status_code == 409 and "already shared" in c.json()["error"]
    assert gclient.post("/v1/replicas", json={**req, "gpu_ids": ["3"]}).status_code == 409
    assert gclient.post("/v1/replicas", json={**half, "gpu_ids": ["1"]}).status_code == 409
    g3 = gclient.get("/v1/gpus", params={"history": "false"}).json()["gpus"][3]
    assert (
        sorted(g3["allocated_to"]) == sorted([a.json()["id"], b.json()["id"]])
        and g3["allocated_share"] == 1.0
    )

    # deleting frees the GPUs
    gclient.delete(f"/v1/replicas/{r1['id']}", params={"grace": 0})
    r2 = gclient.post("/v1/replicas", json={**req, "gpu_ids": ["GPU-fake-2"]})
    assert r2.status_code == 201, r2.text


@pytest.mark.gpu
def test_no_nvml_here_agent_reports_none(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "WORKBENCH_FAKE_GPUS"}
    a = Agent(tmp_path / "home", env=env)
    try:
        a.start()
        with a.client() as c:
            report = c.get("/v1/gpus").json()
            host = c.get("/v1/host").json()
            gpus_req = c.post("/v1/replicas", json={**replica_request("process", "x"), "gpu_ids": ["0"]})
    finally:
        a.cleanup()
    if report["source"] == "nvml":
        pytest.skip("this machine has NVML; scripts/gpu-check covers it")
    assert report["source"] == "none" and report["gpus"] == [] and report["note"]
    assert host["gpus"] == [] and host["gpu_note"] == report["note"]
    # no GPU information: ids cannot be checked, the request goes on (and meets the missing artifact)
    assert gpus_req.status_code == 404 and "artifact" in gpus_req.json()["error"]
