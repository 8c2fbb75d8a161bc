"""The Docker runtime: a replica is a labelled container publishing its port on 127.0.0.1 only.

A predictor replica runs workbench's runtime on 8080; a container API's replica runs its image's
own server (entrypoint and CMD, or the request's command and args) on the request's port, with
PORT set, its shm size, and its health port published beside it when that is another one."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import docker
from docker.errors import DockerException, NotFound
from docker.models.containers import Container
from docker.types import DeviceRequest
from workbench.agent.listening import namespace_ports
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
    RuntimeUnavailable,
)
from workbench.agent.runtimes.docker_build import build_image, image_exists
from workbench.agent.runtimes.docker_pull import pull_image

from workbench.wire.agent import BuildEvent, DockerStatus, ReplicaRequest
from workbench.wire.replica import (
    CONTAINER_PORT,
    LABEL_AGENT,
    LABEL_API,
    LABEL_REPLICA,
    LABEL_REQUEST,
    LABEL_SPEC_HASH,
    PORT_ENV,
    RUNTIME_CONFIG_ENV,
    expand_port,
)

LABEL_CREATED = "workbench.created-at"
#: The GPUs a replica was given, and (on a simulated-GPU host) the device request it would get.
LABEL_GPUS = "workbench.gpus"
LABEL_GPU_REQUEST = "workbench.gpu-device-request"
GPU_IDS_ENV = "WORKBENCH_GPU_IDS"
_STATUS_TTL = 3.0


def serving_port(request: ReplicaRequest) -> int:
    """The port the replica's server listens on inside its container."""
    return request.server.port if request.server is not None else CONTAINER_PORT


def health_port(request: ReplicaRequest) -> int:
    return request.health.port or serving_port(request)


def container_name(api: str, replica_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "-", api).strip("-.") or "api"
    return f"wb-{safe}-{replica_id}"


def gpu_options(
    gpu_ids: list[str], simulated: bool
) -> tuple[list[DeviceRequest], dict[str, str], dict[str, str]]:
    """(device_requests, env, labels) that pin a container to `gpu_ids`.

    A real host gets a DeviceRequest for exactly those devices (needs the NVIDIA Container
    Toolkit); inside, CUDA numbers them from 0. A simulated host (GPU fixture) has no NVIDIA
    runtime: no DeviceRequest, the same env and labels, and the request it would have got as a
    label so tests can check it.
    """
    if not gpu_ids:
        return [], {}, {}
    request = DeviceRequest(device_ids=list(gpu_ids), capabilities=[["gpu"]])
    env = {GPU_IDS_ENV: ",".join(gpu_ids)}
    labels = {LABEL_GPUS: ",".join(gpu_ids)}
    if simulated:
        labels[LABEL_GPU_REQUEST] = json.dumps(dict(request), sort_keys=True)
        env["NVIDIA_VISIBLE_DEVICES"] = ",".join(gpu_ids)
        return [], env, labels
    return [request], env, labels


class _StreamFollower(LogFollower):
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._stream
        except (DockerException, OSError, ValueError, AttributeError):
            return

    def close(self) -> None:
        # closing a half-read HTTP stream may fail in many ways
        with contextlib.suppress(Exception):
            self._stream.close()


