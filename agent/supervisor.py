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
from workbench.agent.probe import is_ready
from workbench.agent.runtimes.base import (
    ArtifactMissing,
    Handle,
    LogQuery,
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
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: when the current run was started: a failure's log tail is that run's output, not the
    #: previous runs' (a replica restarted N times would show N tracebacks, the first one cut)
    run_since: float | None = None

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
    ) -> None:
        self.runtimes = runtimes
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
            r.handle.started_at = r.run_since = now
            r.ready_since = None
        if not status.running:
            # gather everything before publishing the state: readers see a complete report
            since = status.started_at or r.run_since or r.handle.started_at
            tail = await asyncio.to_thread(r.runtime.log_tail, r.handle, LOG_TAIL_LINES,
                                           LogQuery(since=since))
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
        if r.handle.url and await is_ready(r.handle.url):
            if r.state != ReplicaState.READY:
                log.info("replica %s is ready at %s", r.id, r.handle.url)
            r.state = ReplicaState.READY
            r.message = None
            r.ready_since = r.ready_since or now
            if now - r.ready_since > HEALTHY_RESET_SECONDS:
                r.backoff = BACKOFF_START
            return
        r.ready_since = None
        timeout = r.handle.request.runtime_config.serving.startup_timeout
        started = r.handle.started_at or r.handle.created_at
        if r.state == ReplicaState.READY:
            r.state, r.message = ReplicaState.STARTING, "stopped answering /readyz"
        elif now - started > timeout:
            r.state, r.message = ReplicaState.FAILED, f"not ready after startup_timeout ({timeout:g}s)"
        elif r.state != ReplicaState.FAILED:
            r.state = ReplicaState.STARTING

    async def _restart(self, r: Replica) -> None:
        r.restart_at = None
        try:
            r.handle.restarts += 1
            r.run_since = time.time()
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

    async def _create(self, rt: Runtime, replica_id: str, request: ReplicaRequest) -> ReplicaInfo:
        await self.require_available(rt)
        if not await asyncio.to_thread(rt.artifact_exists, request.artifact):
            raise NotFound(
                f"{request.runtime} artifact {request.artifact!r} does not exist on this host: "
                "build it first (POST /v1/builds)"
            )
        started = time.time()
        try:
            handle = await asyncio.to_thread(rt.create, replica_id, request, started)
        except ArtifactMissing as e:
            raise NotFound(f"artifact {e} does not exist: build it first") from e
        except RuntimeUnavailable as e:
            raise Unavailable(str(e)) from e
        except Exception as e:
            raise Failed(f"cannot start replica: {e}") from e
        r = Replica(runtime=rt, handle=handle, run_since=started)
        self.replicas[replica_id] = r
        log.info("created %s replica %s of %s", rt.kind, replica_id, request.api)
        return r.info()

    async def delete(self, replica_id: str, grace: float | None = None) -> None:
        r = self.get(replica_id)
        if grace is None:
            grace = r.handle.request.runtime_config.serving.graceful_shutdown
        async with r.lock:
            if replica_id not in self.replicas:
                raise NotFound(f"no replica {replica_id!r} on this host")
            r.state = ReplicaState.STOPPING
            await asyncio.to_thread(r.runtime.stop, r.handle, grace)
            await asyncio.to_thread(r.runtime.remove, r.handle)
            self.replicas.pop(replica_id, None)
        log.info("deleted replica %s", replica_id)
