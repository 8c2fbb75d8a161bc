"""The controller's CPU while its fleet monitor polls 100 hosts x 8 GPUs at 1 Hz.

A dev machine cannot run 100 agents, so the agents are one stub process (Starlette on uvicorn,
in a child process) listening on 100 loopback ports, one per "agent", answering the agent API the
fleet monitor uses — GET /v1/replicas (a few replicas per host), /v1/host (8 GPUs), /v1/gpus
(current values and the history after `since`) — with bodies built from the real wire models
(workbench/wire/agent.py), random but plausible values that move every second. The stub notes
when each host was polled, so the poll period actually achieved is measured where an agent sees it.

Measured, each for `--seconds` after a warm-up (psutil cpu_times of the measured process, user +
system, as % of one core):

1. the controller's real Fleet alone (workbench.controller.fleet, uvloop) in a child process,
   its hosts on plain links to the stub;
2. a real `workbench serve` (its own WORKBENCH_HOME and local agent) with the 100 hosts added
   through its control API in direct mode (`POST /v1/hosts` with `direct: true`, as
   `workbench host add NAME 127.0.0.1:PORT --direct --token-file F` does);
3. the same while a TUI-like client calls GET /v1/gpus (every host's report, history since its
   last call) once a second.

    flock /tmp/workbench-tests.lock .venv/bin/python bench/controller_poll.py [--hosts 100] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import multiprocessing
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import psutil
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.report import write_section  # noqa: E402
from workbench.wire.agent import (  # noqa: E402
    DockerStatus,
    GpuInfo,
    GpuReport,
    GpuSample,
    HostInfo,
    ReplicaInfo,
    ReplicaState,
)

GIB = 1024**3
TOKEN = "stub-agent-token"
HISTORY_S = 600
JSON_TYPE = "application/json"


# -- the stub agents ----------------------------------------------------------------------------
class Agents:
    """Bodies for `hosts` agents x `gpus` GPUs, `replicas` replicas each; values move each second."""

    def __init__(self, hosts: int, gpus: int, replicas: int) -> None:
        self.hosts, self.gpus, self.replicas = hosts, gpus, replicas
        self.started = time.time()
        self._stopped: set[str] = set()
        self._tick: dict[tuple[str, int, int], bytes] = {}

    def _rng(self, *key: object) -> random.Random:
        return random.Random(":".join(map(str, key)))

    def replica_list(self, host: int) -> bytes:
        out = []
        for n in range(self.replicas):
            replica_id = f"h{host:03d}r{n}"
            state = ReplicaState.STOPPED if replica_id in self._stopped else ReplicaState.READY
            out.append(ReplicaInfo(
                id=replica_id, api=f"api-{(host + n) % 20:02d}", spec_hash=f"{host * 7 + n:016x}",
                runtime="docker", artifact=f"workbench/api-{(host + n) % 20:02d}:{host:012x}", state=state,
                url=f"http://127.0.0.1:{30000 + n}", created_at=self.started - 3600,
                started_at=self.started - 3590, container_id=f"{host:032x}{n:032x}", gpu_ids=[str(n)]))
        return json.dumps([r.model_dump(mode="json") for r in out]).encode()

    def stop(self, replica_id: str) -> None:
        self._stopped.add(replica_id)

    def gpu(self, host: int, index: int, now: int) -> GpuInfo:
        r = self._rng(host, index, now)
        busy = index < self.replicas
        util = round(r.uniform(5, 95), 0)
        used = int(r.uniform(2, 70) * GIB)
        return GpuInfo(index=index, uuid=f"GPU-{host:03d}-{index}", name="NVIDIA H100 80GB HBM3",
                       memory_total_bytes=80 * GIB, memory_used_bytes=used, memory_free_bytes=80 * GIB - used,
                       utilization_gpu=util, utilization_memory=round(util * 0.6, 0),
                       temperature_c=round(30 + util / 3, 0), power_draw_w=round(70 + util * 6, 0),
                       power_limit_w=700.0, allocated_to=[f"h{host:03d}r{index}"] if busy else [],
                       allocated_share=1.0 if busy else 0.0)

    def host_info(self, host: int) -> bytes:
        now = int(time.time())
        key = ("host", host, now)
        if key not in self._tick:
            info = HostInfo(hostname=f"gpu-{host:03d}", os="Linux", arch="x86_64", python="3.11.9",
                            agent_version="0.1.0", cpu_count=64, mem_total_bytes=512 * GIB,
                            mem_available_bytes=300 * GIB, disk_free_bytes=900 * GIB,
                            docker=DockerStatus(available=True, version="24.0.7"),
                            runtimes=["docker", "process"],
                            gpus=[self.gpu(host, i, now) for i in range(self.gpus)],
                            gpu_driver_version="550.54")
            self._tick[key] = info.model_dump_json().encode()
        return self._tick[key]

    def gpu_report(self, host: int, since: float | None) -> bytes:
        """Like an agent's: current values and the 1 Hz samples after `since` (10 minutes at most)."""
        now = int(time.time())
        first = now - HISTORY_S + 1 if since is None else max(now - HISTORY_S + 1, int(since) + 1)
        gpus = [self.gpu(host, i, now) for i in range(self.gpus)]
        history = {}
        for gpu in gpus:
            samples = []
            for at in range(first, now + 1):
                r = self._rng(host, gpu.index, at)
                samples.append(GpuSample(at=float(at), utilization_gpu=round(r.uniform(5, 95), 0),
                                         memory_used_bytes=gpu.memory_used_bytes,
                                         temperature_c=gpu.temperature_c, power_draw_w=gpu.power_draw_w))
            history[gpu.index] = samples
        return GpuReport(source="nvml", driver_version="550.54", gpus=gpus,
                         history=history).model_dump_json().encode()

    def prune(self) -> None:
        now = int(time.time())
        for key in [k for k in self._tick if k[2] < now - 1]:
            del self._tick[key]


