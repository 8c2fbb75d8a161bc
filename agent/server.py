"""`serve`: bind 127.0.0.1 (or, with --direct, another address, TLS when a cert is given), write the
pid file, run the app under uvicorn. Replicas always listen on the box's loopback; in direct mode the
workstation reaches them through the agent's token-checked proxy route."""

from __future__ import annotations

import logging
import socket
import ssl
import sys
from pathlib import Path

import uvicorn
from workbench.agent.app import create_app
from workbench.agent.gpu.probe import make_probe
from workbench.agent.gpu.sampler import GpuSampler
from workbench.agent.gpu.service import GpuService
from workbench.agent.home import AgentHome
from workbench.agent.models.store import ModelStore
from workbench.agent.runtimes.base import Runtime
from workbench.agent.runtimes.docker import DockerRuntime
from workbench.agent.runtimes.process import ProcessRuntime
from workbench.agent.supervisor import Supervisor

LOOPBACK = "127.0.0.1"


class StartupError(SystemExit):
    """A clear one-line reason the agent cannot start."""

    def __init__(self, message: str) -> None:
        super().__init__(f"workbench agent: {message}")


def _setup_logging(home: AgentHome) -> None:
    handler = logging.FileHandler(home.log_path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).propagate = True


def bind(host: str, port: int) -> socket.socket:
    """Bind the listening socket, or exit naming the port that is taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise StartupError(
            f"cannot listen on {host}:{port} ({e.strerror}); is another agent running? "
            "choose another port with --port"
        ) from e
    sock.listen(128)
    return sock


def check_tls(cert: str | None, key: str | None) -> tuple[str, str] | None:
    """Both files or neither; each readable and a matching pair (checked now, not at first connect)."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise StartupError("TLS needs both --tls-cert and --tls-key")
    for label, path in (("--tls-cert", cert), ("--tls-key", key)):
        if not Path(path).is_file():
            raise StartupError(f"{label} {path}: no such file")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as e:
        raise StartupError(f"cannot load the TLS certificate {cert} with key {key}: {e}") from e
    return cert, key


def serve(
    home: AgentHome,
    port: int | None,
    host: str = LOOPBACK,
    direct: bool = False,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> None:
    """Run the agent until SIGTERM/SIGINT; replicas keep running after it exits."""
    if host != LOOPBACK and not direct:
        raise StartupError(
            f"refusing to listen on {host}: the agent binds {LOOPBACK} only "
            "(pass --direct to expose it, token required)"
        )
    tls = check_tls(tls_cert, tls_key)
    config = home.load_or_create_config(port)
    other = home.running_pid()
    if other is not None:
        raise StartupError(f"another agent (pid {other}) already uses {home.root}")
    port = port or config.port
    sock = bind(host, port)
    _setup_logging(home)
    home.write_pid()
    log = logging.getLogger("workbench.agent")
    log.info("agent %s listening on %s:%d (home %s)", config.agent_id, host, port, home.root)
    probe = make_probe()
    log.info("GPU probe: %s%s", probe.source, f" ({probe.note})" if probe.note else "")
    models = ModelStore(home.models_dir)
    models.ensure_dirs()
    runtimes: dict[str, Runtime] = {
        "docker": DockerRuntime(config.agent_id, simulated_gpus=probe.source == "fixture", models=models),
        "process": ProcessRuntime(home.replicas_dir, home.bundles_dir, models=models),
    }
    sampler = GpuSampler(probe)
    gpus: GpuService | None = None

    def gpu_indices() -> dict[int, str | None] | None:
        return gpus.indices() if gpus is not None else None

    supervisor = Supervisor(runtimes, gpu_indices=gpu_indices, models=models)
    gpus = GpuService(sampler, supervisor.replica_refs, supervisor.gpu_allocations)
    app = create_app(home, config, supervisor, on_shutdown=home.remove_pid, gpus=gpus)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=3,
            lifespan="on",
            ssl_certfile=tls[0] if tls else None,
            ssl_keyfile=tls[1] if tls else None,
        )
    )
    scheme = "https" if tls else "http"
    if direct and not tls:
        print(f"workbench agent: WARNING: direct mode without TLS: the bearer token and all traffic cross "
              f"the network in clear text on {host}:{port}; use --tls-cert/--tls-key unless the link "
              "itself is encrypted (VPN)", file=sys.stderr, flush=True)
        log.warning("direct mode without TLS on %s:%d", host, port)
    print(f"workbench agent listening on {scheme}://{host}:{port}", file=sys.stderr, flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        home.remove_pid()
        log.info("agent stopped")
