"""The process runtime: a replica is `venv/bin/python -m workbench.serving` in its own session."""

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
from workbench.agent.logfiles import FileFollower, tail_lines
from workbench.agent.runtimes.base import (
    ArtifactMissing,
    Handle,
    LogFollower,
    LogQuery,
    RunStatus,
    Runtime,
)
from workbench.agent.runtimes.bundle import BundleBuilder

from workbench.wire.agent import BuildEvent, ReplicaRequest
from workbench.wire.replica import RUNTIME_CONFIG_ENV

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


def _exit_code(returncode: int) -> int:
    """Popen's -N (killed by signal N) as the shell's 128+N."""
    return 128 - returncode if returncode < 0 else returncode


class ProcessRuntime(Runtime):
    """Replicas as local processes; state is kept in replicas/<id>.json (+ <id>.log)."""

    kind = "process"

    def __init__(self, replicas_dir: Path, bundles_dir: Path) -> None:
        self.replicas_dir = replicas_dir
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
        env.update(request.env)
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
        bundle = self.bundles.path(handle.request.artifact)
        old_port = handle.extra.get("port")
        sock = _bind(old_port if isinstance(old_port, int) else None)
        port = sock.getsockname()[1]
        fd = sock.fileno()
        # the replica writes into a pipe; logstamp appends each line with its time to the log
        stamper = subprocess.Popen(
            [sys.executable, "-m", "workbench.agent.logstamp", str(self.log_path(handle.replica_id))],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
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
        self._children[proc.pid] = proc
        handle.pid = proc.pid
        handle.url = f"http://127.0.0.1:{port}"
        handle.started_at = time.time()
        handle.extra["port"] = port
        try:
            handle.extra["proc_create_time"] = psutil.Process(proc.pid).create_time()
        except psutil.Error:
            handle.extra["proc_create_time"] = None
        self._write_meta(handle)

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
                url=f"http://127.0.0.1:{port}" if port else None,
                pid=meta.get("pid"),
                restarts=int(meta.get("restarts") or 0),
                extra={"port": port, "proc_create_time": meta.get("proc_create_time")},
            )
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

    def follow_logs(self, handle: Handle, tail: int, query: LogQuery | None = None) -> LogFollower:
        return FileFollower(self.log_path(handle.replica_id), tail, query=query)
