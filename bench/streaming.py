"""Streaming through the router, side by side in one run: straight to the replica, through the
router (``python -m workbench.router``, pinned to one core) and through nginx with
``proxy_buffering off`` (the reference; pinned to the same core), optionally through a baseline
router from another source tree (``--baseline DIR``, e.g. an export of main).

The replica is the predictor runtime serving an async generator as Server-Sent Events; each event
carries the time it was produced, so the client (aiohttp, on the same machine) sees each chunk's
latency. Measured:

- time to the first chunk (2-chunk streams, 50 ms apart, one at a time);
- per-chunk latency with 100 concurrent streams of 20 chunks/s;
- 1,000 concurrent open streams through the router: all complete, the router's RSS growth;
- cancellation: the client leaves after 10 chunks of a 100 chunks/s stream; when the replica's
  generator stopped (its ``finally``) and how many chunks it produced after the disconnect.

    .venv/bin/python bench/streaming.py [--write] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._procs import _pin, free_port, wait_http  # noqa: E402
from bench.report import write_section  # noqa: E402

PREDICTOR = '''
import asyncio, time

STREAMS = {}  # stream id -> {"produced": [times], "closed": time or None}


class Predictor:
    async def predict(self, payload):
        if payload.get("stats"):  # a stream's record, forgotten once its generator closed
            record = STREAMS.get(payload["stats"])
            if record is not None and record["closed"] is not None:
                del STREAMS[payload["stats"]]
            return record
        return self.stream(payload["id"], payload["chunks"], payload["gap"], payload.get("pad", 0))

    async def stream(self, sid, chunks, gap, pad):
        record = STREAMS[sid] = {"produced": [], "closed": None}
        try:
            for i in range(chunks):
                now = time.time()
                record["produced"].append(now)
                yield {"i": i, "t": now, "pad": "x" * pad}
                if i + 1 < chunks:
                    await asyncio.sleep(gap)
        finally:
            record["closed"] = time.time()
'''

NGINX_CONF = """
worker_processes 1;
worker_rlimit_nofile 20000;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  upstream s {{ server {upstream}; keepalive 256; }}
  server {{
    listen 127.0.0.1:{port};
    location /s/ {{
      proxy_pass http://s/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_read_timeout 60s;
    }}
    location = /s {{
      proxy_pass http://s/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_read_timeout 60s;
    }}
  }}
}}
"""

SSE = {"accept": "text/event-stream", "content-type": "application/json"}


# -- the parts ---------------------------------------------------------------------------------

@contextlib.contextmanager
def replica(folder: Path) -> Iterator[str]:
    (folder / "predictor.py").write_text(PREDICTOR)
    port = free_port()
    cfg = {"api": "s", "project_dir": str(folder),
           "serving": {"max_concurrency": 1024, "max_queue": 1024, "request_timeout": 600}}
    env = {**os.environ, "WORKBENCH_RUNTIME_CONFIG": json.dumps(cfg)}
    proc = subprocess.Popen([sys.executable, "-m", "workbench.serving", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/readyz")
        yield url
    finally:
        proc.kill()
        proc.wait()


@dataclass
class Proxy:
    url: str
    pid: int


@contextlib.contextmanager
def router(upstream: str, cpus: set[int], source: Path = REPO) -> Iterator[Proxy]:
    """`python -m workbench.router` of the source tree `source` (its own workbench package first)."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(source), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "workbench.router", "--port", str(port),
                             "--api", f"s={upstream}"], cwd=source, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_pin(cpus))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/s/readyz")
        yield Proxy(url + "/s", proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def nginx(upstream: str, cpus: set[int]) -> Iterator[Proxy | None]:
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
            wait_http(f"http://127.0.0.1:{port}/s/readyz", 15)
            yield Proxy(f"http://127.0.0.1:{port}/s", proc.pid)
        finally:
            proc.terminate()
            proc.wait(10)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# -- the client --------------------------------------------------------------------------------

@dataclass
class StreamResult:
    sent: float  # time.time() the request went
    arrivals: list[tuple[float, float]] = field(default_factory=list)  # (produced, arrived) per chunk
    complete: bool = False


async def stream(session: aiohttp.ClientSession, url: str, chunks: int, gap: float, sid: str = "",
                 leave_after: int = 0, pad: int = 0) -> StreamResult:
    """One SSE stream; with `leave_after`, the client hangs up after that many chunks."""
    body = {"id": sid or uuid.uuid4().hex, "chunks": chunks, "gap": gap, "pad": pad}
    result = StreamResult(time.time())
    async with session.post(url, json=body, headers=SSE) as response:
        assert response.status == 200, await response.text()
        buffer = b""
        while True:
            data = await response.content.readany()
            arrived = time.time()
            if not data:
                break
            buffer += data
            *events, buffer = buffer.split(b"\n\n")
            for event in events:
                if event.startswith(b"data: "):
                    result.arrivals.append((json.loads(event[6:])["t"], arrived))
            if leave_after and len(result.arrivals) >= leave_after:
                response.close()  # the connection closes now
                return result
        result.complete = len(result.arrivals) == chunks
    return result


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- the measurements --------------------------------------------------------------------------

async def time_to_first_chunk(paths: dict[str, str], n: int) -> dict[str, list[float]]:
    """ms from sending to the first chunk, of 2-chunk streams 50 ms apart; paths interleaved."""
    out: dict[str, list[float]] = {name: [] for name in paths}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        for url in paths.values():  # warm up pools and code paths
            for _ in range(5):
                await stream(session, url, 2, 0.0)
        for _ in range(n):
            for name, url in paths.items():
                result = await stream(session, url, 2, 0.05)
                out[name].append((result.arrivals[0][1] - result.sent) * 1000)
    return out


async def concurrent_chunks(url: str, streams: int, chunks: int, gap: float) -> tuple[list[float], int]:
    """Per-chunk latency in ms (arrived - produced) over `streams` concurrent streams; and how
    many streams completed."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await asyncio.gather(*(stream(session, url, 2, 0.0) for _ in range(min(streams, 50))))  # warm

        async def one() -> StreamResult:
            await asyncio.sleep(random.random() * gap)  # streams not in lockstep
            return await stream(session, url, chunks, gap)

        results = await asyncio.gather(*(one() for _ in range(streams)))
    latencies = [(arrived - produced) * 1000 for r in results for produced, arrived in r.arrivals]
    return latencies, sum(r.complete for r in results)


async def open_streams(url: str, pid: int, streams: int, chunks: int, gap: float
                       ) -> tuple[int, float, float, float]:
    """`streams` concurrent streams through the router: (completed, RSS before, peak, after) MiB."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=aiohttp.ClientTimeout(total=300)) as session:
        await asyncio.gather(*(stream(session, url, 2, 0.0) for _ in range(50)))
        before = rss_mib(pid)
        peak = before
        done = asyncio.Event()

        async def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, rss_mib(pid))
                await asyncio.sleep(0.2)

        sampler = asyncio.ensure_future(sample())

        async def one() -> StreamResult:
            await asyncio.sleep(random.random() * 2.0)  # opened over 2 s
            return await stream(session, url, chunks, gap)

        results = await asyncio.gather(*(one() for _ in range(streams)), return_exceptions=True)
        done.set()
        await sampler
        after = rss_mib(pid)
    completed = sum(1 for r in results if isinstance(r, StreamResult) and r.complete)
    return completed, before, peak, after


