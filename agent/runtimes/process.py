"""The process runtime: a replica is `venv/bin/python -m workbench.serving` in its own session,
or, for a container API, its `command + args` run in the bundle's project folder (the bundle's
venv first on PATH) with PORT set to a port the agent picked, in a session of its own."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
from workbench.agent.listening import process_tree_ports
from workbench.agent.logfiles import FileFollower, shown, tail_lines
from workbench.agent.models.layout import replica_env
from workbench.agent.models.store import ModelStore
from workbench.agent.runtimes.base import (
    ArtifactMissing,
    Handle,
    Listening,
    LogFollower,
    LogQuery,
    RunStatus,
    Runtime,
)
from workbench.agent.runtimes.bundle import BundleBuilder

from workbench.wire.agent import BuildEvent, ReplicaRequest
from workbench.wire.replica import PORT_ENV, RUNTIME_CONFIG_ENV, expand_port

#: bytes at the end of a log file that a run's tail is looked for in
RUN_LOG_WINDOW = 1 << 20

#: Environment variables of the agent that never reach a replica.
SECRET_ENV_PREFIXES = ("WORKBENCH_AGENT_",)


def _bind(port: int | None) -> socket.socket:
    """A listening socket on 127.0.0.1 (the old port when it is free, else any)."""
    for candidate in ([port] if port else []) + [0]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", candidate))
        except OSError:
            sock.close()
            continue
        sock.listen(128)
        return sock
    raise OSError("cannot bind a port on 127.0.0.1")


def _free_port(old: int | None) -> int:
    """A port on 127.0.0.1 for a server to bind itself: the old one when it is free, else any."""
    sock = _bind(old)
    try:
        return int(sock.getsockname()[1])
    finally:
        sock.close()


def _exit_code(returncode: int) -> int:
    """Popen's -N (killed by signal N) as the shell's 128+N."""
    return 128 - returncode if returncode < 0 else returncode


class ProcessRuntime(Runtime):
    """Replicas as local processes; state is kept in replicas/<id>.json (+ <id>.log)."""

    kind = "process"

    def __init__(self, replicas_dir: Path, bundles_dir: Path, models: ModelStore | None = None) -> None:
        self.replicas_dir = replicas_dir
        self.models = models
        self.bundles = BundleBuilder(bundles_dir)
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._stampers: dict[int, subprocess.Popen[bytes]] = {}  # replica pid -> its logstamp

    # -- artifacts ---------------------------------------------------------------------------
    def unavailable_reason(self) -> str | None:
        return None

    def artifact_exists(self, name: str) -> bool:
        return self.bundles.exists(name)

    def build(self, context_path: str, artifact: str) -> Iterator[BuildEvent]:
        return self.bundles.build(context_path, artifact)

    # -- paths and meta ----------------------------------------------------------------------
    def meta_path(self, replica_id: str) -> Path:
        return self.replicas_dir / f"{replica_id}.json"

    def log_path(self, replica_id: str) -> Path:
        return self.replicas_dir / f"{replica_id}.log"

    def _write_meta(self, h: Handle) -> None:
        meta = {
            "id": h.replica_id,
            "request": h.request.model_dump(mode="json"),
            "pid": h.pid,
            "port": h.extra.get("port"),
            "created_at": h.created_at,
            "started_at": h.started_at,
            "proc_create_time": h.extra.get("proc_create_time"),
            "restarts": h.restarts,
            "spawn_error": h.extra.get("spawn_error"),
            "log_offset": h.extra.get("log_offset"),
        }
        tmp = self.meta_path(h.replica_id).with_suffix(".tmp")
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, self.meta_path(h.replica_id))

    # -- lifecycle ---------------------------------------------------------------------------
    def create(self, replica_id: str, request: ReplicaRequest, created_at: float) -> Handle:
        if not self.artifact_exists(request.artifact):
            raise ArtifactMissing(request.artifact)
        handle = Handle(replica_id=replica_id, request=request, created_at=created_at)
        self._spawn(handle)
        return handle

    def restart(self, handle: Handle) -> None:
        if not self.artifact_exists(handle.request.artifact):
            raise ArtifactMissing(handle.request.artifact)
        self._spawn(handle)

    def _env(self, request: ReplicaRequest, bundle: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(SECRET_ENV_PREFIXES)}
        env.pop("PYTHONHOME", None)
        venv = bundle / "venv"
        env["VIRTUAL_ENV"] = str(venv)
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        if request.models:
            # no mounts here: the replica reads the trees in the cache (read-only files) where they are
            if self.models is None:
                raise RuntimeError("this agent has no model cache")
            trees = {m.id: str(self.models.tree(m.id)) for m in request.models}
            env.update(replica_env(request.models, trees))
        env.update(request.env)
        if request.runtime_config is not None:
            cfg = request.runtime_config.model_copy(update={"project_dir": str(bundle / "project")})
            env[RUNTIME_CONFIG_ENV] = cfg.model_dump_json()
        if request.gpu_ids:
            # NVML numbers GPUs by PCI bus id; make CUDA agree so index N is the same device
            env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
            env["CUDA_VISIBLE_DEVICES"] = ",".join(request.gpu_ids)
            env["WORKBENCH_GPU_IDS"] = ",".join(request.gpu_ids)
        else:
            env.pop("WORKBENCH_GPU_IDS", None)
        return env

    def _spawn(self, handle: Handle) -> None:
        self._reap(handle)  # the previous run's Popen, if any
        old_port = handle.extra.get("port")
        log_path = self.log_path(handle.replica_id)
        handle.extra["log_offset"] = log_path.stat().st_size if log_path.exists() else 0
        handle.extra["spawn_error"] = None
        if handle.request.server is not None:
            port = _free_port(old_port if isinstance(old_port, int) else None)
            proc = self._spawn_server(handle, port)
        else:
            proc, port = self._spawn_predictor(handle, old_port if isinstance(old_port, int) else None)
        handle.started_at = time.time()
        handle.extra["port"] = port
        self._set_urls(handle, port)
        if proc is None:
            handle.pid = None
            handle.extra["proc_create_time"] = None
            self._write_meta(handle)
            return
        self._children[proc.pid] = proc
        handle.pid = proc.pid
        try:
            handle.extra["proc_create_time"] = psutil.Process(proc.pid).create_time()
        except psutil.Error:
            handle.extra["proc_create_time"] = None
        self._write_meta(handle)

    def _stamped_log(self, handle: Handle) -> subprocess.Popen[bytes]:
        """The logstamp process a replica writes into: it appends each line, with its time, to
        the replica's log (what `logs -t` shows and `--since` selects by)."""
        stamper = subprocess.Popen(
            [sys.executable, "-m", "workbench.agent.logstamp", str(self.log_path(handle.replica_id))],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        assert stamper.stdin is not None
        return stamper

    def _spawn_predictor(self, handle: Handle, old_port: int | None) -> tuple[subprocess.Popen[bytes], int]:
        """The predictor runtime, on a socket bound here and handed over (no port race)."""
        bundle = self.bundles.path(handle.request.artifact)
        sock = _bind(old_port)
        port = sock.getsockname()[1]
        fd = sock.fileno()
        stamper = self._stamped_log(handle)
        assert stamper.stdin is not None
        try:
            proc = subprocess.Popen(
                [
                    str(bundle / "venv" / "bin" / "python"),
                    "-m",
                    "workbench.serving",
                    "--fd",
                    str(fd),
                    "--replica-id",
                    handle.replica_id,
                ],
                cwd=bundle / "project",
                env=self._env(handle.request, bundle),
                stdin=subprocess.DEVNULL,
                stdout=stamper.stdin,
                stderr=subprocess.STDOUT,
                pass_fds=(fd,),
                start_new_session=True,
            )
        except BaseException:
            stamper.kill()
            stamper.wait()
            raise
        finally:
            stamper.stdin.close()  # the replica holds the pipe's only writing end now
            sock.close()
        self._stampers[proc.pid] = stamper
        return proc, port

    def _spawn_server(self, handle: Handle, port: int) -> subprocess.Popen[bytes] | None:
        """A container API's command on `port`; None (and the reason in the log and the handle)
        when it cannot be started at all, e.g. a command that is not installed."""
        server = handle.request.server
        assert server is not None
        bundle = self.bundles.path(handle.request.artifact)
        env = self._env(handle.request, bundle)
        env.update({key: expand_port(value, port) for key, value in handle.request.env.items()})
        env[PORT_ENV] = str(port)
        argv = server.argv(port)
        stamper = self._stamped_log(handle)
        assert stamper.stdin is not None
        try:
            proc = subprocess.Popen(argv, cwd=bundle / "project", env=env, stdin=subprocess.DEVNULL,
                                    stdout=stamper.stdin, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as error:
            reason = f"cannot run {argv[0]!r}: {error.strerror or error}"
            if isinstance(error, FileNotFoundError):
                reason += f" (not found in the bundle's venv or on PATH={env.get('PATH', '')})"
            with contextlib.suppress(OSError):
                stamper.stdin.write(f"workbench agent: {reason}\n".encode())
            stamper.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                stamper.wait(timeout=2)
            handle.extra["spawn_error"] = reason
            return None
        except BaseException:
            stamper.kill()
            stamper.wait()
            raise
        finally:
            if not stamper.stdin.closed:
                stamper.stdin.close()  # the server holds the pipe's only writing end now
        self._stampers[proc.pid] = stamper
        return proc

    def _set_urls(self, handle: Handle, port: int | None) -> None:
        if not port:
            handle.url = handle.health_url = None
            return
        handle.url = f"http://127.0.0.1:{port}"
        check = handle.request.health
        handle.health_url = f"http://127.0.0.1:{check.port or port}{check.path}"

    def save(self, handle: Handle) -> None:
        """Persist the handle (e.g. a new restart count)."""
        self._write_meta(handle)

    def adopt(self) -> list[Handle]:
        handles = []
        for meta_file in sorted(self.replicas_dir.glob("*.json")):
            try:
                meta = json.loads(meta_file.read_text())
                request = ReplicaRequest.model_validate(meta["request"])
            except (OSError, ValueError, KeyError):
                continue
            port = meta.get("port")
            handle = Handle(
                replica_id=str(meta.get("id") or meta_file.stem),
                request=request,
                created_at=float(meta.get("created_at") or time.time()),
                started_at=meta.get("started_at"),
                pid=meta.get("pid"),
                restarts=int(meta.get("restarts") or 0),
                extra={"port": port, "proc_create_time": meta.get("proc_create_time"),
                       "spawn_error": meta.get("spawn_error"), "log_offset": meta.get("log_offset")},
            )
            self._set_urls(handle, port if isinstance(port, int) else None)
            handles.append(handle)
        return handles

    def _process(self, handle: Handle) -> psutil.Process | None:
        """The replica's live process, checked against its recorded start time (pid reuse)."""
        if not handle.pid:
            return None
        try:
            p = psutil.Process(handle.pid)
            created = handle.extra.get("proc_create_time")
            if isinstance(created, float) and abs(p.create_time() - created) > 0.5:
                return None
            if p.status() == psutil.STATUS_ZOMBIE and handle.pid not in self._children:
                return None
            return p
        except psutil.Error:
            return None

    def status(self, handle: Handle) -> RunStatus:
        spawn_error = handle.extra.get("spawn_error")
        if spawn_error:
            return RunStatus(running=False, detail=str(spawn_error))
        child = self._children.get(handle.pid or -1)
        if child is not None:
            code = child.poll()
            if code is None:
                return RunStatus(running=True)
            return RunStatus(running=False, exit_code=_exit_code(code))
        if self._process(handle) is not None:
            return RunStatus(running=True)
        return RunStatus(running=False, detail="process is gone")

    def stop(self, handle: Handle, grace: float) -> None:
        proc = self._process(handle)
        if proc is None or handle.pid is None:
            self._reap(handle)
            return
        pgid = handle.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        child = self._children.get(handle.pid)
        try:
            if child is not None:
                child.wait(timeout=grace)
            else:
                proc.wait(timeout=grace)
        except (subprocess.TimeoutExpired, psutil.TimeoutExpired):
            pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        self._reap(handle)

    def _reap(self, handle: Handle) -> None:
        child = self._children.pop(handle.pid or -1, None)
        if child is not None:
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        stamper = self._stampers.pop(handle.pid or -1, None)
        if stamper is not None:  # it ends at the replica's last output; wait briefly, never kill
            with contextlib.suppress(subprocess.TimeoutExpired):
                stamper.wait(timeout=2)

    def remove(self, handle: Handle) -> None:
        for path in (self.meta_path(handle.replica_id), self.log_path(handle.replica_id)):
            path.unlink(missing_ok=True)

    # -- logs --------------------------------------------------------------------------------
    def log_tail(self, handle: Handle, lines: int, query: LogQuery | None = None) -> list[str]:
        return tail_lines(self.log_path(handle.replica_id), lines, query)

    def run_log_tail(self, handle: Handle, lines: int) -> list[str]:
        """The last run's lines: the log file holds every run, this one from `log_offset` on."""
        offset = handle.extra.get("log_offset")
        tail = self.log_tail(handle, lines)
        if not isinstance(offset, int) or offset <= 0:
            return tail
        try:
            with self.log_path(handle.replica_id).open("rb") as log:
                size = log.seek(0, os.SEEK_END)
                log.seek(max(offset, size - RUN_LOG_WINDOW))
                since = log.read().splitlines(keepends=True)
        except OSError:
            return tail
        plain = LogQuery()
        text = [line.decode(errors="replace").rstrip("\r\n")
                for raw in since if (line := shown(raw, plain, None)) is not None]
        return text[-lines:] if lines else []

    def listening(self, handle: Handle) -> Listening | None:
        port = handle.extra.get("port")
        if handle.request.server is None or not handle.pid or not isinstance(port, int):
            return None
        if self._process(handle) is None:
            return None
        ports = process_tree_ports(handle.pid)
        return None if ports is None else Listening(port, "$PORT", frozenset(ports), "127.0.0.1")

    def follow_logs(self, handle: Handle, tail: int, query: LogQuery | None = None) -> LogFollower:
        return FileFollower(self.log_path(handle.replica_id), tail, query=query)
