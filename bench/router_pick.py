"""The router's pick cost per request: choosing one of an API's eligible endpoints with its policy,
for 2 to 200 replicas of one API, in-process (no network, no event loop).

What is timed is the call the router makes for each attempt, ``policies.pick(pool, policy,
tried, now)`` with nothing tried yet: the pool's eligible list plus the policy. The endpoints
have varied latency estimates and a few requests in flight each, so the load-aware policies
compare real numbers. Each figure is the best of --repeats runs of about --run-seconds each
(the loop's own cost, some 20 ns, included). Goal (issue 10): flat from 2 to 200 replicas.

    .venv/bin/python bench/router_pick.py [--repeats 5] [--run-seconds 0.1] [--write]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.report import write_section  # noqa: E402
from workbench.router.policies import POLICIES, Policy, pick  # noqa: E402
from workbench.router.pool import Pool  # noqa: E402
from workbench.router.types import Endpoint  # noqa: E402

REPLICAS = (2, 5, 10, 20, 50, 100, 200)
POLICY_ORDER = ("ewma", "p2c", "least_outstanding", "round_robin")  # ewma: the default


def loaded_pool(n: int, now: float, rng: random.Random) -> Pool:
    """A pool of `n` endpoints with latency estimates of 1-20 ms and 0-3 requests in flight."""
    pool = Pool()
    pool.set([Endpoint(replica_id=f"r{i}", url=f"http://127.0.0.1:{20000 + i}") for i in range(n)])
    for state in pool.endpoints:
        state.observe(rng.uniform(0.001, 0.020), now)
        for _ in range(rng.randrange(4)):
            state.begin(now - rng.uniform(0.0, 0.050))
    return pool


def ns_per_pick(pool: Pool, policy: Policy, now: float, repeats: int, run_seconds: float) -> float:
    tried: tuple[()] = ()
    picks = 1000
    while True:  # calibrate: enough picks for one run to last about run_seconds
        started = time.perf_counter()
        for _ in range(picks):
            pick(pool, policy, tried, now)
        elapsed = time.perf_counter() - started
        if elapsed >= run_seconds / 4:
            break
        picks *= 4
    picks = max(1000, int(picks * run_seconds / elapsed))
    best = float("inf")
    for _ in range(repeats):
        started_ns = time.perf_counter_ns()
        for _ in range(picks):
            pick(pool, policy, tried, now)
        best = min(best, (time.perf_counter_ns() - started_ns) / picks)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--run-seconds", type=float, default=0.1)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    rng = random.Random(10)
    now = time.monotonic()
    results: dict[tuple[str, int], float] = {}
    print(f"ns per pick (best of {args.repeats})")
    print(f"{'replicas':>8} " + " ".join(f"{name:>18}" for name in POLICY_ORDER))
    for n in REPLICAS:
        pool = loaded_pool(n, now, rng)
        for name in POLICY_ORDER:
            results[name, n] = ns_per_pick(pool, POLICIES[name], now, args.repeats, args.run_seconds)
        print(f"{n:>8} " + " ".join(f"{results[name, n]:>18.0f}" for name in POLICY_ORDER), flush=True)
    growth = {name: results[name, REPLICAS[-1]] / results[name, REPLICAS[0]] for name in POLICY_ORDER}
    summary = ", ".join(f"{name} {growth[name]:.2f}x" for name in POLICY_ORDER)
    print(f"{REPLICAS[-1]} vs {REPLICAS[0]} replicas: {summary}")
    if args.write:
        table = ["| replicas | " + " | ".join(POLICY_ORDER) + " |",
                 "|---|" + "---|" * len(POLICY_ORDER)]
        for n in REPLICAS:
            cells = " | ".join(f"{results[name, n]:.0f} ns" for name in POLICY_ORDER)
            table.append(f"| {n} | {cells} |")
        machine = (f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}, "
                   f"Python {platform.python_version()}")
        write_section(
            "router_pick",
            "## Router pick cost per request (`bench/router_pick.py`)\n\n"
            f"{datetime.now(UTC):%Y-%m-%d}, {machine}. In-process, no network: the call the router "
            "makes per attempt, `policies.pick(pool, policy, tried, now)` (the pool's eligible list, "
            "kept up to date by the pool, and the policy), one API, endpoints with latency estimates "
            "of 1-20 ms and 0-3 requests in flight; best of "
            f"{args.repeats} runs of about {args.run_seconds:g} s, the loop's own cost included. "
            "Goal: flat from 2 to 200 replicas.\n\n"
            + "\n".join(table)
            + f"\n\n{REPLICAS[-1]} vs {REPLICAS[0]} replicas: {summary}. least_outstanding compares every "
            "endpoint by definition (O(n)); the others sample or step through the eligible list (O(1)).\n",
        )


if __name__ == "__main__":
    main()
