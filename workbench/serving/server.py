"""Running the replica app under uvicorn: listening socket, signals, exit codes."""

from __future__ import annotations

import contextlib
import math
import signal
import socket
import threading
from collections.abc import Iterator
from types import FrameType

import uvicorn

from workbench.wire.replica import RuntimeConfig

from .app import PredictorRuntime, create_app
from .logs import log

EXIT_OK = 0
EXIT_LOAD_FAILED = 3
EXIT_CANNOT_LISTEN = 4

#: Keep pooled connections from the router open longer than the router keeps them idle.
KEEP_ALIVE_S = 65


class ReplicaServer(uvicorn.Server):
    """uvicorn's server, plus: SIGTERM/SIGINT mark the runtime draining and end with exit
    code 0 (uvicorn would re-raise the signal), and a failed load ends it with code 3."""

    def __init__(self, config: uvicorn.Config, runtime: PredictorRuntime) -> None:
        super().__init__(config)
        self.runtime = runtime
        self.exit_code = EXIT_OK

    def fail(self, exc: BaseException) -> None:
        self.exit_code = EXIT_LOAD_FAILED
        self.should_exit = True

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.should_exit:
            log(f"{signal.Signals(sig).name}: draining in-flight requests, then exiting")
            self.runtime.begin_drain()
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (IPv4 or IPv6), ready for the server to listen on."""
    family, kind, proto, _, addr = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
    except BaseException:
        sock.close()
        raise
    return sock


def serve(
    cfg: RuntimeConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    fd: int | None = None,
) -> int:
    """Serve `cfg`'s predictor until SIGTERM/SIGINT (→ 0) or a failed load (→ 3)."""
    try:
        sock = socket.socket(fileno=fd) if fd is not None else listen(host, port)
    except OSError as exc:
        where = f"fd {fd}" if fd is not None else f"{host}:{port}"
        log(f"cannot listen on {where}: {exc}", tagged=False)
        return EXIT_CANNOT_LISTEN
    sock.setblocking(False)
    server: ReplicaServer | None = None

    def on_fatal(exc: BaseException) -> None:
        if server is not None:
            server.fail(exc)

    app = create_app(cfg, on_fatal=on_fatal)
    config = uvicorn.Config(
        app,
        loop="auto",
        http="auto",
        ws="none",
        lifespan="on",
        access_log=False,
        log_level="warning",
        server_header=False,
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=math.ceil(cfg.serving.graceful_shutdown),
    )
    server = ReplicaServer(config, app.state.runtime)
    name = sock.getsockname()
    log(f"serving api {cfg.api!r} on {name}; loading the predictor")
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    if server.exit_code == EXIT_OK:
        log("stopped")
    return server.exit_code