class DockerRuntime(Runtime):
    """Replicas as containers labelled with this agent's id."""

    kind = "docker"

    def __init__(self, agent_id: str, simulated_gpus: bool = False, models: ModelStore | None = None) -> None:
        self.agent_id = agent_id
        self.simulated_gpus = simulated_gpus
        self.models = models
        self._client: docker.DockerClient | None = None
        self._lock = threading.Lock()
        self._status: tuple[float, DockerStatus] | None = None
        self._restart_counts: dict[str, int] = {}

    # -- connection --------------------------------------------------------------------------
    def docker_status(self, fresh: bool = False) -> DockerStatus:
        """Ping the daemon (2 s timeout); cached for a few seconds."""
        with self._lock:
            now = time.monotonic()
            if not fresh and self._status and now - self._status[0] < _STATUS_TTL:
                return self._status[1]
        try:
            ping = docker.from_env(timeout=2)
            try:
                version = ping.version().get("Version")
            finally:
                ping.close()
            status = DockerStatus(available=True, version=version)
        except (DockerException, OSError) as e:
            status = DockerStatus(available=False, error=str(e).splitlines()[0][:300])
        with self._lock:
            self._status = (time.monotonic(), status)
        return status

    def unavailable_reason(self) -> str | None:
        status = self.docker_status()
        return None if status.available else f"docker is unavailable: {status.error}"

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            try:
                self._client = docker.from_env(timeout=60)
            except DockerException as e:
                raise RuntimeUnavailable(f"docker is unavailable: {e}") from e
        return self._client

    # -- artifacts ---------------------------------------------------------------------------
    def artifact_exists(self, name: str) -> bool:
        return image_exists(self.client, name)

    def build(self, context_path: str, artifact: str) -> Iterator[BuildEvent]:
        pull = docker.from_env(timeout=30)
        builder = docker.from_env(timeout=24 * 3600)
        try:
            yield from build_image(self.client, pull, builder.api, context_path, artifact)
        finally:
            pull.close()
            builder.close()

    def pull(self, image: str) -> Iterator[BuildEvent]:
        puller = docker.from_env(timeout=24 * 3600)
        try:
            yield from pull_image(self.client, puller.api, image)
        finally:
            puller.close()

    # -- lifecycle ---------------------------------------------------------------------------
    def create(self, replica_id: str, request: ReplicaRequest, created_at: float) -> Handle:
        if not self.artifact_exists(request.artifact):
            raise ArtifactMissing(request.artifact)
        env = dict(request.env)
        labels = {
            LABEL_API: request.api,
            LABEL_REPLICA: replica_id,
            LABEL_SPEC_HASH: request.spec_hash,
            LABEL_AGENT: self.agent_id,
            LABEL_REQUEST: request.model_dump_json(),
            LABEL_CREATED: repr(created_at),
        }
        kwargs: dict[str, Any] = {}
        if request.cpu:
            kwargs["nano_cpus"] = int(request.cpu * 1e9)
        if request.mem_bytes:
            kwargs["mem_limit"] = request.mem_bytes
        device_requests, gpu_env, gpu_labels = gpu_options(request.gpu_ids, self.simulated_gpus)
        env.update(gpu_env)
        labels.update(gpu_labels)
        if device_requests:
            kwargs["device_requests"] = device_requests
        if request.models:
            kwargs["volumes"] = self._model_volumes(request)
            env = {**replica_env(request.models, {m.id: m.mount for m in request.models}), **env}
        if request.server is None:
            assert request.runtime_config is not None
            cfg = request.runtime_config.model_copy(update={"project_dir": "/app"})
            env[RUNTIME_CONFIG_ENV] = cfg.model_dump_json()
            kwargs["command"] = ["python", "-m", "workbench.serving", "--host", "0.0.0.0",
                                 "--port", str(CONTAINER_PORT), "--replica-id", replica_id]
        else:
            server = request.server
            env = {key: expand_port(value, server.port) for key, value in env.items()}
            env[PORT_ENV] = str(server.port)
            if server.command is not None:  # replaces the entrypoint, and with it the image's CMD
                kwargs["entrypoint"] = [expand_port(item, server.port) for item in server.command]
            if server.args is not None:
                kwargs["command"] = [expand_port(item, server.port) for item in server.args]
            if server.shm_size:
                kwargs["shm_size"] = server.shm_size
        ports = {f"{port}/tcp": ("127.0.0.1", None) for port in {serving_port(request), health_port(request)}}
        container = self.client.containers.run(
            request.artifact,
            name=container_name(request.api, replica_id),
            detach=True,
            environment=env,
            labels=labels,
            ports=ports,
            restart_policy={"Name": "unless-stopped"},
            **kwargs,
        )
        handle = Handle(
            replica_id=replica_id,
            request=request,
            created_at=created_at,
            started_at=time.time(),
            container_id=container.id,
        )
        container.reload()
        self._refresh(handle, container)
        return handle

    def _model_volumes(self, request: ReplicaRequest) -> dict[str, dict[str, str]]:
        """Each model's tree in the host's cache, bound read-only at its mount."""
        if self.models is None:
            raise RuntimeUnavailable("this agent has no model cache")
        return {str(self.models.tree(m.id)): {"bind": m.mount, "mode": "ro"} for m in request.models or []}

    def _refresh(self, handle: Handle, container: Container) -> None:
        """Update the handle's URLs from the container's current port bindings."""
        bindings = (container.attrs.get("NetworkSettings") or {}).get("Ports") or {}

        def base(port: int) -> str | None:
            for b in bindings.get(f"{port}/tcp") or []:
                if b.get("HostIp") in ("127.0.0.1", "") and b.get("HostPort"):
                    return f"http://127.0.0.1:{b['HostPort']}"
            return None

        request = handle.request
        handle.url = base(serving_port(request))
        health = base(health_port(request))
        handle.health_url = health + request.health.path if health else None

    def _container(self, handle: Handle) -> Container | None:
        try:
            return self.client.containers.get(handle.container_id or "")
        except NotFound:
            return None

    def adopt(self) -> list[Handle]:
        handles = []
        found = self.client.containers.list(all=True, filters={"label": f"{LABEL_AGENT}={self.agent_id}"})
        for c in found:
            labels = c.labels
            try:
                request = ReplicaRequest.model_validate(json.loads(labels[LABEL_REQUEST]))
                rid = labels[LABEL_REPLICA]
            except (KeyError, ValueError):
                continue
            try:
                created = float(labels.get(LABEL_CREATED, ""))
            except ValueError:
                created = time.time()
            handle = Handle(
                replica_id=rid, request=request, created_at=created, started_at=time.time(), container_id=c.id
            )
            self._restart_counts[c.id] = int(c.attrs.get("RestartCount") or 0)
            self._refresh(handle, c)
            handles.append(handle)
        return handles

    def status(self, handle: Handle) -> RunStatus:
        c = self._container(handle)
        if c is None:
            return RunStatus(running=False, detail="container is gone")
        count = int(c.attrs.get("RestartCount") or 0)
        seen = self._restart_counts.get(c.id, 0)
        self._restart_counts[c.id] = count
        external = max(0, count - seen)
        state = c.attrs.get("State") or {}
        self._refresh(handle, c)
        if state.get("Status") == "running" and not state.get("Restarting"):
            return RunStatus(running=True, external_restarts=external)
        return RunStatus(
            running=False,
            exit_code=state.get("ExitCode"),
            oom_killed=bool(state.get("OOMKilled")),
            external_restarts=external,
            detail=state.get("Error") or None,
        )

    def restart(self, handle: Handle) -> None:
        c = self._container(handle)
        if c is None:
            fresh = self.create(handle.replica_id, handle.request, handle.created_at)
            handle.container_id, handle.url = fresh.container_id, fresh.url
        else:
            c.start()
            c.reload()
            self._restart_counts[c.id] = int(c.attrs.get("RestartCount") or 0)
            self._refresh(handle, c)
        handle.started_at = time.time()

    def stop(self, handle: Handle, grace: float) -> None:
        c = self._container(handle)
        if c is not None:
            c.stop(timeout=max(0, round(grace)))

    def remove(self, handle: Handle) -> None:
        c = self._container(handle)
        if c is not None:
            c.remove(force=True)
        self._restart_counts.pop(handle.container_id or "", None)

    def listening(self, handle: Handle) -> Listening | None:
        """From /proc/<pid>/net/tcp{,6} of the container's first process: its network namespace."""
        if handle.request.server is None:
            return None
        c = self._container(handle)
        if c is None:
            return None
        pid = int((c.attrs.get("State") or {}).get("Pid") or 0)
        ports = namespace_ports(pid) if pid > 0 else None
        if ports is None:
            return None
        networks = (c.attrs.get("NetworkSettings") or {}).get("Networks") or {}
        address = next((str(n["IPAddress"]) for n in networks.values() if n.get("IPAddress")), None)
        return Listening(handle.request.server.port, "container.port", frozenset(ports), address)

    # -- logs --------------------------------------------------------------------------------
    def log_tail(self, handle: Handle, lines: int, query: LogQuery | None = None) -> list[str]:
        c = self._container(handle)
        if c is None or lines <= 0:
            return []
        data = c.logs(tail=lines, **_log_options(query))
        return data.decode(errors="replace").splitlines()

    def run_log_tail(self, handle: Handle, lines: int) -> list[str]:
        """The last run's lines: Docker keeps a restarted container's earlier runs in its log."""
        c = self._container(handle)
        if c is None:
            return []
        started = docker_time((c.attrs.get("State") or {}).get("StartedAt"))
        data = c.logs(tail=lines, since=started - 0.001) if started else c.logs(tail=lines)
        return data.decode(errors="replace").splitlines()

    def follow_logs(self, handle: Handle, tail: int, query: LogQuery | None = None) -> LogFollower:
        c = self._container(handle)
        if c is None:
            return _StreamFollower(iter(()))
        return _StreamFollower(c.logs(stream=True, follow=True, tail=tail, **_log_options(query)))


def docker_time(value: object) -> float | None:
    """A time as Docker writes it (RFC 3339 with nanoseconds) as a Unix time; None when unset."""
    if not isinstance(value, str) or value.startswith("0001-"):
        return None
    try:  # keep microseconds of the nanoseconds
        head, _, rest = value.rstrip("Z").partition(".")
        return datetime.fromisoformat(f"{head}.{rest[:6] or '0'}+00:00").timestamp()
    except ValueError:
        return None


def _log_options(query: LogQuery | None) -> dict[str, Any]:
    """Docker keeps each line's time: `docker logs --timestamps --since` as the SDK takes them."""
    query = query or LogQuery()
    options: dict[str, Any] = {"timestamps": query.timestamps}
    if query.since is not None:
        options["since"] = float(query.since)
    return options