@dataclass
class Cancel:
    stop_ms: list[float] = field(default_factory=list)  # disconnect -> the generator's finally
    after: list[int] = field(default_factory=list)  # chunks produced after the disconnect


async def cancellation(url: str, replica_url: str, trials: int) -> Cancel:
    out = Cancel()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        for _ in range(trials):
            sid = uuid.uuid4().hex
            await stream(session, url, 100_000, 0.01, sid=sid, leave_after=10)
            left = time.time()
            record = None
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                async with session.post(replica_url + "/", json={"stats": sid}) as response:
                    record = await response.json()
                if record is None or record["closed"] is not None:
                    break
                await asyncio.sleep(0.01)
            if record is None or record["closed"] is None:
                out.stop_ms.append(float("inf"))
                out.after.append(-1)
                continue
            out.stop_ms.append((record["closed"] - left) * 1000)
            out.after.append(sum(1 for t in record["produced"] if t > left))
            await asyncio.sleep(0.05)
    return out


# -- the run -----------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    parser.add_argument("--baseline", type=Path, help="source tree of a router to compare (e.g. main)")
    parser.add_argument("--first", type=int, default=100, help="streams timed for the first chunk, per path")
    parser.add_argument("--open", type=int, default=1000, help="concurrent open streams")
    args = parser.parse_args()
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 16384), hard), hard))  # children too
    cores = sorted(os.sched_getaffinity(0))
    proxy_core = {cores[-1]}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder, replica(Path(folder)) as direct, \
            router(direct, proxy_core) as routed, nginx(direct, proxy_core) as via_nginx, \
            contextlib.ExitStack() as stack:
        baseline = stack.enter_context(router(direct, proxy_core, args.baseline)) if args.baseline else None
        paths = {"direct": direct + "/", "router": routed.url}
        if via_nginx:
            paths["nginx"] = via_nginx.url
        if baseline:
            paths["baseline"] = baseline.url

        first = asyncio.run(time_to_first_chunk(paths, args.first))
        for name, values in first.items():
            print(f"first chunk  {name:<9} p50 {quantile(values, 0.5):7.2f} ms  "
                  f"p99 {quantile(values, 0.99):7.2f} ms")

        chunk: dict[str, tuple[list[float], int]] = {}
        for name, url in paths.items():
            chunk[name] = asyncio.run(concurrent_chunks(url, 100, 60, 0.05))
            lat, complete = chunk[name]
            print(f"per chunk    {name:<9} p50 {quantile(lat, 0.5):7.2f} ms  "
                  f"p99 {quantile(lat, 0.99):7.2f} ms  ({len(lat)} chunks, {complete}/100 streams complete)")

        completed, before, peak, after = asyncio.run(open_streams(routed.url, routed.pid, args.open, 10, 1.0))
        print(f"{args.open} open streams through the router: {completed} complete; router RSS "
              f"{before:.0f} MiB before, {peak:.0f} MiB peak (+{peak - before:.0f}), {after:.0f} MiB after")

        cancels: dict[str, Cancel] = {}
        for name, url in paths.items():  # (main's router never stops a stream: 3 trials of 10 s)
            cancels[name] = asyncio.run(cancellation(url, direct, 3 if name == "baseline" else 20))
            c = cancels[name]
            print(f"cancel       {name:<9} generator stopped p50 {quantile(c.stop_ms, 0.5):6.1f} ms, "
                  f"max {max(c.stop_ms):6.1f} ms after the disconnect; chunks produced after it: "
                  f"p50 {statistics.median(c.after):.0f}, max {max(c.after)}")

    load_after = os.getloadavg()[0]
    if args.write:
        write(paths, first, chunk, (completed, before, peak, after), cancels, args, proxy_core,
              (load_before, load_after))


