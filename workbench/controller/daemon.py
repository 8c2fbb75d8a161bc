"""`workbench serve`: one process, one uvicorn server; SIGTERM drains then exits 0."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import sys
from types import FrameType

import uvicorn

from workbench.controller.app import Controller, is_loopback
from workbench.controller.home import ControllerHome, default_port
from workbench.controller.lock import AlreadyRunning, ControllerLock
from workbench.controller.usage import DEFAULT_RETENTION_SECONDS
from workbench.daemons import LaunchFailed
from workbench.wire.units import parse_duration

log = logging.getLogger("workbench.controller")

DRAIN_SECONDS = 30.0
GC_YOUNG_THRESHOLD = 10_000  # allocations between collections of the young generation (default 700)


def _setup_logging(home: ControllerHome) -> None:
    form = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger("workbench")
    root.setLevel(logging.INFO)
    for handler in (logging.StreamHandler(sys.stderr), logging.FileHandler(home.log_file)):
        handler.setFormatter(form)
        root.addHandler(handler)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and the
    # connections this socket accepts inherit it. With proto 0, Nagle held the second write of an
    # answer (the router's body after its headers) until the client's delayed ACK: +40 ms on every
    # request of a kept-alive connection (found by bench/prefix_routing.py)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """uvicorn, but a signal first drains the router, and exits 0 instead of re-raising it."""

    def __init__(self, config: uvicorn.Config, controller: Controller):
        super().__init__(config)
        self.controller = controller
        self.loop: asyncio.AbstractEventLoop | None = None
        self._draining = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._draining:
            self.force_exit = True
            return
        self._draining = True
        log.info("signal %d: draining, then stopping (replicas keep running)", sig)
        if self.loop is not None:
            self.loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._drain_and_exit()))
        else:
            self.should_exit = True

    async def _drain_and_exit(self) -> None:
        try:
            await self.controller.drain(DRAIN_SECONDS)
        finally:
            self.should_exit = True


def tune_collector() -> None:
    """Once started: what start-up built (the apps, their models, the restored fleet) lives as long
    as the process, so no collection walks it again (gc.freeze); and the young generation is
    collected every GC_YOUNG_THRESHOLD allocations instead of 700. Nearly all of the poll path's
    garbage is freed by reference counting; with the defaults, collections were ~15 % of the
    controller's CPU while it polled 100 hosts (bench/controller_poll.py)."""
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def usage_retention(value: str | None = None) -> float:
    """Seconds of usage rollups kept: `value`, else $WORKBENCH_USAGE_RETENTION, else 30 days; a bad
    value raises ValueError naming where it came from."""
    source = "--usage-retention"
    if value is None:
        value, source = os.environ.get("WORKBENCH_USAGE_RETENTION") or None, "WORKBENCH_USAGE_RETENTION"
    if value is None:
        return DEFAULT_RETENTION_SECONDS
    try:
        return parse_duration(value)
    except ValueError as error:
        raise ValueError(f"{source}={value!r}: {error}") from None


async def _run(home: ControllerHome, host: str, port: int, sock: socket.socket,
               retention: float = DEFAULT_RETENTION_SECONDS) -> None:
    controller = Controller(home, host=host, port=port, usage_retention=retention)
    await controller.start()
    tune_collector()
    config = uvicorn.Config(controller, lifespan="off", http="httptools", log_level="warning",
                            access_log=False, timeout_graceful_shutdown=int(DRAIN_SECONDS))
    server = _Server(config, controller)
    server.loop = asyncio.get_running_loop()
    log.info("controller serving on %s (control API /v1, router /<api>)", controller.base_url)
    try:
        await server.serve(sockets=[sock])
    finally:
        await controller.close()


def serve(host: str = "127.0.0.1", port: int | None = None, retention: str | None = None) -> int:
    """Run the controller until SIGTERM/SIGINT; returns the exit code."""
    home = ControllerHome.default()
    home.create()
    try:
        port = port if port is not None else default_port()
        kept = usage_retention(retention)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    lock = ControllerLock(home)
    try:
        lock.acquire()
    except AlreadyRunning as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    try:
        try:
            sock = _bind(host, port)
        except OSError as error:
            print(f"error: cannot listen on {host}:{port}: {error.strerror or error}; the port is taken by "
                  "another program — free it or choose another with --port or WORKBENCH_PORT=NNNN",
                  file=sys.stderr)
            return 1
        home.write_info(pid=os.getpid(), host=host, port=port)
        _setup_logging(home)
        if not is_loopback(host):
            log.warning("listening on %s, not a loopback address: the router requires API keys "
                        "(routing.api_keys_env) and the control API its token", host)
            print(f"warning: workbench is reachable from other machines on {host}:{port}; every API "
                  "needs API keys (routing.api_keys_env)", file=sys.stderr)
        try:
            try:
                import uvloop
            except ImportError:  # pragma: no cover - CPython on Linux has uvloop
                asyncio.run(_run(home, host, port, sock, kept))
            else:
                uvloop.run(_run(home, host, port, sock, kept))
        except LaunchFailed as error:
            log.error("cannot start the local agent: %s", error)
            return 1
        except KeyboardInterrupt:
            pass
        return 0
    finally:
        home.clear_info(os.getpid())
        lock.release()
