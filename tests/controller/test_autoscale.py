"""Autoscaling end to end on the process runtime with short windows."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.controller.helpers import Controller, Load, make_project
from tests.support.real_parts import wait_until


def autoscaled(min_replicas: int, init: str = "", delay: float = 0.5) -> str:
    return ("name: slow\nruntime: process\ncompute: {cpu: 0.1, mem: 64Mi}\n"
            "serving: {max_concurrency: 4, graceful_shutdown: 5}\n"
            f"predictor: {{config: {{delay: {delay}}}}}\n"
            f"autoscaling: {{min_replicas: {min_replicas}, max_replicas: 3, target_concurrency: 1, window: 5,"
            f" upscale_stabilization_period: 0, downscale_stabilization_period: 5{init}}}\n")


def test_load_scales_up_and_back_down(controller: Controller, tmp_path: Path) -> None:
    assert controller.deploy(make_project(tmp_path, autoscaled(1)))[-1]["kind"] == "done"
    with Load(f"{controller.url}/slow", clients=4) as load:
        wait_until(lambda: controller.detail("slow")["replicas"]["ready"] >= 2, 60, interval=0.5,
                   what="scale up under load")
    assert load.failures == [], load.failures[:5]
    wait_until(lambda: controller.detail("slow")["replicas"]["requested"] == 1, 60, interval=0.5,
               what="scale down without load")
    events = [e for e in controller.detail("slow")["events"] if e["kind"] == "autoscale"]
    assert any("→ 1 replicas" in e["message"] for e in events) and len(events) >= 2
    assert all("avg_in_flight" in e["data"] for e in events)


def test_scale_from_zero_holds_the_first_request(controller: Controller, tmp_path: Path) -> None:
    events = controller.deploy(make_project(tmp_path, autoscaled(0, ", init_replicas: 0", delay=0)))
    assert events[-1]["kind"] == "done", events
    detail = controller.detail("slow")
    assert detail["status"] == "scaled-to-zero" and detail["replica_list"] == []
    sent = time.time()
    response = httpx.post(f"{controller.url}/slow", json={"wake": 1}, timeout=120)
    assert response.status_code == 200, response.text  # held, not refused with a 503
    assert response.json()["echo"] == {"wake": 1}
    detail = controller.detail("slow")
    assert detail["replicas"]["ready"] == 1
    [replica] = detail["replica_list"]
    assert replica["created_at"] >= sent  # started for this request: there was none before it
    assert response.headers["x-workbench-replica"] == replica["id"]  # and it answered it