def stub_app(agents: Agents, ports: dict[int, int]) -> Starlette:
    """One app for every agent: the port a request came in on says which host it is."""
    polled: dict[int, list[float]] = {host: [] for host in ports.values()}

    def host_of(request: Request) -> int:
        return ports[request.scope["server"][1]]

    def authorized(request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {TOKEN}"

    async def replicas(request: Request) -> Response:
        if not authorized(request):
            return JSONResponse({"error": "missing or wrong token"}, status_code=401)
        host = host_of(request)
        polled[host].append(time.monotonic())
        return Response(agents.replica_list(host), media_type=JSON_TYPE)

    async def delete(request: Request) -> Response:
        agents.stop(request.path_params["replica_id"])  # the controller removes replicas of no API
        return Response(b"{}", media_type=JSON_TYPE)

    async def host(request: Request) -> Response:
        if not authorized(request):
            return JSONResponse({"error": "missing or wrong token"}, status_code=401)
        agents.prune()
        return Response(agents.host_info(host_of(request)), media_type=JSON_TYPE)

    async def gpus(request: Request) -> Response:
        since = request.query_params.get("since")
        return Response(agents.gpu_report(host_of(request), float(since) if since else None),
                        media_type=JSON_TYPE)

    async def healthz(request: Request) -> Response:
        return Response(b'{"ok":true}', media_type=JSON_TYPE)

    async def stats(request: Request) -> Response:
        """Seconds between consecutive polls of each host since the last reset."""
        periods = [b - a for times in polled.values() for a, b in itertools.pairwise(times)]
        if request.method == "DELETE":
            for times in polled.values():
                times.clear()
        return JSONResponse({"periods": periods, "polls": sum(len(t) for t in polled.values())})

    return Starlette(routes=[
        Route("/v1/replicas", replicas), Route("/v1/replicas/{replica_id}", delete, methods=["DELETE"]),
        Route("/v1/host", host), Route("/v1/gpus", gpus), Route("/healthz", healthz),
        Route("/_stats", stats, methods=["GET", "DELETE"]),
    ])


def _serve_stub(agents: Agents, sockets: list[socket.socket], ports: dict[int, int]) -> None:
    config = uvicorn.Config(stub_app(agents, ports), log_level="warning", access_log=False, lifespan="off",
                            http="httptools", loop="uvloop", backlog=2048)
    uvicorn.Server(config).run(sockets=sockets)


class Stub:
    """The stub agents in a child process; `urls[i]` is host i's agent."""

    def __init__(self, hosts: int, gpus: int, replicas: int) -> None:
        self.sockets = []
        for _ in range(hosts):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            sock.listen(128)
            self.sockets.append(sock)
        self.ports = {sock.getsockname()[1]: index for index, sock in enumerate(self.sockets)}
        self.urls = [f"http://127.0.0.1:{sock.getsockname()[1]}" for sock in self.sockets]
        self.process = multiprocessing.get_context("fork").Process(
            target=_serve_stub, args=(Agents(hosts, gpus, replicas), self.sockets, self.ports), daemon=True)

    def __enter__(self) -> Stub:
        import httpx

        self.process.start()
        for sock in self.sockets:
            sock.close()  # the child holds them
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.urls[0] + "/healthz", timeout=2).status_code == 200:
                    return self
            if time.monotonic() > deadline or not self.process.is_alive():
                raise SystemExit("the stub agents did not start")
            time.sleep(0.05)

    def periods(self, reset: bool = False) -> tuple[list[float], int]:
        import httpx

        answer = httpx.request("DELETE" if reset else "GET", self.urls[0] + "/_stats", timeout=30).json()
        return answer["periods"], answer["polls"]

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.join(10)


