"""The supervisor: owns the replica table, probes readiness, restarts what exits, re-adopts."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from workbench.agent.gpu.alloc import Allocation, conflict, resolve
from workbench.agent.gpu.procmap import ReplicaRef
from workbench.agent.models.store import ModelStore
from workbench.agent.probe import http_status
from workbench.agent.runtimes.base import (
    ArtifactMissing,
    Handle,
    Runtime,
    RuntimeUnavailable,
    describe_exit,
)

from workbench.wire.agent import ReplicaInfo, ReplicaRequest, ReplicaState
from workbench.wire.errors import BadRequest, Conflict, Failed, NotFound, Unavailable

log = logging.getLogger("workbench.agent.supervisor")

TICK_SECONDS = 1.0
BACKOFF_START = 1.0
BACKOFF_MAX = 60.0
HEALTHY_RESET_SECONDS = 300.0
LOG_TAIL_LINES = 50  # of the failed run only: a Python traceback is often 30 lines
#: seconds an HTTP server may answer on another port while the expected one stays closed before
#: the replica fails (servers that open a port of their own first, e.g. for NCCL, speak no HTTP)
PORT_MISMATCH_GRACE = 5.0
_PERIOD_SLACK = 0.05  # probes due "every second" must not skip a ~1 s tick


def _serving_port(handle: Handle) -> int:
    """The port a container API's server should listen on: the process runtime's pick for the
    replica (its handle's `port`), else the request's (inside the container)."""
    picked = handle.extra.get("port")
    if isinstance(picked, int):
        return picked
    return handle.request.server.port if handle.request.server is not None else 0


@dataclass
class Replica:
    """One desired replica and what the supervisor knows about it."""

    runtime: Runtime
    handle: Handle
    state: ReplicaState = ReplicaState.STARTING
    message: str | None = None
    log_tail: list[str] = field(default_factory=list)
    ready_since: float | None = None
    restart_at: float | None = None
    backoff: float = BACKOFF_START
    probed_at: float = 0.0  # when readiness was last asked
    answered: int | None = None  # the last probe's HTTP status (None: no answer)
    mismatch_since: float | None = None  # since when an HTTP server answers on another port
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def id(self) -> str:
        return self.handle.replica_id

    def info(self) -> ReplicaInfo:
        h = self.handle
        return ReplicaInfo(
            id=h.replica_id,
            api=h.request.api,
            spec_hash=h.request.spec_hash,
            runtime=h.request.runtime,
            artifact=h.request.artifact,
            state=self.state,
            url=h.url,
            restarts=h.restarts,
            created_at=h.created_at,
            started_at=h.started_at,
            message=self.message,
            log_tail=list(self.log_tail),
            pid=h.pid,
            container_id=h.container_id,
            gpu_ids=list(h.request.gpu_ids),
            gpu_share=h.request.gpu_share,
        )


class Supervisor:
    """Keeps every desired replica running; all runtime calls go through threads."""

    def __init__(
        self,
        runtimes: dict[str, Runtime],
        gpu_indices: Callable[[], dict[int, str | None] | None] | None = None,
        models: ModelStore | None = None,
    ) -> None:
        self.runtimes = runtimes
        self.models = models
        #: GPU index -> UUID on this host; None when the host has no GPU information.
        self.gpu_indices = gpu_indices or (lambda: None)
        self.replicas: dict[str, Replica] = {}
        self._gpu_claims: dict[str, Allocation] = {}  # creates in progress
        self._adopted: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle of the supervisor itself ----------------------------------------------------
    async def start(self) -> None:
        await self.adopt()
        self._task = asyncio.create_task(self._loop(), name="supervisor")

    async def close(self) -> None:
        """Stop supervising; replicas keep running (the next agent re-adopts them)."""
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def adopt(self) -> None:
        """Take over replicas of a previous agent, once per runtime that answers."""
        for kind, runtime in self.runtimes.items():
            if kind in self._adopted:
                continue
            if await asyncio.to_thread(runtime.unavailable_reason) is not None:
                continue
            try:
                handles = await asyncio.to_thread(runtime.adopt)
            except (RuntimeUnavailable, OSError, Exception) as e:  # a daemon hiccup: retry later
                log.warning("cannot adopt %s replicas yet: %s", kind, e)
                continue
            self._adopted.add(kind)
            for h in handles:
                if h.replica_id not in self.replicas:
                    self.replicas[h.replica_id] = Replica(runtime=runtime, handle=h)
                    log.info("adopted %s replica %s (%s)", kind, h.replica_id, h.request.api)

    async def _loop(self) -> None:
        while True:
            started = time.monotonic()
            try:
                if len(self._adopted) < len(self.runtimes):
                    await self.adopt()
                await asyncio.gather(*(self._tick(r) for r in list(self.replicas.values())))
            except Exception:
                log.exception("supervisor tick failed")
            await asyncio.sleep(max(0.1, TICK_SECONDS - (time.monotonic() - started)))

    # -- one replica, one tick -----------------------------------------------------------------
    async def _tick(self, r: Replica) -> None:
        if r.lock.locked():
            return
        async with r.lock:
            if r.id not in self.replicas:
                return
            try:
                await self._check(r)
            except Exception as e:
                log.warning("replica %s: check failed: %s", r.id, e)

    async def _check(self, r: Replica) -> None:
        now = time.time()
        if r.restart_at is not None:
            if now < r.restart_at:
                return
            await self._restart(r)
            return
        status = await asyncio.to_thread(r.runtime.status, r.handle)
        if status.external_restarts:
            r.handle.restarts += status.external_restarts
            r.handle.started_at = now
            r.ready_since = None
        if not status.running:
            # gather everything before publishing the state: readers see a complete report
            tail = await asyncio.to_thread(r.runtime.run_log_tail, r.handle, LOG_TAIL_LINES)
            if status.exit_code is None and status.detail:
                message = status.detail
            else:
                message = describe_exit(status.exit_code, status.oom_killed)
            r.state, r.message, r.log_tail = ReplicaState.FAILED, message, tail
            r.ready_since = None
            r.restart_at = now + r.backoff
            log.warning("replica %s %s; restarting in %.0fs", r.id, r.message, r.backoff)
            r.backoff = min(r.backoff * 2, BACKOFF_MAX)
            return
        check = r.handle.request.health
        if r.probed_at and now - r.probed_at < check.period - _PERIOD_SLACK:
            return  # not due yet: the last answer stands
        r.probed_at = now
        url = r.handle.health_url or (r.handle.url.rstrip("/") + check.path if r.handle.url else None)
        r.answered = await http_status(url, check.timeout) if url else None
        if r.answered is not None and 200 <= r.answered < 300:
            if r.state != ReplicaState.READY:
                log.info("replica %s is ready at %s", r.id, r.handle.url)
            r.state = ReplicaState.READY
            r.message = None
            r.mismatch_since = None
            r.ready_since = r.ready_since or now
            if now - r.ready_since > HEALTHY_RESET_SECONDS:
                r.backoff = BACKOFF_START
            return
        r.ready_since = None
        timeout = r.handle.request.startup_timeout
        started = r.handle.started_at or r.handle.created_at
        if r.handle.request.server is not None:
            await self._server_not_ready(r, now, now - started > timeout)
            return
        if r.state == ReplicaState.READY:
            r.state, r.message = ReplicaState.STARTING, "stopped answering /readyz"
        elif now - started > timeout:
            r.state, r.message = ReplicaState.FAILED, f"not ready after startup_timeout ({timeout:g}s)"
        elif r.state != ReplicaState.FAILED:
            r.state = ReplicaState.STARTING

    async def _server_not_ready(self, r: Replica, now: float, too_late: bool) -> None:
        """A container API's server is not healthy: say what it is doing (its last log line, or the
        port it listens on instead), and fail it when an HTTP server answers on another port or
        startup_timeout has passed."""
        request = r.handle.request
        check = request.health
        answer = "no answer" if r.answered is None else f"HTTP {r.answered}"
        if r.state == ReplicaState.READY:
            r.state, r.message = ReplicaState.STARTING, f"stopped answering GET {check.path} ({answer})"
            return
        if r.state == ReplicaState.FAILED:
            return
        listening = await asyncio.to_thread(r.runtime.listening, r.handle) if r.answered is None else None
        elsewhere = listening.elsewhere if listening is not None else []
        wrong_port = ""
        if listening is not None and elsewhere:
            ports = ", ".join(str(port) for port in elsewhere)
            wrong_port = (f"the server listens on port {ports}, not on port {listening.expected} "
                          f"({listening.expected_by})")
            if await self._answers_http(listening.address, elsewhere, check.path, check.timeout):
                r.mismatch_since = r.mismatch_since or now
            else:
                r.mismatch_since = None
        else:
            r.mismatch_since = None
        if wrong_port and r.mismatch_since is not None and now - r.mismatch_since >= PORT_MISMATCH_GRACE:
            fix = ("set container.port to the port it listens on, or make it listen on $PORT"
                   if listening is not None and listening.expected_by == "container.port"
                   else "make it listen on $PORT (the agent picks one per replica; $PORT in "
                        "container.command or args is replaced by it)")
            await self._fail_starting(r, f"{wrong_port}: {fix}")
            return
        if too_late:
            port = check.port or (listening.expected if listening is not None else _serving_port(r.handle))
            why = f"; {wrong_port}" if wrong_port else ""
            await self._fail_starting(r, f"not healthy after startup_timeout ({request.startup_timeout:g}s): "
                                         f"GET {check.path} on port {port} got {answer}{why}")
            return
        if wrong_port:
            r.state, r.message = ReplicaState.STARTING, f"starting: {wrong_port}"
            return
        last = await asyncio.to_thread(r.runtime.run_log_tail, r.handle, 1)
        line = last[-1].strip()[:200] if last and last[-1].strip() else ""
        r.state = ReplicaState.STARTING
        r.message = f"starting: {line}" if line else f"starting: waiting for GET {check.path} ({answer})"

    @staticmethod
    async def _answers_http(address: str | None, ports: list[int], path: str, timeout: float) -> bool:
        """Whether an HTTP server answers on one of `ports` at `address` (any status)."""
        if address is None:
            return False
        for port in ports[:4]:
            if await http_status(f"http://{address}:{port}{path}", timeout) is not None:
                return True
        return False

    async def _fail_starting(self, r: Replica, message: str) -> None:
        tail = await asyncio.to_thread(r.runtime.run_log_tail, r.handle, LOG_TAIL_LINES)
        r.state, r.message, r.log_tail = ReplicaState.FAILED, message, tail
        log.warning("replica %s: %s", r.id, message)

    async def _restart(self, r: Replica) -> None:
        r.restart_at = None
        try:
            r.handle.restarts += 1
            await asyncio.to_thread(r.runtime.restart, r.handle)
        except (ArtifactMissing, RuntimeUnavailable, OSError, Exception) as e:
            r.state, r.message = ReplicaState.FAILED, f"restart failed: {e}"
            r.restart_at = time.time() + r.backoff
            r.backoff = min(r.backoff * 2, BACKOFF_MAX)
            return
        r.state = ReplicaState.STARTING
        log.info("replica %s restarted (%d restarts)", r.id, r.handle.restarts)

    # -- API operations --------------------------------------------------------------------------
    def runtime(self, kind: str) -> Runtime:
        rt = self.runtimes.get(kind)
        if rt is None:
            raise BadRequest(f"unknown runtime {kind!r}: use one of {sorted(self.runtimes)}")
        return rt

    async def require_available(self, rt: Runtime) -> None:
        reason = await asyncio.to_thread(rt.unavailable_reason)
        if reason:
            hint = "; use `runtime: process` instead" if rt.kind == "docker" else ""
            raise Unavailable(reason + hint)

    def replica_refs(self) -> list[ReplicaRef]:
        """What the GPU process map needs to know about each replica."""
        return [ReplicaRef(r.id, r.handle.request.api, r.handle.pid, r.handle.container_id)
                for r in list(self.replicas.values())]

    def list(self, api: str | None = None) -> list[ReplicaInfo]:
        reps = sorted(self.replicas.values(), key=lambda r: r.handle.created_at)
        return [r.info() for r in reps if api is None or r.handle.request.api == api]

    def get(self, replica_id: str) -> Replica:
        r = self.replicas.get(replica_id)
        if r is None:
            raise NotFound(f"no replica {replica_id!r} on this host")
        return r

    # -- GPU allocation -------------------------------------------------------------------------
    def _gpu_key(self, gpu_id: str, indices: dict[int, str | None] | None) -> str:
        index = resolve(gpu_id, indices) if indices else None
        return str(index) if index is not None else gpu_id

    def gpu_allocations(self) -> builtins.list[Allocation]:
        """Every replica's pinned GPUs (by index where known), creates in progress included."""
        indices = self.gpu_indices()
        out = []
        for r in self.replicas.values():
            req = r.handle.request
            if req.gpu_ids:
                keys = tuple(self._gpu_key(g, indices) for g in req.gpu_ids)
                out.append(Allocation(r.id, keys, req.gpu_share))
        return out + list(self._gpu_claims.values())

    def _claim_gpus(self, replica_id: str, request: ReplicaRequest) -> None:
        """Reserve the request's GPUs, or refuse: 400 for GPUs this host lacks, 409 when taken.
        Without GPU information (no NVML) ids are not checked against devices, only against
        each other."""
        if not request.gpu_ids:
            return
        indices = self.gpu_indices()  # None: no GPU information here, ids cannot be checked
        missing = [g for g in request.gpu_ids if indices is not None and resolve(g, indices) is None]
        if missing and indices is not None:
            have = ", ".join(str(i) for i in sorted(indices)) or "none"
            raise BadRequest(f"no GPU {', '.join(missing)} on this host (GPUs: {have})")
        wanted = Allocation(replica_id, tuple(self._gpu_key(g, indices) for g in request.gpu_ids),
                            request.gpu_share)
        reason = conflict(wanted, self.gpu_allocations())
        if reason:
            raise Conflict(f"cannot pin GPUs for {request.api}: {reason}")
        self._gpu_claims[replica_id] = wanted

    async def create(self, request: ReplicaRequest) -> ReplicaInfo:
        rt = self.runtime(request.runtime)
        replica_id = secrets.token_hex(4)
        while replica_id in self.replicas or replica_id in self._gpu_claims:
            replica_id = secrets.token_hex(4)
        self._claim_gpus(replica_id, request)  # no await between check and claim
        try:
            return await self._create(rt, replica_id, request)
        finally:
            self._gpu_claims.pop(replica_id, None)

    def model_users(self) -> tuple[dict[str, set[str]], dict[str, builtins.list[str]]]:
        """Which model versions the replicas here mount: id -> APIs, and id -> replica ids."""
        apis: dict[str, set[str]] = {}
        ids: dict[str, builtins.list[str]] = {}
        for r in list(self.replicas.values()):
            for mount in r.handle.request.models or []:
                apis.setdefault(mount.id, set()).add(r.handle.request.api)
                ids.setdefault(mount.id, []).append(r.id)
        return apis, ids

    def _check_models(self, request: ReplicaRequest) -> None:
        """A replica starts only once its models are in the cache (Conflict names the missing)."""
        mounts = request.models or []
        if not mounts:
            return
        if self.models is None:
            raise BadRequest("this agent has no model cache")
        missing = [m for m in mounts if not self.models.complete(m.id)]
        if missing:
            names = ", ".join(f"{m.name} ({m.id[:12]})" for m in missing)
            raise Conflict(f"model {names} is not in this host's cache yet: send it first "
                           "(POST /v1/models/{id}/prepare, then the files, then /commit)")
        for mount in mounts:
            self.models.touch(mount.id)

    async def _create(self, rt: Runtime, replica_id: str, request: ReplicaRequest) -> ReplicaInfo:
        await self.require_available(rt)
        await asyncio.to_thread(self._check_models, request)
        if not await asyncio.to_thread(rt.artifact_exists, request.artifact):
            raise NotFound(
                f"{request.runtime} artifact {request.artifact!r} does not exist on this host: "
                "build it first (POST /v1/builds)"
            )
        try:
            handle = await asyncio.to_thread(rt.create, replica_id, request, time.time())
        except ArtifactMissing as e:
            raise NotFound(f"artifact {e} does not exist: build it first") from e
        except RuntimeUnavailable as e:
            raise Unavailable(str(e)) from e
        except Exception as e:
            raise Failed(f"cannot start replica: {e}") from e
        r = Replica(runtime=rt, handle=handle)
        self.replicas[replica_id] = r
        log.info("created %s replica %s of %s", rt.kind, replica_id, request.api)
        return r.info()

    async def delete(self, replica_id: str, grace: float | None = None) -> None:
        r = self.get(replica_id)
        if grace is None:
            grace = r.handle.request.graceful_shutdown
        async with r.lock:
            if replica_id not in self.replicas:
                raise NotFound(f"no replica {replica_id!r} on this host")
            r.state = ReplicaState.STOPPING
            await asyncio.to_thread(r.runtime.stop, r.handle, grace)
            await asyncio.to_thread(r.runtime.remove, r.handle)
            self.replicas.pop(replica_id, None)
        log.info("deleted replica %s", replica_id)
