"""Prefix-affinity balancing (routing.policy: prefix) against ewma and round_robin, on replicas that
simulate a model server's prefix (KV) cache.

Each replica is a test server (one process holds them all, one port each) with an LRU of
--cache prefixes and --slots requests served at once (more wait): a request whose system prompt is
in its cache costs --hit-ms, a miss costs that plus --miss-us-per-char x the prompt's length (the
prefill). The router (in this process, on a real socket) balances --clients closed-loop clients
over 4 replicas. Workloads: 16 shared system prompts of --prompt-chars characters with distinct user
turns, and every request with a system prompt of its own. Rows per policy: cache hit rate, p50/p99
latency, throughput. Then, on the shared workload with policy prefix, a 5th replica joins mid-run:
how soon it serves, and its share of the next 5 s.

Goals (issue 12): shared prefixes ≥ 3x lower p50 than ewma; distinct prefixes p99 within 1.2x of
ewma's; a replica added mid-run takes load within 5 s.

    .venv/bin/python bench/prefix_routing.py [--seconds 10] [--clients 12] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import platform
import random
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.report import write_section  # noqa: E402

POLICIES = ("prefix", "ewma", "round_robin")
SYSTEM_PROMPTS = 16
REPLICAS = 4


# -- the simulated model server ---------------------------------------------------------------


def serve(ports: list[int], cache: int, slots: int, hit_ms: float, miss_us_per_char: float) -> None:
    """Replicas on `ports` (this process's event loop), until killed."""
    from aiohttp import web

    async def start(port: int) -> web.AppRunner:
        lru: collections.OrderedDict[str, None] = collections.OrderedDict()
        gate = asyncio.Semaphore(slots)

        async def completions(request: web.Request) -> web.Response:
            body = await request.json()
            prefix = body["messages"][0]["content"]
            async with gate:
                hit = prefix in lru
                if hit:
                    lru.move_to_end(prefix)
                else:
                    lru[prefix] = None
                    if len(lru) > cache:
                        lru.popitem(last=False)
                cost = hit_ms / 1000 + (0.0 if hit else len(prefix) * miss_us_per_char / 1e6)
                await asyncio.sleep(cost)
            return web.json_response({"object": "chat.completion", "cache": "hit" if hit else "miss"},
                                     headers={"x-cache": "hit" if hit else "miss"})

        async def ready(request: web.Request) -> web.Response:
            return web.json_response({"ready": True})

        app = web.Application()
        app.router.add_post("/v1/chat/completions", completions)
        app.router.add_get("/readyz", ready)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner

    async def main() -> None:
        for port in ports:
            await start(port)
        print("ready", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the load ---------------------------------------------------------------------------------


@dataclass
class Result:
    label: str
    policy: str
    latencies: list[float]
    hits: int
    seconds: float
    by_replica: collections.Counter[str]

    def quantile(self, q: float) -> float:
        values = sorted(self.latencies)
        return values[min(len(values) - 1, int(q * len(values)))] * 1000 if values else float("nan")

    @property
    def hit_rate(self) -> float:
        return self.hits / len(self.latencies) if self.latencies else 0.0

    def row(self) -> str:
        return (f"| {self.label} | {self.policy} | {self.hit_rate:.1%} | {self.quantile(0.5):.1f} ms | "
                f"{self.quantile(0.99):.1f} ms | {len(self.latencies) / self.seconds:.0f}/s |")


def system_prompt(rng: random.Random, chars: int, tag: str) -> str:
    words = []
    size = 0
    while size < chars:
        word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
        words.append(word)
        size += len(word) + 1
    return (f"{tag}: " + " ".join(words))[:chars]


async def run_load(url: str, clients: int, seconds: float, warmup: float, shared: list[str] | None,
                   chars: int, on_reply: Any = None) -> tuple[list[float], int, collections.Counter[str]]:
    """Closed-loop clients for warmup + seconds; latencies, hits and replicas of the measured part."""
    latencies: list[float] = []
    hits = 0
    by_replica: collections.Counter[str] = collections.Counter()
    started = time.monotonic()
    measure_from = started + warmup
    end = measure_from + seconds

    async def client(n: int, session: aiohttp.ClientSession) -> None:
        nonlocal hits
        rng = random.Random(n)
        turn = 0
        while time.monotonic() < end:
            turn += 1
            prefix = rng.choice(shared) if shared is not None else system_prompt(rng, chars, f"c{n}t{turn}")
            body = {"model": "sim", "messages": [{"role": "system", "content": prefix},
                                                 {"role": "user", "content": f"question {n}-{turn}"}]}
            sent = time.monotonic()
            async with session.post(url, data=json.dumps(body),
                                    headers={"content-type": "application/json"}) as response:
                await response.read()
                replica = response.headers.get("x-workbench-replica", "?")
                hit = response.headers.get("x-cache") == "hit"
                assert response.status == 200, response.status
            done = time.monotonic()
            if on_reply is not None:
                on_reply(done, replica)
            if sent >= measure_from:
                latencies.append(done - sent)
                hits += hit
                by_replica[replica] += 1

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(client(n, session) for n in range(clients)))
    return latencies, hits, by_replica


async def bench(args: argparse.Namespace, replica_urls: list[str]) -> tuple[list[Result], dict[str, float]]:
    import uvicorn

    from workbench.router import ApiRoute, Endpoint, Router
    from workbench.spec.models import RoutingSpec

    router = Router()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY: as
    sock.bind(("127.0.0.1", 0))  # workbench/controller/daemon.py binds the router
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(router, log_level="warning", access_log=False, lifespan="on",
                                           server_header=False, proxy_headers=False))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    base = f"http://127.0.0.1:{port}"

    def endpoints(name: str, urls: list[str]) -> list[Endpoint]:
        return [Endpoint(replica_id=f"{name}-{i}", url=u) for i, u in enumerate(urls)]

    rng = random.Random(12)
    shared = [system_prompt(rng, args.prompt_chars, f"system prompt {i}") for i in range(SYSTEM_PROMPTS)]
    results: list[Result] = []
    four = replica_urls[:REPLICAS]
    for label, prompts in (("16 shared system prompts", shared), ("every prefix distinct", None)):
        for policy in POLICIES:
            name = f"{policy.replace('_', '-')}-{'shared' if prompts else 'distinct'}"
            router.set_route(ApiRoute(name=name, routing=RoutingSpec(policy=policy)))  # type: ignore[arg-type]
            router.set_endpoints(name, endpoints(name, four))
            latencies, hits, by_replica = await run_load(
                f"{base}/{name}/v1/chat/completions", args.clients, args.seconds, args.warmup, prompts,
                args.prompt_chars)
            result = Result(label, policy, latencies, hits, args.seconds, by_replica)
            print(result.row(), flush=True)
            results.append(result)

    # a 5th replica joins mid-run (policy prefix, shared prompts)
    name = "prefix-join"
    router.set_route(ApiRoute(name=name, routing=RoutingSpec(policy="prefix")))
    router.set_endpoints(name, endpoints(name, four))
    joined_at: float | None = None
    first_reply: float | None = None
    after: collections.Counter[str] = collections.Counter()
    new_id = f"{name}-{REPLICAS}"

    def on_reply(at: float, replica: str) -> None:
        nonlocal first_reply
        if joined_at is None or at < joined_at:
            return
        if replica == new_id and first_reply is None:
            first_reply = at
        if at < joined_at + 5.0:
            after[replica] += 1

    async def join() -> None:
        nonlocal joined_at
        await asyncio.sleep(args.warmup + args.seconds / 2)
        joined_at = time.monotonic()
        router.set_endpoints(name, endpoints(name, replica_urls[:REPLICAS + 1]))

    joiner = asyncio.create_task(join())
    await run_load(f"{base}/{name}/v1/chat/completions", args.clients, args.seconds / 2 + 5.0,
                   args.warmup, shared, args.prompt_chars, on_reply)
    await joiner
    join = {"first_ms": (first_reply - joined_at) * 1000 if first_reply and joined_at else float("nan"),
            "share": after[new_id] / max(1, sum(after.values()))}
    print(f"5th replica: first answer {join['first_ms']:.0f} ms after it joined; "
          f"{join['share']:.1%} of the next 5 s", flush=True)

    server.should_exit = True
    await task
    return results, join


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per row")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--cache", type=int, default=6, help="prefixes each replica's LRU holds")
    parser.add_argument("--slots", type=int, default=4, help="requests a replica serves at once")
    parser.add_argument("--hit-ms", type=float, default=10.0)
    parser.add_argument("--miss-us-per-char", type=float, default=80.0)
    parser.add_argument("--prompt-chars", type=int, default=1000)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # internal: the replicas' process
    args = parser.parse_args()
    if args.serve:
        serve([int(p) for p in args.serve.split(",")], args.cache, args.slots, args.hit_ms,
              args.miss_us_per_char)
        return

    ports = [free_port() for _ in range(REPLICAS + 1)]
    proc = subprocess.Popen([sys.executable, __file__, "--serve", ",".join(map(str, ports)),
                             "--cache", str(args.cache), "--slots", str(args.slots),
                             "--hit-ms", str(args.hit_ms), "--miss-us-per-char", str(args.miss_us_per_char)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        print("| workload | policy | cache hits | p50 | p99 | throughput |")
        print("|---|---|---:|---:|---:|---:|")
        results, join = asyncio.run(bench(args, [f"http://127.0.0.1:{p}" for p in ports]))
    finally:
        proc.terminate()
        proc.wait(10)

    def p(label: str, policy: str, q: float) -> float:
        return next(r for r in results if r.label.startswith(label) and r.policy == policy).quantile(q)

    shared_ratio = p("16", "ewma", 0.5) / p("16", "prefix", 0.5)
    distinct_ratio = p("every", "prefix", 0.99) / p("every", "ewma", 0.99)
    goals = (f"Shared prompts: p50 {shared_ratio:.1f}x lower than ewma (goal ≥ 3x). Distinct prefixes: "
             f"p99 {distinct_ratio:.2f}x ewma's (goal ≤ 1.2x). A 5th replica joining mid-run answered its "
             f"first request {join['first_ms']:.0f} ms after it joined and served {join['share']:.1%} "
             "of the next 5 s (goal: load within 5 s).")
    print(goals)
    if args.write:
        machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
        body = "\n".join([
            "## Prefix-affinity balancing (`bench/prefix_routing.py`)", "",
            f"{REPLICAS} simulated model servers (an LRU of {args.cache} prefixes and {args.slots} slots "
            f"each; a hit costs {args.hit_ms:g} ms, a miss {args.miss_us_per_char:g} µs per prompt "
            f"character more: {args.hit_ms + args.prompt_chars * args.miss_us_per_char / 1000:g} ms for "
            f"{args.prompt_chars}-character system prompts), {args.clients} closed-loop clients through "
            f"the router, {args.seconds:g} s measured per row after {args.warmup:g} s of warm-up. "
            f"Measured {datetime.now(UTC):%Y-%m-%d} on {machine}.", "",
            "| workload | policy | cache hits | p50 | p99 | throughput |", "|---|---|---:|---:|---:|---:|",
            *[r.row() for r in results], "", goals,
        ])
        write_section("prefix_routing", body)


if __name__ == "__main__":
    main()
