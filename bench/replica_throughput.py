"""Requests/s and p50/p99 latency of ONE `echo` replica hit directly (no router), in the Docker
and the process runtime, measured side by side in one run. The baseline for the router.

    .venv/bin/python bench/replica_throughput.py [--seconds 10] [--connections 16] [--write]

Uses a throwaway WORKBENCH_HOME and agent port, and removes what it started.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.report import write_section  # noqa: E402
from bench.wrk import require_wrk, run_wrk  # noqa: E402
from tests.support.real_parts import Workbench, docker_answers  # noqa: E402

BODY = json.dumps({"text": "the quick brown fox", "values": [1, 2, 3]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    require_wrk()
    runtimes = ["docker", "process"] if docker_answers() else ["process"]
    rows = []
    with tempfile.TemporaryDirectory() as home:
        bench = Workbench.create(Path(home))
        try:
            for runtime in runtimes:
                print(f"deploying echo ({runtime} runtime)…", file=sys.stderr)
                [result] = json.loads(bench.run("deploy", str(REPO / "examples" / "echo"),
                                                "--runtime", runtime, "--json").stdout)
                url = result["replicas"][0]["url"] + "/"
                run_wrk(url, body=BODY, connections=args.connections, seconds=2)  # warm-up
                measured = run_wrk(url, body=BODY, connections=args.connections, seconds=args.seconds)
                print(f"echo, {runtime:7s} runtime: {measured.line()}")
                rows.append((runtime, measured))
                bench.run("delete", "echo")
        finally:
            bench.cleanup()
    if args.write:
        machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}"
        table = ["| runtime | requests/s | p50 | p99 | errors |", "|---|---|---|---|---|"]
        table += [
            f"| {runtime} | {m.requests_per_second:.0f} | {m.p50_ms:.2f} ms | {m.p99_ms:.2f} ms "
            f"| {m.errors} |"
            for runtime, m in rows
        ]
        write_section(
            "replica_throughput",
            f"## One echo replica, hit directly (`bench/replica_throughput.py`)\n\n"
            f"{datetime.now(UTC):%Y-%m-%d}, {machine}; wrk with 1 thread, {args.connections} "
            f"connections, {args.seconds} s after a 2 s warm-up, JSON body of {len(BODY)} bytes, "
            "load generator and replica on the same 2 cores.\n\n" + "\n".join(table) + "\n",
        )


if __name__ == "__main__":
    main()