# -- what is measured ---------------------------------------------------------------------------
def _fleet_alone(urls: list[str]) -> None:
    """Child process: the controller's Fleet polling `urls`, until killed."""
    import uvloop

    from workbench.controller.fleet import Fleet, Host
    from workbench.controller.links.local import LocalLink

    async def run() -> None:
        fleet = Fleet()
        for index, url in enumerate(urls):
            fleet.add(Host(f"gpu-{index:03d}", LocalLink(url, TOKEN, name=f"gpu-{index:03d}")))
        await asyncio.Event().wait()

    uvloop.run(run())


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def measure(pid: int, stub: Stub, seconds: float, during: Callable[[float], list[float]] | None = None
            ) -> dict[str, Any]:
    """CPU of `pid` over `seconds` (as % of one core) and the poll periods the stub saw; `during`
    runs for the same time (a client's load) and returns its latencies."""
    process = psutil.Process(pid)
    stub.periods(reset=True)
    started, cpu = time.monotonic(), cpu_seconds(process)
    latencies = during(seconds) if during is not None else []
    left = seconds - (time.monotonic() - started)
    if left > 0:
        time.sleep(left)
    wall, used = time.monotonic() - started, cpu_seconds(process) - cpu
    periods, polls = stub.periods()
    return {"cpu_pct": used / wall * 100, "p50": statistics.median(periods) * 1000,
            "p99": pct(periods, 99) * 1000, "polls_per_s": polls / wall, "latencies": latencies}


