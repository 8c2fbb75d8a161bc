"""The agent's HTTP API (FastAPI): host info, replicas, logs, artifacts, builds."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from workbench.agent.auth import bearer_auth
from workbench.agent.buildctx import BadContext, inspect_context
from workbench.agent.gpu import metrics as gpu_metrics
from workbench.agent.gpu.service import GpuService
from workbench.agent.home import AgentConfig, AgentHome
from workbench.agent.hostinfo import host_info
from workbench.agent.images import BuiltImages, list_artifacts, remove_artifact
from workbench.agent.models.fetch import Fetcher
from workbench.agent.models.routes import model_routes
from workbench.agent.models.store import ModelStore
from workbench.agent.proxy import forward as proxy_forward
from workbench.agent.runtimes.base import LogFollower, LogQuery, check_artifact_name
from workbench.agent.runtimes.docker import DockerRuntime
from workbench.agent.supervisor import Supervisor

from workbench import __version__
from workbench.wire.agent import (
    LATEST_LOG_TIME,
    BuildEvent,
    DockerStatus,
    GpuReport,
    HostInfo,
    RemovedArtifact,
    ReplicaInfo,
    ReplicaRequest,
    StoredArtifact,
)
from workbench.wire.errors import BadRequest, Unavailable
from workbench.wire.handlers import error_response, install_error_handlers
from workbench.wire.replica import RuntimeKind


def _ndjson(events: Iterator[BuildEvent], context: Path) -> Iterator[bytes]:
    """Build events as NDJSON lines; guarantees one final done/error; removes the upload."""
    try:
        yield from _ndjson_events(events)
    finally:
        context.unlink(missing_ok=True)


def _ndjson_events(events: Iterator[BuildEvent]) -> Iterator[bytes]:
    """Build (or pull) events as NDJSON lines; guarantees one final done/error."""
    final = False
    try:
        for event in events:
            final = event.kind in ("done", "error")
            yield event.model_dump_json(exclude_none=True).encode() + b"\n"
            if final:
                return
        yield (
            BuildEvent(kind="error", message="build ended without a result")
            .model_dump_json(exclude_none=True)
            .encode()
            + b"\n"
        )
    except Exception as e:
        if not final:
            yield (
                BuildEvent(kind="error", message=f"build failed: {e}")
                .model_dump_json(exclude_none=True)
                .encode()
                + b"\n"
            )


def _noting(events: Iterator[BuildEvent], built: BuiltImages) -> Iterator[BuildEvent]:
    """A Docker build's events; an image it made (or found) is recorded as this agent's."""
    for event in events:
        if event.kind == "done" and event.artifact:
            built.add(event.artifact)
        yield event


async def _follow(follower: LogFollower) -> AsyncIterator[bytes]:
    """Drive a blocking follower from a thread; closing it ends the thread's wait."""
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=64)
    loop = asyncio.get_running_loop()

    def pump() -> None:
        try:
            for chunk in follower:
                asyncio.run_coroutine_threadsafe(queue.put(chunk), loop).result()
        except Exception:
            pass
        finally:
            with contextlib.suppress(RuntimeError):
                asyncio.run_coroutine_threadsafe(queue.put(None), loop)

    worker = loop.run_in_executor(None, pump)
    try:
        while (chunk := await queue.get()) is not None:
            yield chunk
    finally:
        follower.close()
        for _ in range(40):  # let pump's pending put finish so the thread can exit
            if worker.done():
                break
            with contextlib.suppress(asyncio.QueueEmpty):
                queue.get_nowait()
            await asyncio.sleep(0.05)


