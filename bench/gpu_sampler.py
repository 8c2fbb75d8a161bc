"""Cost of GPU telemetry: the sampler thread's CPU and the agent's RSS with 8 simulated GPUs, and
its sampling rate (the gaps between samples; tests only bound a hang).

Runs a real agent on the GPU fixture (WORKBENCH_FAKE_GPUS: the fixture path, not NVML), lets the
1 Hz sampler run, and reads the sampler thread's own CPU time from the agent's /metrics.

    python -m bench.gpu_sampler [--seconds 60] [--write]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from bench._procs import REPO, free_port, wait_http
from bench.report import write_section

GIB = 2**30


def fixture(path: Path, n: int = 8) -> None:
    gpus = [{"index": i, "uuid": f"GPU-bench-{i}", "name": "NVIDIA H100 80GB HBM3",
             "memory_total_bytes": 80 * GIB, "memory_used_bytes": 10 * GIB, "memory_free_bytes": 70 * GIB,
             "utilization_gpu": 50, "utilization_memory": 20, "temperature_c": 60, "power_draw_w": 300,
             "power_limit_w": 700, "fan_percent": None, "clock_sm_mhz": 1980, "clock_memory_mhz": 2619,
             "mig_mode": False, "processes": [{"pid": 1000 + i, "used_memory_bytes": GIB}]} for i in range(n)]
    path.write_text(json.dumps({"driver_version": "550.54.15", "cuda_driver_version": "12.4", "gpus": gpus}))


def cpu_seconds(client: httpx.Client) -> float:
    text = client.get("/metrics").text
    match = re.search(r"^workbench_gpu_sampler_cpu_seconds_total (\S+)$", text, re.M)
    assert match, text[-500:]
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        gpus = Path(tmp) / "gpus.json"
        fixture(gpus, args.gpus)
        home, port = Path(tmp) / "home", free_port()
        env = {**os.environ, "WORKBENCH_FAKE_GPUS": str(gpus)}
        proc = subprocess.Popen([sys.executable, "-m", "workbench.agent", "serve", "--home", str(home),
                                 "--port", str(port)], env=env, cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz")
            token = json.loads((home / "config.json").read_text())["token"]
            with httpx.Client(base_url=f"http://127.0.0.1:{port}",
                              headers={"Authorization": f"Bearer {token}"}) as client:
                agent = psutil.Process(proc.pid)
                client.get("/v1/gpus")  # warm the endpoint once
                cpu0, agent0, t0 = cpu_seconds(client), agent.cpu_times(), time.monotonic()
                time.sleep(args.seconds)
                cpu1, agent1, t1 = cpu_seconds(client), agent.cpu_times(), time.monotonic()
                history = client.get("/v1/gpus").json()["history"]
                rss = agent.memory_info().rss
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    wall = t1 - t0
    sampler_pct = 100 * (cpu1 - cpu0) / wall
    agent_pct = 100 * ((agent1.user + agent1.system) - (agent0.user + agent0.system)) / wall
    samples = history.get("0", [])
    gaps = sorted(b["at"] - a["at"] for a, b in itertools.pairwise(samples))
    gap_median = gaps[len(gaps) // 2] if gaps else float("nan")
    gap_max = gaps[-1] if gaps else float("nan")
    body = "\n".join([
        "## GPU sampler cost (fixture path, not NVML)",
        "",
        f"`python -m bench.gpu_sampler` — a real agent with {args.gpus} simulated GPUs "
        "(WORKBENCH_FAKE_GPUS; the fixture probe re-stats and parses its JSON file and scans /proc "
        f"for GPU users each second, not NVML), idle, over {wall:.0f} s.",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| sampler thread CPU (1 Hz, {args.gpus} GPUs) | {sampler_pct:.3f} % of one core | < 1 % |",
        f"| whole agent CPU (sampler + supervisor loop) | {agent_pct:.3f} % of one core | |",
        f"| agent RSS | {rss / 2**20:.1f} MiB | < 80 MB |",
        f"| history samples of GPU 0 after the run | {len(samples)} | 1 per second |",
        f"| gap between samples (median / max) | {gap_median:.3f} s / {gap_max:.3f} s | 1 s |",
        "",
        "The real NVML path is measured by `scripts/gpu-check` on an NVIDIA machine.",
    ])
    print(body)
    if args.write:
        write_section("gpu-sampler", body)


if __name__ == "__main__":
    main()
