"""Scaling on the server's own queue through a real controller: examples/tinylm as a process API
(one generation at a time) with `autoscaling: {metric: tinylm_requests_waiting, target: 1}`; under
load the scraped gauge scales it up, and the values show in `workbench get NAME` and on the
controller's /metrics. A gauge the server lacks is an event and no scaling."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.controller.helpers import Controller
from tests.controller.test_tinylm_api import copy_of_tinylm
from tests.support.real_parts import wait_until

SPEC = ("name: {name}\nruntime: process\ncompute: {{cpu: 0.5, mem: 512Mi}}\n"
        "container:\n  command: [python, -m, tinylm]\n  health: /health\n  metrics: /metrics\n"
        "  startup_timeout: 120\n  env: {{TINYLM_MODEL_NAME: tinylm, TINYLM_TOKEN_DELAY: '0.02',"
        " TINYLM_MAX_CONCURRENCY: '1', TINYLM_MODEL_PATH: '{model}'}}\n"
        "autoscaling: {{min_replicas: 1, max_replicas: 2, metric: {metric}, target: 1, window: 3,"
        " upscale_stabilization_period: 0, downscale_stabilization_period: 600}}\n")


def scraped(ctl: Controller, api: str) -> dict[str, float]:
    text = httpx.get(f"{ctl.url}/metrics", timeout=10).text
    return {s.labels["replica"]: s.value for f in text_string_to_metric_families(text)
            for s in f.samples if s.name == "workbench_replica_metric" and s.labels.get("api") == api}


def test_the_queue_gauge_scales_up_and_shows(controller: Controller, tmp_path: Path) -> None:
    project = copy_of_tinylm(tmp_path / "queue")
    model = tmp_path / "model.npz"
    (project / "workbench.yaml").write_text(SPEC.format(name="queue", model=model,
                                                        metric="tinylm_requests_waiting"))
    events = controller.deploy(project)
    assert events[-1]["kind"] == "done", events[-5:]
    wait_until(lambda: list(scraped(controller, "queue").values()) == [0.0], 30, what="the gauge scraped")
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=60) as http:
            while not stop.is_set():
                http.post(f"{controller.url}/queue/v1/completions",
                          json={"model": "tinylm", "prompt": "A", "max_tokens": 100})

    threads = [threading.Thread(target=client, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: controller.detail("queue")["replicas"]["requested"] == 2, 60, interval=0.5,
                   what="a scale-up on tinylm_requests_waiting")
        detail = controller.detail("queue")
        assert detail["metric"] == "tinylm_requests_waiting"
        assert any((r["metric"] or 0) >= 1 for r in detail["replica_list"]), detail["replica_list"]
        got = controller.bench.run("get", "queue").stdout
        assert "TINYLM_REQUESTS_WAITING" in got, got
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    event = next(e for e in controller.detail("queue")["events"] if e["kind"] == "autoscale")
    assert "avg tinylm_requests_waiting" in event["message"], event

    # a gauge the server never exposes: an event, and the count stays
    other = copy_of_tinylm(tmp_path / "nogauge")
    (other / "workbench.yaml").write_text(SPEC.format(name="nogauge", model=model,
                                                      metric="vllm:num_requests_waiting"))
    assert controller.deploy(other)[-1]["kind"] == "done"
    wait_until(lambda: any("cannot read vllm:num_requests_waiting" in e["message"]
                           for e in controller.detail("nogauge")["events"]), 30,
               what="the missing-gauge event")
    assert controller.detail("nogauge")["replicas"]["requested"] == 1