def create_app(
    home: AgentHome,
    config: AgentConfig,
    supervisor: Supervisor,
    on_shutdown: Callable[[], None] | None = None,
    gpus: GpuService | None = None,
) -> FastAPI:
    """The FastAPI app; the supervisor and the GPU sampler start and stop with it (replicas do not)."""
    built = BuiltImages(home.root / "images.json")  # the Docker images `image prune` may remove

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if gpus is not None:
            await asyncio.to_thread(gpus.sampler.start)
        await supervisor.start()
        try:
            yield
        finally:
            await supervisor.close()
            if gpus is not None:
                await asyncio.to_thread(gpus.sampler.stop)
            if on_shutdown is not None:
                on_shutdown()

    app = FastAPI(
        title="workbench agent",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    install_error_handlers(app, log=logging.getLogger("workbench.agent"),
                           validation_prefix="invalid request: ")

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"ok": True, "version": __version__}

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(bearer_auth(config.token))])

    @v1.get("/host", response_model=HostInfo)
    async def get_host() -> HostInfo:
        docker_rt = supervisor.runtimes.get("docker")
        if isinstance(docker_rt, DockerRuntime):
            status = await asyncio.to_thread(docker_rt.docker_status, True)
        else:
            status = DockerStatus(available=False, error="docker runtime disabled")
        report = gpus.report(history=False) if gpus is not None else None
        return await asyncio.to_thread(host_info, home.root, status, report)

    @v1.get("/gpus", response_model=GpuReport)
    async def get_gpus(history: bool = True, since: float | None = None) -> GpuReport:
        if gpus is None:
            return GpuReport(source="none", note="GPU telemetry is off")
        return gpus.report(history=history, since=since)

    @v1.get("/replicas", response_model=list[ReplicaInfo])
    async def list_replicas(api: str | None = None) -> list[ReplicaInfo]:
        return supervisor.list(api)

    @v1.get("/replicas/{replica_id}", response_model=ReplicaInfo)
    async def get_replica(replica_id: str) -> ReplicaInfo:
        return supervisor.get(replica_id).info()

    @v1.post("/replicas", status_code=201, response_model=ReplicaInfo)
    async def create_replica(request: ReplicaRequest) -> ReplicaInfo:
        return await supervisor.create(request)

    @v1.delete("/replicas/{replica_id}", status_code=204)
    async def delete_replica(replica_id: str, grace: float | None = Query(None, ge=0, le=3600)) -> Response:
        await supervisor.delete(replica_id, grace)
        return Response(status_code=204)

    @v1.get("/replicas/{replica_id}/logs")
    async def replica_logs(
        replica_id: str, tail: int = Query(100, ge=0, le=100_000), follow: bool = False,
        timestamps: bool = Query(False, description="lead each line with its RFC 3339 time"),
        since: float | None = Query(None, ge=0, le=LATEST_LOG_TIME,
                                    description="only lines written at or after this Unix time"),
    ) -> Response:
        r = supervisor.get(replica_id)
        query = LogQuery(since=since, timestamps=timestamps)
        if not follow:
            lines = await asyncio.to_thread(r.runtime.log_tail, r.handle, tail, query)
            return Response("".join(line + "\n" for line in lines), media_type="text/plain")
        follower = await asyncio.to_thread(r.runtime.follow_logs, r.handle, tail, query)
        return StreamingResponse(_follow(follower), media_type="text/plain")

    @v1.api_route("/replicas/{replica_id}/proxy/{path:path}",
                  methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
                  include_in_schema=False)
    async def proxy(request: Request, replica_id: str, path: str) -> Response:
        """Direct mode: the replica's loopback URL, reached through the (token-checked) agent."""
        r = supervisor.get(replica_id)
        if not r.handle.url:
            raise Unavailable(f"replica {replica_id} has no address yet ({r.state.value})")
        return await proxy_forward(request, replica_id, r.handle.url, path)

    @v1.get("/images", response_model=list[StoredArtifact])
    async def images() -> list[StoredArtifact]:
        """The API images and bundles built here (what `workbench image prune` chooses from)."""
        return await asyncio.to_thread(list_artifacts, supervisor, built)

    @v1.delete("/images", response_model=RemovedArtifact, responses={404: {}, 409: {"description": "in use"}})
    async def remove_image(runtime: RuntimeKind, artifact: str) -> RemovedArtifact:
        if err := check_artifact_name(artifact):
            raise BadRequest(err)
        return await asyncio.to_thread(remove_artifact, supervisor, built, runtime, artifact)

    @v1.get("/artifacts")
    async def artifact(runtime: str, name: str) -> Response:
        rt = supervisor.runtime(runtime)
        if err := check_artifact_name(name):
            raise BadRequest(err)
        await supervisor.require_available(rt)
        if await asyncio.to_thread(rt.artifact_exists, name):
            return JSONResponse({"exists": True})
        return error_response(404, f"{runtime} artifact {name!r} not found", exists=False)

    @v1.post("/builds")
    async def build(request: Request, runtime: str, artifact: str) -> StreamingResponse:
        rt = supervisor.runtime(runtime)
        if err := check_artifact_name(artifact):
            raise BadRequest(err)
        await supervisor.require_available(rt)
        fd, name = tempfile.mkstemp(prefix="context-", suffix=".tar.gz", dir=home.tmp_dir)
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as f:
                async for chunk in request.stream():
                    f.write(chunk)
            await asyncio.to_thread(inspect_context, path)
        except BadContext as e:
            path.unlink(missing_ok=True)
            raise BadRequest(str(e)) from e
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        events = rt.build(str(path), artifact)
        if rt.kind == "docker":
            events = _noting(events, built)
        return StreamingResponse(_ndjson(events, path), media_type="application/x-ndjson")

    @v1.post("/pulls")
    async def pull(image: str) -> StreamingResponse:
        """Make sure the Docker engine has `image`, pulling it when it lacks it (NDJSON progress)."""
        if err := check_artifact_name(image):
            raise BadRequest(err.replace("artifact name", "image reference"))
        rt = supervisor.runtime("docker")
        await supervisor.require_available(rt)
        return StreamingResponse(_ndjson_events(rt.pull(image)), media_type="application/x-ndjson")

    models = supervisor.models or ModelStore(home.models_dir)
    v1.include_router(model_routes(models, Fetcher(models), supervisor.model_users))
    app.include_router(v1)

    @app.get("/metrics", dependencies=[Depends(bearer_auth(config.token))])
    async def metrics() -> PlainTextResponse:
        if gpus is None:
            raise Unavailable("GPU telemetry is off")
        return PlainTextResponse(gpu_metrics.render(gpus), media_type="text/plain; version=0.0.4")

    return app
