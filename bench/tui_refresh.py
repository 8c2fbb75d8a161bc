"""The TUI against a large fleet: time per refresh and key-press-to-screen latency.

The app runs headless (`App.run_test`) against a control API that serves 64 hosts x 8 GPUs and
50 APIs, polling it at 1 Hz. A real controller cannot host 64 agents on the dev machine, so the
control API is a small local Starlette app (uvicorn, in a child process) whose bodies
are built with the real pydantic models (workbench/wire/control.py, workbench/wire/agent.py):
random but plausible values that change every second. The TUI's own code path is unchanged: its
worker fetches /v1/hosts, /v1/apis and /v1/gpus (every GPU host's report, history since the last
poll), parses them with the same models, then applies the result and redraws the tables.

Measured:

- refresh: the `Polled` handler (state applied, every mounted screen's tables refilled), and the
  same plus the paint that follows (until `call_after_refresh` fires);
- key latency: press "2"/"1" (switch between the APIs and hosts screens) until the other screen is
  on top and painted, while polls keep landing.

    .venv/bin/python -m bench.tui_refresh [--refreshes 30] [--keys 30] [--write]

`stub_app(fixed=True)` (no randomness, fixed clock) also serves the TUI snapshot tests.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import platform
import random
import socket
import statistics
import threading
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from workbench.controller.gpu_api import parse_since
from workbench.wire.agent import DockerStatus, GpuInfo, GpuReport, GpuSample, HostInfo
from workbench.wire.control import (
    ApiDetail,
    ApiSummary,
    EventBody,
    FleetGpusBody,
    HostBody,
    ReplicaBody,
    ReplicaCounts,
    TrafficBody,
)

GIB = 1024**3
FIXED_NOW = 1_790_000_000.0  # the clock of fixed (snapshot) bodies


class Fleet:
    """Bodies for `hosts` hosts x `gpus` GPUs and `apis` APIs. With `fixed`, every value is a
    function of the names only (stable for snapshots); otherwise values move each second."""

    def __init__(self, hosts: int = 64, gpus: int = 8, apis: int = 50, *, fixed: bool = False,
                 unreachable: tuple[str, ...] = (), failed_api: str | None = None):
        self.host_names = ["local"] + [f"gpu-{i:02d}" for i in range(1, hosts)]
        self.gpu_count = gpus
        self.api_names = [f"api-{i:02d}" for i in range(apis)]
        self.fixed = fixed
        self.unreachable = set(unreachable)
        self.failed_api = failed_api
        self._alloc: dict[tuple[str, int], list[str]] | None = None

    def now(self) -> float:
        return FIXED_NOW if self.fixed else time.time()

    def rng(self, *key: object) -> random.Random:
        tick = 0 if self.fixed else int(time.time())
        return random.Random(f"{tick}:{':'.join(map(str, key))}")

    def replica_id(self, api: str, n: int) -> str:
        return f"{api}-{n:04x}{self.api_names.index(api):04x}"

    def placement(self, api: str) -> list[tuple[str, str, int]]:
        """(replica id, host, gpu index) for each replica of `api`."""
        index = self.api_names.index(api)
        out = []
        for n in range(1 + index % 3):
            slot = index * 3 + n
            host = self.host_names[slot // self.gpu_count % len(self.host_names)]
            out.append((self.replica_id(api, n), host, slot % self.gpu_count))
        return out

    def gpu(self, host: str, index: int, allocated: list[str]) -> GpuInfo:
        r = self.rng(host, index)
        util = round(r.uniform(5, 95), 0) if allocated else 0.0
        used = int(r.uniform(2, 70) * GIB) if allocated else 0
        return GpuInfo(index=index, uuid=f"GPU-{host}-{index}", name="NVIDIA H100 80GB HBM3",
                       memory_total_bytes=80 * GIB, memory_used_bytes=used,
                       memory_free_bytes=80 * GIB - used, utilization_gpu=util,
                       utilization_memory=round(util * 0.6, 0), temperature_c=round(30 + util / 3, 0),
                       power_draw_w=round(70 + util * 6, 0), power_limit_w=700.0,
                       allocated_to=allocated, allocated_share=float(len(allocated)))

    def allocations(self) -> dict[tuple[str, int], list[str]]:
        if self._alloc is not None:
            return self._alloc
        out: dict[tuple[str, int], list[str]] = {}
        for api in self.api_names:
            for rid, host, gpu in self.placement(api):
                out.setdefault((host, gpu), []).append(rid)
        self._alloc = out
        return out

    def gpus_of(self, host: str) -> list[GpuInfo]:
        alloc = self.allocations()
        return [self.gpu(host, i, alloc.get((host, i), [])) for i in range(self.gpu_count)]

    def host(self, name: str) -> HostBody:
        now = self.now()
        down = name in self.unreachable
        info = HostInfo(hostname=name, os="Linux", arch="x86_64", python="3.11.9", agent_version="0.1.0",
                        cpu_count=64, mem_total_bytes=512 * GIB, mem_available_bytes=300 * GIB,
                        disk_free_bytes=900 * GIB, docker=DockerStatus(available=True, version="24.0.7"),
                        runtimes=["docker", "process"], gpus=self.gpus_of(name), gpu_driver_version="550.54")
        replicas = sum(1 for api in self.api_names for _, h, _ in self.placement(api) if h == name)
        return HostBody(name=name, address="127.0.0.1" if name == "local" else f"10.0.0.{len(name)}",
                        kind="local" if name == "local" else "ssh", agent_version="0.1.0",
                        state="unreachable" if down else "ready",
                        last_seen=now - (95 if down else 1), info=info, replicas=replicas,
                        message="agent did not answer: timed out" if down else None)

    def gpu_report(self, name: str, since: float | None = None) -> GpuReport:
        """Like an agent's: the last 10 minutes of 1 Hz samples, or those taken after `since`."""
        gpus = self.gpus_of(name)
        now = int(self.now())
        first = now - 599 if since is None else max(now - 599, int(since) + 1)
        history = {}
        for gpu in gpus:
            base = gpu.utilization_gpu or 0.0
            samples = []
            for at in range(first, now + 1):
                r = random.Random(f"{name}:{gpu.index}:{at}")
                util = max(0.0, min(100.0, base + r.uniform(-20, 20))) if base else 0.0
                samples.append(GpuSample(
                    at=float(at), utilization_gpu=util,
                    memory_used_bytes=gpu.memory_used_bytes, temperature_c=gpu.temperature_c,
                    power_draw_w=gpu.power_draw_w))
            history[gpu.index] = samples
        return GpuReport(source="fixture", driver_version="550.54", gpus=gpus, history=history)

    def summary(self, api: str) -> ApiSummary:
        r = self.rng(api)
        placed = self.placement(api)
        failed = 1 if api == self.failed_api else 0
        down = sum(1 for _, h, _ in placed if h in self.unreachable)
        counts = ReplicaCounts(requested=len(placed), ready=len(placed) - failed - down,
                               up_to_date=len(placed), failed=failed)
        status = "error" if failed else "updating" if down else "live"
        return ApiSummary(name=api, status=status, replicas=counts, runtime="docker",
                          artifact=f"workbench/{api}:{api.encode().hex()[:12]}",
                          spec_hash=api.encode().hex()[:12],
                          updated_at=self.now() - 3600, endpoint=f"http://127.0.0.1:8080/{api}",
                          traffic=TrafficBody(requests_per_second=round(r.uniform(0, 400), 1),
                                              in_flight=r.randint(0, 8)),
                          message="1 replica failed: predictor __init__ raised RuntimeError"
                          if failed else None)

    def detail(self, api: str) -> ApiDetail:
        summary = self.summary(api)
        replicas = []
        for n, (rid, host, gpu) in enumerate(self.placement(api)):
            failed = api == self.failed_api and n == 0
            state = "failed" if failed else "starting" if host in self.unreachable else "ready"
            replicas.append(ReplicaBody(
                id=rid, host=host, state=state, url=None if failed else f"http://{host}:9{n:03d}",
                restarts=3 if failed else 0, spec_hash=summary.spec_hash or "", up_to_date=True,
                created_at=self.now() - 600, gpu_ids=[str(gpu)],
                message="predictor __init__ raised RuntimeError: weights missing" if failed else None,
                log_tail=["Traceback (most recent call last):", "RuntimeError: weights missing"]
                if failed else []))
        events = [EventBody(at=self.now() - 60, api=api, kind="replica",
                            message=f"replica {replicas[0].id} {replicas[0].state}")]
        return ApiDetail(**summary.model_dump(), replica_list=replicas, events=events)