def run_fleet_alone(stub: Stub, warmup: float, seconds: float) -> dict[str, Any]:
    child = multiprocessing.get_context("spawn").Process(target=_fleet_alone, args=(stub.urls,), daemon=True)
    child.start()
    try:
        time.sleep(warmup)
        assert child.pid is not None and child.is_alive(), "the fleet process died"
        return measure(child.pid, stub, seconds)
    finally:
        child.terminate()
        child.join(10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def controller(home: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, str]]:
    """`workbench serve` on a home of its own (it starts its own local agent)."""
    import httpx

    port = _free_port()
    env = dict(os.environ, WORKBENCH_HOME=str(home), WORKBENCH_PORT=str(port),
               WORKBENCH_AGENT_PORT=str(_free_port()))
    home.mkdir(parents=True, exist_ok=True)
    out = (home / "controller-bench.out").open("ab")
    process = subprocess.Popen([sys.executable, "-m", "workbench.controller", "serve", "--port", str(port)],
                               env=env, stdout=out, stderr=out, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        token = ""
        while time.monotonic() < deadline:
            token_file = home / "controller" / "token"
            token = token_file.read_text().strip() if token_file.is_file() else ""
            with contextlib.suppress(httpx.HTTPError):
                if token and httpx.get(f"{url}/v1/events", headers={"Authorization": f"Bearer {token}"},
                                       timeout=2).status_code == 200:
                    break
            if process.poll() is not None:
                output = (home / "controller-bench.out").read_text()[-2000:]
                raise SystemExit(f"the controller exited: {output}")
            time.sleep(0.2)
        else:
            raise SystemExit("the controller did not answer")
        yield process, url, token
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
        out.close()
        with contextlib.suppress(OSError, ValueError, ProcessLookupError):
            os.kill(int((home / "agent" / "agent.pid").read_text().strip()), signal.SIGTERM)


def add_direct_hosts(url: str, token: str, agents: list[str]) -> list[str]:
    from workbench.clients.control import ControlClient
    from workbench.wire.control import AddHostRequest

    with ControlClient(url, token, timeout=60) as client:
        for index, agent in enumerate(agents):
            request = AddHostRequest(name=f"gpu-{index:03d}", target=agent.removeprefix("http://"),
                                     direct=True, token=TOKEN)
            events = list(client.add_host(request))
            if events[-1].kind != "done":
                raise SystemExit(f"adding {request.name} failed: {events[-1].message}")
    return [f"gpu-{index:03d}" for index in range(len(agents))]


def wait_ready(url: str, token: str, count: int, timeout: float = 120) -> None:
    from workbench.clients.control import ControlClient

    with ControlClient(url, token) as client:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(h.state == "ready" for h in client.hosts()) >= count:
                return
            time.sleep(0.5)
    raise SystemExit(f"fewer than {count} hosts became ready")


def tui_like(url: str, token: str, names: list[str]) -> Callable[[float], list[float]]:
    """GET /v1/gpus once a second for `seconds`, each host's history since its last sample."""
    from workbench.clients.control import AsyncControlClient

    async def loop(seconds: float) -> list[float]:
        latencies: list[float] = []
        since = {name: time.time() - 60 for name in names}  # the TUI starts with the last minute
        async with AsyncControlClient(url, token, timeout=30) as client:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                started = time.monotonic()
                body = await client.fleet_gpus(since or None)
                latencies.append((time.monotonic() - started) * 1000)
                for name, report in body.reports.items():
                    newest = max((s.at for samples in report.history.values() for s in samples), default=None)
                    if newest is not None:
                        since[name] = newest
                await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
        return latencies

    return lambda seconds: asyncio.run(loop(seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--replicas", type=int, default=3, help="replicas per host")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured time per row")
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--only", choices=["fleet", "serve"], help="run one setup only")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()

    rows: list[tuple[str, dict[str, Any]]] = []
    load_before = os.getloadavg()[0]
    with Stub(args.hosts, args.gpus, args.replicas) as stub:
        if args.only in (None, "fleet"):
            rows.append(("the Fleet alone (child process, plain links)",
                         run_fleet_alone(stub, args.warmup, args.seconds)))
            print(rows[-1])
        if args.only in (None, "serve"):
            with tempfile.TemporaryDirectory(prefix="wb-controller-poll-") as tmp, \
                    controller(Path(tmp) / "home") as (process, url, token):
                names = add_direct_hosts(url, token, stub.urls)
                wait_ready(url, token, args.hosts + 1)
                time.sleep(args.warmup)
                rows.append((f"`workbench serve`, {args.hosts} direct hosts + its local agent",
                             measure(process.pid, stub, args.seconds)))
                print(rows[-1])
                rows.append(("the same, and a TUI-like client: GET /v1/gpus at 1 Hz",
                             measure(process.pid, stub, args.seconds, tui_like(url, token, names))))
                print({k: v for k, v in rows[-1][1].items() if k != "latencies"})
    load_after = os.getloadavg()[0]

    table = ["| setup | CPU, % of one core | poll period p50 | p99 | polls/s | GET /v1/gpus p50 / p99 |",
             "|---|---|---|---|---|---|"]
    for label, row in rows:
        gpus = (f"{statistics.median(row['latencies']):.0f} / {pct(row['latencies'], 99):.0f} ms"
                if row["latencies"] else "-")
        table.append(f"| {label} | {row['cpu_pct']:.1f} % | {row['p50']:.0f} ms | {row['p99']:.0f} ms | "
                     f"{row['polls_per_s']:.0f} | {gpus} |")
    print("\n".join(table))
    if args.write:
        write_section("controller-poll", "\n".join([
            "## Controller CPU while polling a large fleet (`bench/controller_poll.py`)",
            "",
            f"{date.today().isoformat()}, {platform.machine()}, {os.cpu_count()} cores, {platform.system()}. "
            f"{args.hosts} hosts x {args.gpus} GPUs, {args.replicas} replicas each, polled at 1 Hz (each "
            "host: GET /v1/replicas every second, /v1/host every 10 s). The agents are one stub process "
            "(Starlette/uvicorn, a child process, one loopback port per agent) serving bodies built with "
            "the real wire models, values moving every second; the poll period is measured at the stub "
            "(time between two polls of the same host). CPU is the measured process's own (psutil "
            f"cpu_times, user + system) over {args.seconds:.0f} s after a {args.warmup:.0f} s warm-up, as "
            "% of one core. `workbench serve` is the real controller (router, reconciler, autoscaler, "
            "SQLite) with the hosts added through its control API in direct mode; it also polls its own "
            "local agent, and removes the stub's replicas once (they belong to no API it knows: they stay "
            "listed, stopped). The TUI-like client asks for every host's GPU report with the history "
            "since its last call, as the TUI does. Goal (issue 10): at most 10 % of one core. The stub, "
            f"the client and the controller share the machine's cores; load average {load_before:.1f} "
            f"before and {load_after:.1f} after.",
            "",
            *table,
        ]))


if __name__ == "__main__":
    main()
