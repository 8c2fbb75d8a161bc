"""The agent's model-cache API (under /v1/models, token-protected like the rest of /v1):

    GET    /v1/models                         the cache: versions, who uses each, size, limit
    PUT    /v1/models/limit                   the cache's size limit
    POST   /v1/models/probe                   can this host reach a source itself?
    GET    /v1/models/{id}                    a complete version's manifest
    POST   /v1/models/{id}/prepare            make room for a version; what of it is missing
    POST   /v1/models/{id}/fetch              get it from its source (NDJSON progress)
    POST   /v1/models/{id}/commit             file a version whose files are all here
    DELETE /v1/models/{id}                    remove a version no replica uses
    GET    /v1/models/blobs/{sha256}/state    how much of a file is here
    PUT    /v1/models/blobs/{sha256}          receive (the rest of) a file: ?offset=&size=
    POST   /v1/models/blobs/{sha256}/finish   check a file written over SFTP and file it
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from workbench.agent.models.fetch import Fetcher, probe
from workbench.agent.models.store import ModelStore

from workbench.wire.errors import BadRequest, NotFound
from workbench.wire.model_cache import (
    SHA256,
    BlobState,
    CachedModel,
    CacheLimitRequest,
    CacheReport,
    FetchRequest,
    ModelEvent,
    ModelManifest,
    PrepareAnswer,
    ProbeAnswer,
    ProbeRequest,
)

#: what uses the cache: version id -> the APIs, and -> the replica ids, of the replicas on this host
Users = Callable[[], tuple[dict[str, set[str]], dict[str, list[str]]]]


def _same_id(model_id: str, manifest: ModelManifest) -> None:
    if manifest.id != model_id:
        raise BadRequest(f"the manifest is of {manifest.id[:12]}, the path names {model_id[:12]}")


def _sha(sha256: str) -> str:
    if not SHA256.match(sha256):
        raise BadRequest(f"{sha256!r} is not a sha256 (64 lowercase hex digits)")
    return sha256


def _ndjson(events: Iterator[ModelEvent]) -> Iterator[bytes]:
    for event in events:
        yield event.model_dump_json(exclude_none=True).encode() + b"\n"


def model_routes(store: ModelStore, fetcher: Fetcher, users: Users) -> APIRouter:
    router = APIRouter(prefix="/models")

    def in_use() -> set[str]:
        return set(users()[0])

    @router.get("", response_model=CacheReport)
    async def report() -> CacheReport:
        used_by, replicas = users()
        return await asyncio.to_thread(store.report, used_by, replicas)

    @router.put("/limit", response_model=CacheReport)
    async def set_limit(body: CacheLimitRequest) -> CacheReport:
        await asyncio.to_thread(store.set_limit, body.limit_bytes)
        used_by, replicas = users()
        return await asyncio.to_thread(store.report, used_by, replicas)

    @router.post("/probe", response_model=ProbeAnswer)
    async def probe_source(body: ProbeRequest) -> ProbeAnswer:
        return await asyncio.to_thread(probe, body.url, body.token, body.timeout)

    @router.get("/blobs/{sha256}/state", response_model=BlobState)
    async def blob_state(sha256: str) -> BlobState:
        return store.blob_state(_sha(sha256))

    @router.put("/blobs/{sha256}", response_model=BlobState)
    async def receive(request: Request, sha256: str, offset: int = Query(0, ge=0),
                      size: int | None = Query(None, ge=0)) -> BlobState:
        """Append the body to the file's partial copy at `offset`; once it has `size` bytes, check
        its sha256 and file it. A body cut short keeps what arrived (resume from its size)."""
        writer = await asyncio.to_thread(store.open_writer, _sha(sha256), size, offset)
        try:
            async for chunk in request.stream():
                if chunk:
                    writer.write(chunk)
        except BaseException:
            writer.close()
            raise
        if size is None or writer.offset < size:
            state = BlobState(sha256=sha256, size=writer.offset, complete=False)
            writer.close()
            return state
        return await asyncio.to_thread(writer.finish)

    @router.post("/blobs/{sha256}/finish", response_model=BlobState)
    async def finish(sha256: str, size: int | None = Query(None, ge=0)) -> BlobState:
        return await asyncio.to_thread(store.finish_partial, _sha(sha256), size)

    @router.get("/{model_id}", response_model=ModelManifest)
    async def manifest(model_id: str) -> ModelManifest:
        found = await asyncio.to_thread(store.manifest, model_id)
        if found is None:
            raise NotFound(f"model {model_id[:12]} is not in this host's cache")
        return found

    @router.post("/{model_id}/prepare", response_model=PrepareAnswer)
    async def prepare(model_id: str, body: ModelManifest) -> PrepareAnswer:
        _same_id(model_id, body)
        return await asyncio.to_thread(store.prepare, body, in_use())

    @router.post("/{model_id}/commit", response_model=CachedModel)
    async def commit(model_id: str, body: ModelManifest) -> CachedModel:
        _same_id(model_id, body)
        return await asyncio.to_thread(store.commit, body)

    @router.post("/{model_id}/fetch")
    async def fetch(model_id: str, body: FetchRequest) -> StreamingResponse:
        _same_id(model_id, body.manifest)
        running = await asyncio.to_thread(fetcher.start, body.manifest, body.token, in_use)
        return StreamingResponse(_ndjson(running.events()), media_type="application/x-ndjson")

    @router.delete("/{model_id}", status_code=204)
    async def remove(model_id: str) -> Response:
        await asyncio.to_thread(store.remove, model_id, in_use())
        return Response(status_code=204)

    return router
