"""What the router adds: the same wrk load against one echo replica directly and through the
router (``python -m workbench.router``, pinned to one core), side by side in one run; and
through nginx round-robin when nginx is installed.

    .venv/bin/python bench/router_overhead.py [--seconds 5] [--write]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._procs import _pin, free_port, replica, router, wait_http  # noqa: E402
from bench.report import write_section  # noqa: E402
from bench.wrk import LoadResult, require_wrk, run_wrk  # noqa: E402

BODY = json.dumps({"text": "the quick brown fox", "values": [1, 2, 3]})
NGINX_CONF = """
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  upstream echo {{ server {upstream}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location = /echo {{
      proxy_pass http://echo/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
    location /echo/ {{
      proxy_pass http://echo/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""


@contextlib.contextmanager
def nginx(upstream: str, cpus: set[int]) -> Iterator[str | None]:
    binary = shutil.which("nginx")
    if binary is None:
        yield None
        return
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        conf = Path(folder) / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=folder, upstream=upstream.removeprefix("http://"), port=port))
        proc = subprocess.Popen([binary, "-c", str(conf), "-g", "daemon off;"], preexec_fn=_pin(cpus),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_http(f"http://127.0.0.1:{port}/echo/readyz", 15)
            yield f"http://127.0.0.1:{port}/echo"
        finally:
            proc.terminate()
            proc.wait(10)


def measure(url: str, connections: int, seconds: int) -> LoadResult:
    run_wrk(url, body=BODY, connections=connections, seconds=1)  # warm-up
    return run_wrk(url, body=BODY, connections=connections, seconds=seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    require_wrk()
    cores = sorted(os.sched_getaffinity(0))
    router_core = {cores[-1]}
    rows: list[tuple[int, LoadResult, LoadResult, LoadResult | None]] = []
    load_before = os.getloadavg()[0]
    with replica(REPO / "examples" / "echo") as direct, \
            router({"echo": [direct]}, cpus=router_core) as routed, \
            nginx(direct, router_core) as via_nginx:
        for connections in (1, 32):
            d = measure(direct + "/", connections, args.seconds)
            r = measure(routed + "/echo", connections, args.seconds)
            n = measure(via_nginx, connections, args.seconds) if via_nginx else None
            print(f"c={connections:<3} direct  {d.line()}")
            print(f"c={connections:<3} router  {r.line()}")
            if n:
                print(f"c={connections:<3} nginx   {n.line()}")
            print(f"c={connections:<3} router adds p50 {r.p50_ms - d.p50_ms:+.2f} ms, "
                  f"p99 {r.p99_ms - d.p99_ms:+.2f} ms; "
                  f"throughput {r.requests_per_second / d.requests_per_second:.0%} of direct"
                  + (f" (nginx {n.requests_per_second / d.requests_per_second:.0%})" if n else ""))
            rows.append((connections, d, r, n))
    if args.write:
        machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}"
        table = ["| connections | path | requests/s | p50 | p99 | added p50 | added p99 | vs direct |",
                 "|---|---|---|---|---|---|---|---|"]
        for c, d, r, n in rows:
            table.append(f"| {c} | direct | {d.requests_per_second:.0f} | {d.p50_ms:.2f} ms "
                         f"| {d.p99_ms:.2f} ms | | | |")
            for label, m in (("router", r), ("nginx", n)):
                if m is None:
                    continue
                table.append(
                    f"| {c} | {label} | {m.requests_per_second:.0f} | {m.p50_ms:.2f} ms | {m.p99_ms:.2f} ms "
                    f"| {m.p50_ms - d.p50_ms:+.2f} ms | {m.p99_ms - d.p99_ms:+.2f} ms "
                    f"| {m.requests_per_second / d.requests_per_second:.0%} |")
        note = "" if rows[0][3] else " nginx is not installed here, so there is no nginx row."
        note += (f" Load average {load_before:.1f} before and {os.getloadavg()[0]:.1f} after the run "
                 "(other work on the machine skews small-core figures; rerun when it is idle).")
        write_section(
            "router_overhead",
            f"## Router overhead (`bench/router_overhead.py`)\n\n"
            f"{datetime.now(UTC):%Y-%m-%d}, {machine}. One echo replica (process, unpinned); "
            "the router (`python -m workbench.router`, uvicorn + httptools + uvloop, "
            f"aiohttp upstream pool, policy ewma: the default) pinned to core {min(router_core)} with "
            "os.sched_setaffinity; nginx, when installed (`apt-get install nginx-light`), as a reference: "
            "one worker, keep-alive upstream, pinned to the same core; wrk "
            f"(1 thread, unpinned) on the same machine; {args.seconds} s per row after a 1 s warm-up; "
            f"JSON body of {len(BODY)} bytes.{note}\n\n" + "\n".join(table) + "\n",
        )


if __name__ == "__main__":
    main()