def stub_app(fleet: Fleet) -> Starlette:
    def dump(model: Any) -> Response:
        if isinstance(model, list):
            return JSONResponse([m.model_dump(mode="json") for m in model])
        return JSONResponse(model.model_dump(mode="json"))

    async def hosts(request: Request) -> Response:
        return dump([fleet.host(name) for name in fleet.host_names])

    async def gpus(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in fleet.host_names:
            return JSONResponse({"detail": "no such host"}, status_code=404)
        if name in fleet.unreachable:
            return JSONResponse({"detail": f"host {name} is unreachable"}, status_code=503)
        since = request.query_params.get("since")
        return dump(fleet.gpu_report(name, float(since) if since else None))

    async def fleet_gpus(request: Request) -> Response:
        since = parse_since(request.query_params.getlist("since"))
        return JSONResponse(FleetGpusBody(reports={
            name: fleet.gpu_report(name, since.get(name)) for name in fleet.host_names
            if name not in fleet.unreachable}).model_dump(mode="json"))

    async def apis(request: Request) -> Response:
        return dump([fleet.summary(name) for name in fleet.api_names])

    async def api(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in fleet.api_names:
            return JSONResponse({"detail": "no such API"}, status_code=404)
        return dump(fleet.detail(name))

    return Starlette(routes=[
        Route("/v1/hosts", hosts), Route("/v1/hosts/{name}/gpus", gpus), Route("/v1/gpus", fleet_gpus),
        Route("/v1/apis", apis), Route("/v1/apis/{name}", api),
    ])


def _serve(fleet: Fleet, port: int) -> None:
    uvicorn.run(stub_app(fleet), host="127.0.0.1", port=port, log_level="warning", access_log=False,
                lifespan="off")


class StubServer:
    """uvicorn serving `stub_app(fleet)` on a free loopback port: in a child process (so that
    building bodies does not compete with the measured UI loop for the GIL), or in a daemon
    thread of this process with `thread=True` (tests)."""

    def __init__(self, fleet: Fleet, *, thread: bool = False):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: uvicorn.Server | None = None
        self.runner: threading.Thread | multiprocessing.process.BaseProcess
        if thread:
            config = uvicorn.Config(stub_app(fleet), host="127.0.0.1", port=self.port, log_level="warning",
                                    access_log=False, lifespan="off")
            self.server = uvicorn.Server(config)
            self.runner = threading.Thread(target=self.server.run, daemon=True)
        else:
            self.runner = multiprocessing.get_context("fork").Process(
                target=_serve, args=(fleet, self.port), daemon=True)

    def __enter__(self) -> StubServer:
        self.runner.start()
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or not self.runner.is_alive():
                    raise RuntimeError("the stub control API did not start") from None
                time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.server is not None:
            self.server.should_exit = True
        elif isinstance(self.runner, multiprocessing.process.BaseProcess):
            self.runner.terminate()
        self.runner.join(10)


# -- the measurement ----------------------------------------------------------------------------
def press(app: Any, key: str) -> None:
    """Hand a key to the app as the terminal driver would. (`Pilot.press` also waits until the
    whole process is idle, which a 1 Hz poll worker rarely is: it would measure the wait.)"""
    from textual import events

    event = events.Key(key, key if len(key) == 1 else None)
    event.set_sender(app)
    app._driver.send_message(event)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def measure(url: str, refreshes: int, keys: int) -> dict[str, list[float]]:
    from workbench.tui import app as tui_app
    from workbench.tui.app import Polled, WorkbenchApp
    from workbench.tui.screens.apis import ApisScreen
    from workbench.tui.screens.fleet import FleetScreen
    from workbench.tui.table import LiveTable

    from workbench.clients.control import ControllerConfig

    handled: list[float] = []
    painted: list[float] = []
    worker: list[float] = []  # CPU seconds of each poll's worker thread: fetch, parse, build rows

    class Timed(WorkbenchApp):
        # relative to the subclass's module otherwise
        CSS_PATH = str(Path(tui_app.__file__).with_name("workbench.tcss"))

        def _poll(self) -> None:
            started = time.thread_time()
            super()._poll()
            worker.append((time.thread_time() - started) * 1000)

        def on_polled(self, message: Polled) -> None:
            started = time.perf_counter()
            super().on_polled(message)
            message.prevent_default()  # Textual would call the base class's handler again
            handled.append((time.perf_counter() - started) * 1000)
            self.call_after_refresh(lambda: painted.append((time.perf_counter() - started) * 1000))

    app = Timed(ControllerConfig(url, "token"), interval=1.0)
    key_ms: list[float] = []
    move_ms: list[float] = []
    async with app.run_test(size=(160, 48)) as pilot:
        async def wait(condition: Callable[[], object], timeout: float, what: str) -> None:
            deadline = time.monotonic() + timeout
            while not condition():
                if time.monotonic() > deadline:
                    raise SystemExit(f"timed out waiting for {what}")
                await asyncio.sleep(0.001)

        await wait(lambda: app.state.loaded and len(app.state.hosts) > 1, 60, "the first poll")
        await pilot.press("2")  # mount the APIs screen once, so both screens refresh from now on
        await wait(lambda: isinstance(app.screen, ApisScreen), 30, "the APIs screen")
        await pilot.press("1")
        await wait(lambda: isinstance(app.screen, FleetScreen), 30, "the hosts screen")
        handled.clear()
        painted.clear()
        worker.clear()
        async def painted_after(key: str, shown: Callable[[], object]) -> float:
            """ms from handing `key` to the app until `shown()` holds and a frame has painted."""
            done = asyncio.get_running_loop().create_future()
            started = time.perf_counter()
            press(app, key)
            await wait(shown, 10, f"the effect of {key!r}")

            def mark() -> None:
                if not done.done():
                    done.set_result(time.perf_counter())

            app.call_after_refresh(mark)
            return (await asyncio.wait_for(done, 10) - started) * 1000

        for n in range(keys):  # screen switches, spread over the polls
            key, target = ("2", ApisScreen) if n % 2 == 0 else ("1", FleetScreen)
            await asyncio.sleep(random.uniform(0.05, 0.5))
            def on_top(target: type = target) -> bool:
                return isinstance(app.screen, target)

            key_ms.append(await painted_after(key, on_top))
        gpus = app.screen.query_one("#gpus", LiveTable)
        gpus.focus()
        await asyncio.sleep(0.2)
        for n in range(keys):  # the cursor down the 512-row GPU table and back up
            key, step = ("down", 1) if (n // 10) % 2 == 0 else ("up", -1)
            await asyncio.sleep(random.uniform(0.05, 0.3))
            row = gpus.cursor_row
            def moved(row: int = row, step: int = step) -> bool:
                return gpus.cursor_row == row + step

            move_ms.append(await painted_after(key, moved))
        await wait(lambda: len(painted) >= refreshes, refreshes * 5 + 30, f"{refreshes} refreshes")
        app.exit()
    return {"handled": handled[:refreshes], "painted": painted[:refreshes], "key": key_ms,
            "move": move_ms, "worker": worker[:refreshes]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=64)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--apis", type=int, default=50)
    parser.add_argument("--refreshes", type=int, default=30)
    parser.add_argument("--keys", type=int, default=30)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()

    fleet = Fleet(args.hosts, args.gpus, args.apis)
    with StubServer(fleet) as server:
        result = asyncio.run(measure(server.url, args.refreshes, args.keys))

    def line(label: str, values: list[float], target: str) -> str:
        return (f"| {label} | {len(values)} | {statistics.median(values):.1f} ms | "
                f"{pct(values, 99):.1f} ms | {max(values):.1f} ms | {target} |")

    rows = [
        line("refresh, UI thread: poll applied, changed cells handed to the tables", result["handled"],
             "< 50 ms (p99)"),
        line("refresh, the same until the frame is painted", result["painted"], "< 50 ms (p99)"),
        line("refresh, poll worker thread CPU (fetch, parse, build rows)", result["worker"], "-"),
        line("key down/up in the 512-row GPU table, until painted", result["move"], "< 50 ms"),
        line('key "1"/"2" to the other screen, until painted', result["key"], "< 50 ms"),
    ]
    body = "\n".join([
        "## TUI refresh and key latency (`bench/tui_refresh.py`)",
        "",
        f"{date.today().isoformat()}, {platform.machine()}, {platform.system()}, "
        f"{os.cpu_count()} cores; the app headless (`App.run_test`, 160x48) polling at 1 Hz a control "
        f"API with {args.hosts} hosts x {args.gpus} GPUs and {args.apis} APIs. A real controller "
        "cannot host that many agents here, so the control API is a local Starlette/uvicorn stub in "
        "a child process, serving bodies built with the real pydantic models "
        "(`workbench/wire/control.py`, `workbench/wire/agent.py`) with random but plausible "
        "values that change every second (every GPU row changes every poll: the worst case), and "
        "GPU history the way agents serve it (only the samples after `since`). The TUI's fetching, "
        "parsing, state and drawing code is the real one: per poll the worker makes three requests "
        "(/v1/hosts, /v1/apis, /v1/gpus), folds them into a snapshot and builds every table's rows; "
        "the UI thread swaps the snapshot in and redraws the rows that changed. Keys are handed to "
        "the app as the terminal driver would (`Pilot.press` also waits for the process to go "
        "idle). The stub and the poll worker share the two cores with the UI loop.",
        "",
        "| what | samples | p50 | p99 | max | target |",
        "|---|---|---|---|---|---|",
        *rows,
    ])
    print(body)
    if args.write:
        from bench.report import write_section

        write_section("tui_refresh", body)


if __name__ == "__main__":
    main()
