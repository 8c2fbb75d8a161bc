"""What the router counts, as `workbench get`, the control API and /metrics show it, through a real
controller with process replicas: a deleted and re-created API starts at zero and shows only its
own events; a shadow's copies are metered under the shadow API and shown beside the live one."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.controller.helpers import Controller, make_project
from tests.support.real_parts import wait_until


def spec(name: str, tag: str) -> str:
    return (f"name: {name}\nruntime: process\nreplicas: 1\ncompute: {{cpu: 0.1, mem: 64Mi}}\n"
            "serving: {max_concurrency: 8, graceful_shutdown: 5, startup_timeout: 60}\n"
            f"predictor: {{config: {{tag: {tag}}}}}\n")


def metric(controller: Controller, name: str, **labels: str) -> float | None:
    """One sample of the controller's /metrics (None when the series is absent)."""
    text = httpx.get(f"{controller.url}/metrics", headers=controller.headers, timeout=10).text
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and line.split("}")[0][len(name) + 1:] == want:
            return float(line.rsplit(" ", 1)[1])
    return None


def test_a_re_created_api_starts_at_zero(controller: Controller, tmp_path: Path) -> None:
    project = make_project(tmp_path, spec("echo", "v1"))
    assert controller.deploy(project)[-1]["kind"] == "done"
    for _ in range(3):
        assert controller.predict("echo", {}).status_code == 200
    assert controller.detail("echo")["traffic"]["status_2xx"] == 3
    assert metric(controller, "workbench_router_requests_total", api="echo", status="2xx") == 3
    assert controller.api("DELETE", "/v1/apis/echo").status_code == 200
    wait_until(lambda: controller.agent_replicas("echo") == [], 30, what="the old replica gone")

    assert controller.deploy(project)[-1]["kind"] == "done"
    detail = controller.detail("echo")
    assert detail["traffic"]["status_2xx"] == 0 and detail["traffic"]["p50_ms"] is None
    assert metric(controller, "workbench_router_requests_total", api="echo", status="2xx") in (None, 0)
    listed = controller.bench.json("get")
    assert [a["traffic"]["status_2xx"] for a in listed if a["name"] == "echo"] == [0]
    # this API's events only; the first one's stay in the history
    messages = [e["message"] for e in detail["events"]]
    assert not any(m.startswith("version 1 ") for m in messages), messages
    assert any(m.startswith("version 2 ") for m in messages), messages
    history = [e["message"] for e in controller.api("GET", "/v1/events", params={"api": "echo"}).json()]
    assert any(m.startswith("version 1 ") for m in history), history

    assert controller.predict("echo", {}).status_code == 200
    assert controller.detail("echo")["traffic"]["status_2xx"] == 1


def test_shadow_copies_are_metered_under_the_shadow_and_shown_beside_the_live_one(
        controller: Controller, tmp_path: Path) -> None:
    body = "".join("- " + spec(n, n).replace("\n", "\n  ").rstrip() + "\n" for n in ("blue", "green"))
    body += ("- kind: traffic_splitter\n  name: split\n  apis:\n    - {name: blue, weight: 100}\n"
             "    - {name: green, weight: 0, shadow: true}\n")
    project = make_project(tmp_path, body)
    assert controller.deploy(project)[-1]["kind"] == "done"
    for _ in range(5):
        assert controller.predict("split", {}).json()["tag"] == "blue"

    def shadow_counted() -> bool:
        return bool(controller.detail("green")["traffic"]["status_2xx"] == 5)

    wait_until(shadow_counted, 30, what="the shadow's 5 copies metered")
    green = controller.detail("green")["traffic"]
    assert green["p50_ms"] is not None and green["status_5xx"] == 0
    assert metric(controller, "workbench_router_requests_total", api="green", status="2xx") == 5
    split = {t["name"]: t for t in controller.detail("split")["split"]}
    assert split["blue"]["traffic"]["status_2xx"] == 5 and not split["blue"]["shadow"]
    assert split["green"]["traffic"]["status_2xx"] == 5 and split["green"]["shadow"]
    assert split["green"]["traffic"]["p99_ms"] is not None

    shown = controller.bench.run("get", "split").stdout
    rows = {line.split()[0]: line.split() for line in shown.splitlines() if line.strip()}
    assert rows["green"][1] == "shadow" and rows["green"][5] == "5", shown  # 2XX of the shadow
    assert rows["blue"][1] == "100%" and rows["blue"][5] == "5", shown