def write(paths: dict[str, str], first: dict[str, list[float]], chunk: dict[str, tuple[list[float], int]],
          opened: tuple[int, float, float, float], cancels: dict[str, Cancel], args: argparse.Namespace,
          proxy_core: set[int], load: tuple[float, float]) -> None:
    names = list(paths)
    label = {"direct": "direct", "router": "router", "nginx": "nginx (proxy_buffering off)",
             "baseline": "router before (main)"}

    def cell(value: float, unit: str, fmt: str) -> str:
        return "not within 10 s" if value == float("inf") else fmt.format(value) + f" {unit}"

    def row(what: str, values: dict[str, float], unit: str = "ms", fmt: str = "{:.2f}") -> str:
        cells = [cell(values[n], unit, fmt) if n in values else "" for n in names]
        added = values["router"] - values["direct"]
        return f"| {what} | " + " | ".join(cells) + f" | {added:+.2f} {unit} |"

    table = ["| | " + " | ".join(label[n] for n in names) + " | router adds |",
             "|---" * (len(names) + 2) + "|"]
    table.append(row("first chunk p50", {n: quantile(v, 0.5) for n, v in first.items()}))
    table.append(row("first chunk p99", {n: quantile(v, 0.99) for n, v in first.items()}))
    table.append(row("per chunk p50 (100 streams, 20/s each)",
                     {n: quantile(v[0], 0.5) for n, v in chunk.items()}))
    table.append(row("per chunk p99 (100 streams, 20/s each)",
                     {n: quantile(v[0], 0.99) for n, v in chunk.items()}))
    table.append(row("generator stopped after the disconnect, p50",
                     {n: quantile(c.stop_ms, 0.5) for n, c in cancels.items()}, fmt="{:.1f}"))
    table.append(row("generator stopped after the disconnect, max",
                     {n: max(c.stop_ms) for n, c in cancels.items()}, fmt="{:.1f}"))
    def produced_after(c: Cancel) -> str:
        return "all (it kept streaming)" if min(c.after) < 0 else str(max(c.after))

    table.append("| chunks produced after the disconnect, max (of 100/s) | "
                 + " | ".join(produced_after(cancels[n]) for n in names) + " | |")
    completed, before, peak, after = opened
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}"
    nginx_note = ("nginx from Debian's `nginx-light` (installed for this run with apt-get), one worker, "
                  "keep-alive upstream, `proxy_buffering off`, pinned to the same core"
                  if "nginx" in paths else "nginx is not installed here, so there is no nginx column")
    baseline_note = (" The `router before (main)` column is main's router (relaying one chunk behind) "
                     "run from an export of main in the same run." if "baseline" in paths else "")
    write_section(
        "streaming",
        "## Streaming (`bench/streaming.py`)\n\n"
        f"{datetime.now(UTC):%Y-%m-%d}, {machine}. One replica (the predictor runtime: an async generator "
        "answering Server-Sent Events, each event stamped with the time it was produced; unpinned); the "
        f"router (`python -m workbench.router`) pinned to core {min(proxy_core)}; {nginx_note}; the client "
        "(aiohttp, one process, unpinned) on the same machine. First chunk: "
        f"{args.first} streams per path of 2 chunks 50 ms apart, one at a time, the paths interleaved. Per "
        "chunk: 100 concurrent streams of 60 chunks at 20 chunks/s (3 s), latency = arrival - production. "
        "Cancellation: 20 streams per path at 100 chunks/s, the client closes the connection after 10 "
        "chunks; the replica reports when its generator's `finally` ran and which chunks it produced "
        f"after the disconnect.{baseline_note} Load average {load[0]:.1f} before and {load[1]:.1f} after "
        "(two cores shared by replica, proxy and client: figures include that contention).\n\n"
        + "\n".join(table) + "\n\n"
        f"{args.open:,} concurrent open streams through the router (10 chunks, 1 s apart, opened over 2 s): "
        f"{completed:,} of {args.open:,} complete; router RSS {before:.0f} MiB before, {peak:.0f} MiB at the "
        f"peak (+{peak - before:.0f} MiB), {after:.0f} MiB after.\n",
    )


if __name__ == "__main__":
    main()
