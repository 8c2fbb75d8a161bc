"""Linkerd's "beyond round robin" experiment, scaled to this machine: 4 echo replicas behind the
router, one of them slow (every answer takes 2 s) for the middle of the run, clients that give
up after 1 s. Success rate and latency per policy, plus an all-healthy baseline.

    .venv/bin/python bench/balancing.py [--seconds 15] [--clients 16] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._procs import replica, router  # noqa: E402
from bench.report import write_section  # noqa: E402

PREDICTOR = """
import asyncio, os

class Predictor:
    def __init__(self, config):
        self.sleep_file = config.get("sleep_file")

    async def predict(self, payload):
        if self.sleep_file and os.path.exists(self.sleep_file):
            await asyncio.sleep(float(open(self.sleep_file).read() or 0))
        return payload
"""
POLICIES = ["round_robin", "least_outstanding", "p2c", "ewma"]
SLOW_SECONDS = 2.0
CLIENT_TIMEOUT = 1.0


@dataclass
class Outcome:
    label: str
    requests: int
    ok: int
    p50_ms: float
    p99_ms: float

    @property
    def success(self) -> float:
        return self.ok / self.requests if self.requests else 0.0

    def line(self) -> str:
        return (f"{self.label:28s} success {self.success:8.3%}  p50 {self.p50_ms:7.2f} ms  "
                f"p99 {self.p99_ms:7.2f} ms  ({self.requests} requests)")


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def load(url: str, clients: int, seconds: float, slow_file: Path | None) -> tuple[int, list[float]]:
    """Requests with a 1 s total timeout each; a timed-out one counts as failed (latency 1 s)."""
    latencies: list[float] = []
    ok = 0
    stop_at = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(url, connector=connector) as client:

        async def worker() -> None:
            nonlocal ok
            while time.monotonic() < stop_at:
                started = time.monotonic()
                try:
                    async with asyncio.timeout(CLIENT_TIMEOUT), client.post("/echo", json={"q": 1}) as r:
                        await r.read()
                    if r.status == 200:
                        ok += 1
                    latencies.append(time.monotonic() - started)
                except (TimeoutError, aiohttp.ClientError):
                    latencies.append(max(CLIENT_TIMEOUT, time.monotonic() - started))

        async def slowdown() -> None:
            if slow_file is None:
                return
            await asyncio.sleep(seconds * 0.25)
            slow_file.write_text(str(SLOW_SECONDS))
            await asyncio.sleep(seconds * 0.5)
            slow_file.unlink()

        await asyncio.gather(slowdown(), *(worker() for _ in range(clients)))
    return ok, latencies


def run(label: str, urls: list[str], policy: str, clients: int, seconds: float,
        slow_file: Path | None) -> Outcome:
    with router({"echo": urls}, policy=policy) as url:
        asyncio.run(load(url, clients, 1.0, None))  # warm-up: connections, EWMA estimates
        ok, latencies = asyncio.run(load(url, clients, seconds, slow_file))
    p50, p99 = quantile(latencies, 0.5) * 1000, quantile(latencies, 0.99) * 1000
    return Outcome(label, len(latencies), ok, p50, p99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory() as folder, ExitStack() as stack:
        project = Path(folder) / "project"
        project.mkdir()
        (project / "predictor.py").write_text(PREDICTOR)
        slow_file = Path(folder) / "slow"
        urls = [stack.enter_context(replica(project, {"sleep_file": str(slow_file) if i == 0 else None}))
                for i in range(4)]
        runs = [("all healthy (ewma, the default)", "ewma", None)]
        runs += [(f"{p}, one slow", p, slow_file) for p in POLICIES]
        runs += [("healthy again (ewma)", "ewma", None)]
        for label, policy, slow in runs:
            outcome = run(label, urls, policy, args.clients, args.seconds, slow)
            print(outcome.line(), flush=True)
            outcomes.append(outcome)
    if args.write:
        machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}"
        base = outcomes[0]
        table = ["| run | requests | success | p50 | p99 | p99 vs healthy |", "|---|---|---|---|---|---|"]
        for o in outcomes:
            table.append(f"| {o.label} | {o.requests} | {o.success:.3%} | {o.p50_ms:.2f} ms "
                         f"| {o.p99_ms:.2f} ms | {o.p99_ms / base.p99_ms:.2f}x |")
        write_section(
            "balancing",
            "## Load balancing with one slow replica (`bench/balancing.py`)\n\n"
            f"{datetime.now(UTC):%Y-%m-%d}, {machine}. Linkerd's \"beyond round robin\" experiment, scaled "
            f"down: 4 echo replicas (process runtime) behind `python -m workbench.router`; {args.clients} "
            f"asyncio aiohttp clients for {args.seconds:g} s per policy (after a 1 s warm-up), each request "
            f"with a {CLIENT_TIMEOUT:g} s total timeout (a timeout counts as a failure at 1 s). From 25 % "
            f"to 75 % of each run one replica takes {SLOW_SECONDS:g} s per answer. Everything shares the "
            "same cores.\n\n" + "\n".join(table) + "\n",
        )


if __name__ == "__main__":
    main()
