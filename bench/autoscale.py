"""Seconds from a load step to the extra replica ready and serving, through the controller.

An autoscaled API on the process runtime (window 5 s, no upscale stabilization, target
concurrency 1) whose predictor sleeps 0.5 s gets a step from idle to 4 concurrent clients; the
script times (a) the autoscaler's decision, (b) the second replica ready in the router's pool,
(c) the first answer from the new replica. Target: (c) <= 15 s.

Then the same step on a queue-gauge target (issue 12): examples/tinylm as a process API that
generates one request at a time and scales on its own tinylm_requests_waiting gauge, scraped by
the controller (target 1 waiting per replica), under 4 clients asking for 100-token completions.

    .venv/bin/python bench/autoscale.py [--runs 3] [--write]

Uses a throwaway WORKBENCH_HOME, agent and controller port, and removes what it started.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.report import write_section  # noqa: E402
from tests.controller.helpers import Controller, make_project  # noqa: E402
from tests.support.real_parts import EXAMPLES, Workbench, wait_until  # noqa: E402

SPEC = ("name: slow\nruntime: process\ncompute: {cpu: 0.1, mem: 64Mi}\n"
        "serving: {max_concurrency: 4, graceful_shutdown: 2}\n"
        "predictor: {config: {delay: 0.5}}\n"
        "autoscaling: {min_replicas: 1, max_replicas: 2, target_concurrency: 1, window: 5,"
        " upscale_stabilization_period: 0, downscale_stabilization_period: 5}\n")

QUEUE_SPEC = ("name: queue\nruntime: process\ncompute: {{cpu: 0.5, mem: 512Mi}}\n"
              "container:\n  command: [python, -m, tinylm]\n  health: /health\n  metrics: /metrics\n"
              "  startup_timeout: 120\n  env: {{TINYLM_MODEL_NAME: tinylm, TINYLM_TOKEN_DELAY: '0.02',"
              " TINYLM_MAX_CONCURRENCY: '1', TINYLM_MODEL_PATH: '{model}'}}\n"
              "autoscaling: {{min_replicas: 1, max_replicas: 2, metric: tinylm_requests_waiting, target: 1,"
              " window: 5, upscale_stabilization_period: 0, downscale_stabilization_period: 5}}\n")


def queue_step(ctl: Controller, clients: int) -> dict[str, float]:
    """From idle with one tinylm replica: the load step, timed as one_step times its own."""
    body = {"model": "tinylm", "prompt": "Alice", "max_tokens": 100}

    def first() -> str:
        return str(httpx.post(f"{ctl.url}/queue/v1/completions", json={**body, "max_tokens": 1},
                              timeout=30).headers["x-workbench-replica"])

    def answered_by(http: httpx.Client) -> str | None:
        return http.post(f"{ctl.url}/queue/v1/completions", json=body).headers.get("x-workbench-replica")

    return timed_step(ctl, "queue", clients, first, answered_by, client_timeout=60)


def tinylm_project(folder: Path) -> Path:
    shutil.copytree(EXAMPLES / "tinylm", folder,
                    ignore=shutil.ignore_patterns("model.npz", "*.tmp.npz", "__pycache__", "*.pyc", "certs"))
    (folder / "workbench.yaml").write_text(QUEUE_SPEC.format(model=folder / "model.npz"))
    return folder


def one_step(ctl: Controller, clients: int) -> dict[str, float]:
    """From idle with one replica: start the load and time the scale-up."""

    def first() -> int:
        return int(httpx.post(f"{ctl.url}/slow", json=0, timeout=30).json()["pid"])

    def answered_by(http: httpx.Client) -> int:
        return int(http.post(f"{ctl.url}/slow", json=1).json()["pid"])

    return timed_step(ctl, "slow", clients, first, answered_by, client_timeout=30)


def timed_step(ctl: Controller, api: str, clients: int, first: Callable[[], object],
               answered_by: Callable[[httpx.Client], object], client_timeout: float) -> dict[str, float]:
    """From idle with one replica of `api`: `clients` threads send requests; the marks are when the
    autoscaler asked for a second replica, when it was ready, and when a request was first answered
    by another replica than `first()`'s (`answered_by` names the replica of one request)."""
    wait_until(lambda: ctl.detail(api)["replicas"]["ready"] == 1
               and ctl.detail(api)["replicas"]["requested"] == 1, 120, interval=0.5, what="back to 1")
    one = first()
    time.sleep(6)  # a full window of idle samples
    stop = threading.Event()
    marks: dict[str, float] = {}
    start = time.monotonic()

    def client() -> None:
        with httpx.Client(timeout=client_timeout) as http:
            while not stop.is_set():
                replica = answered_by(http)
                if replica not in (one, None) and "served" not in marks:
                    marks["served"] = time.monotonic() - start

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    try:
        while "served" not in marks and time.monotonic() - start < 120:
            detail = ctl.detail(api)
            if detail["replicas"]["requested"] >= 2 and "decided" not in marks:
                marks["decided"] = time.monotonic() - start
            if detail["replicas"]["ready"] >= 2 and "ready" not in marks:
                marks["ready"] = time.monotonic() - start
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    marks.setdefault("decided", float("nan"))
    marks.setdefault("ready", marks.get("served", float("nan")))
    return marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--queue-runs", type=int, default=2, help="steps on the queue-gauge target")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    queue_runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="wb-bench-") as tmp:
        bench = Workbench.create(Path(tmp) / "home")
        ctl = Controller(bench)
        try:
            ctl.start()
            events = ctl.deploy(make_project(Path(tmp), SPEC))
            assert events[-1]["kind"] == "done", events[-3:]
            runs = []
            for index in range(args.runs):
                marks = one_step(ctl, args.clients)
                runs.append(marks)
                print(f"run {index + 1}: decision {marks['decided']:.1f} s, ready {marks['ready']:.1f} s, "
                      f"serving {marks.get('served', float('nan')):.1f} s", flush=True)
            if args.queue_runs:
                events = ctl.deploy(tinylm_project(Path(tmp) / "tinylm"))
                assert events[-1]["kind"] == "done", events[-3:]
                for index in range(args.queue_runs):
                    marks = queue_step(ctl, args.clients)
                    queue_runs.append(marks)
                    print(f"queue gauge run {index + 1}: decision {marks['decided']:.1f} s, ready "
                          f"{marks['ready']:.1f} s, serving {marks.get('served', float('nan')):.1f} s",
                          flush=True)
        finally:
            ctl.stop()
            bench.cleanup()
    served = [r["served"] for r in runs if "served" in r]
    ready = [r["ready"] for r in runs]
    decided = [r["decided"] for r in runs]
    verdict = "meets" if served and statistics.median(served) <= 15 else "MISSES"
    summary = (f"median over {len(runs)} steps: decision {statistics.median(decided):.1f} s, "
               f"replica ready {statistics.median(ready):.1f} s, "
               f"new replica serving {statistics.median(served):.1f} s ({verdict} the 15 s target)")
    print(summary)
    if args.write:
        body = (
            "## Autoscaling: load step to an extra replica serving (`bench/autoscale.py`)\n\n"
            f"{datetime.now(UTC):%Y-%m-%d}, {platform.node()}, {platform.processor() or platform.machine()}; "
            f"process runtime, window 5 s, upscale stabilization 0 s, target concurrency 1, "
            f"predictor sleeps 0.5 s, step from idle to {args.clients} concurrent clients.\n\n"
            "| run | autoscaler decides | 2nd replica ready in pool | 2nd replica answers |\n"
            "|---|---|---|---|\n"
            + "".join(f"| {i + 1} | {r['decided']:.1f} s | {r['ready']:.1f} s | "
                      f"{r.get('served', float('nan')):.1f} s |\n" for i, r in enumerate(runs))
            + f"\n{summary}. Target: <= 15 s.\n")
        if queue_runs:
            body += (
                "\nOn a queue-gauge target (`autoscaling: {metric: tinylm_requests_waiting, target: 1}`, "
                "scraped from examples/tinylm's /metrics every 2 s; it generates one request at a time, "
                f"{args.clients} clients ask for 100 tokens at 50 tokens/s):\n\n"
                "| run | autoscaler decides | 2nd replica ready in pool | 2nd replica answers |\n"
                "|---|---|---|---|\n"
                + "".join(f"| queue {i + 1} | {r['decided']:.1f} s | {r['ready']:.1f} s | "
                          f"{r.get('served', float('nan')):.1f} s |\n" for i, r in enumerate(queue_runs)))
        write_section("autoscale", body)


if __name__ == "__main__":
    main()
