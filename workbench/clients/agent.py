"""One host's agent (the API in workbench.agent.app), typed: :class:`AsyncAgentClient` for the
controller's event loop, :class:`AgentClient` for blocking callers (the CLI, installs over SSH).
Each call is described once, in :class:`AgentCalls`."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from pydantic import TypeAdapter

from workbench.clients.core import (
    AsyncCore,
    Call,
    Stream,
    SyncCore,
    async_call,
    async_stream,
    quoted,
    sync_call,
    sync_stream,
)
from workbench.wire.agent import (
    BuildEvent,
    GpuReport,
    HostInfo,
    RemovedArtifact,
    ReplicaInfo,
    ReplicaRequest,
    StoredArtifact,
)
from workbench.wire.errors import WorkbenchError
from workbench.wire.model_cache import (
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
from workbench.wire.replica import RuntimeKind

_REPLICAS = TypeAdapter(list[ReplicaInfo])
_ARTIFACTS = TypeAdapter(list[StoredArtifact])
HEALTH_TIMEOUT = 2.0
#: checking a large file received over SFTP reads it all once
FINISH_TIMEOUT = httpx.Timeout(30.0, read=1800.0)
_JSON = {"Content-Type": "application/json"}


def _model(kind: Any) -> Any:
    return lambda response: kind.model_validate_json(response.content)


class AgentCalls:
    """The agent's calls (no I/O): what to send and how to read the answer."""

    @staticmethod
    def healthz() -> Call[bool]:
        return Call("GET", "/healthz", timeout=HEALTH_TIMEOUT, accept=frozenset(range(400, 600)),
                    parse=lambda r: r.status_code == 200)

    @staticmethod
    def host() -> Call[HostInfo]:
        return Call("GET", "/v1/host", parse=_model(HostInfo))

    @staticmethod
    def gpus(history: bool = True, since: float | None = None) -> Call[GpuReport]:
        """The host's GPUs now (processes mapped to replicas) and, with history, ~10 minutes of
        samples (only those after `since`, a Unix time, when given)."""
        params = {"history": str(history).lower()}
        if since is not None:
            params["since"] = repr(since)
        return Call("GET", "/v1/gpus", params=params, parse=_model(GpuReport))

    @staticmethod
    def replicas(api: str | None = None) -> Call[list[ReplicaInfo]]:
        return Call("GET", "/v1/replicas", params={"api": api} if api else None,
                    parse=lambda r: _REPLICAS.validate_json(r.content))

    @staticmethod
    def replica(replica_id: str) -> Call[ReplicaInfo]:
        return Call("GET", f"/v1/replicas/{quoted(replica_id)}", parse=_model(ReplicaInfo))

    @staticmethod
    def create_replica(request: ReplicaRequest) -> Call[ReplicaInfo]:
        # unset fields stay out, so an agent of an earlier version reads a predictor's request as before
        return Call("POST", "/v1/replicas", content=request.model_dump_json(exclude_none=True).encode(),
                    headers={"Content-Type": "application/json"}, parse=_model(ReplicaInfo))

    @staticmethod
    def delete_replica(replica_id: str, grace: float | None = None) -> Call[None]:
        return Call("DELETE", f"/v1/replicas/{quoted(replica_id)}",
                    params={"grace": grace} if grace is not None else None,
                    timeout=(grace or 30.0) + 30.0, parse=lambda r: None)

    @staticmethod
    def artifact_exists(runtime: RuntimeKind, name: str) -> Call[bool]:
        return Call("GET", "/v1/artifacts", params={"runtime": runtime, "name": name},
                    accept=frozenset({404}), parse=lambda r: r.status_code != 404)

    @staticmethod
    def build(runtime: RuntimeKind, artifact: str, context: Path) -> Stream[BuildEvent]:
        """Upload a build context (a tar.gz) and read the agent's progress events as they come."""
        return Stream("POST", "/v1/builds", params={"runtime": runtime, "artifact": artifact},
                      upload=context, headers={"Content-Type": "application/gzip"},
                      parse_line=BuildEvent.model_validate_json, what="build")

    @staticmethod
    def pull(image: str) -> Stream[BuildEvent]:
        """Make sure the host's Docker engine has `image` (pulling it when it lacks it); progress
        events, then one done (with the image's id) or error."""
        return Stream("POST", "/v1/pulls", params={"image": image},
                      parse_line=BuildEvent.model_validate_json, what="pull")

    # -- the model cache ------------------------------------------------------------------------
    @staticmethod
    def models() -> Call[CacheReport]:
        """The host's model cache: its versions (and which APIs use each), size, limit, free disk."""
        return Call("GET", "/v1/models", parse=_model(CacheReport))

    @staticmethod
    def model(model_id: str) -> Call[ModelManifest]:
        """A complete version's manifest (every file's sha256)."""
        return Call("GET", f"/v1/models/{quoted(model_id)}", parse=_model(ModelManifest))

    @staticmethod
    def prepare_model(manifest: ModelManifest) -> Call[PrepareAnswer]:
        """Make room for a version (TooLarge when it cannot fit); what of it the host lacks."""
        return Call("POST", f"/v1/models/{quoted(manifest.id)}/prepare",
                    content=manifest.model_dump_json().encode(),
                    headers=_JSON, parse=_model(PrepareAnswer))

    @staticmethod
    def commit_model(manifest: ModelManifest) -> Call[CachedModel]:
        return Call("POST", f"/v1/models/{quoted(manifest.id)}/commit",
                    content=manifest.model_dump_json().encode(),
                    headers=_JSON, parse=_model(CachedModel))

    @staticmethod
    def fetch_model(manifest: ModelManifest, token: str | None = None) -> Stream[ModelEvent]:
        """The host gets the version from its source itself; progress until done or error. The
        token (the hub's) is sent for this fetch only."""
        body = FetchRequest(manifest=manifest, token=token).model_dump_json(exclude_none=True).encode()
        return Stream("POST", f"/v1/models/{quoted(manifest.id)}/fetch", content=body, headers=_JSON,
                      parse_line=ModelEvent.model_validate_json, what="model fetch")

    @staticmethod
    def remove_model(model_id: str) -> Call[None]:
        return Call("DELETE", f"/v1/models/{quoted(model_id)}", parse=lambda r: None)

    @staticmethod
    def set_cache_limit(limit_bytes: int | None) -> Call[CacheReport]:
        return Call("PUT", "/v1/models/limit", json=CacheLimitRequest(limit_bytes=limit_bytes).model_dump(),
                    parse=_model(CacheReport))

    @staticmethod
    def probe_source(url: str, token: str | None = None, timeout: float = 5.0) -> Call[ProbeAnswer]:
        """Whether the host reaches `url` itself."""
        body = ProbeRequest(url=url, token=token, timeout=timeout).model_dump_json(exclude_none=True).encode()
        return Call("POST", "/v1/models/probe", content=body, headers=_JSON, timeout=timeout + 30,
                    parse=_model(ProbeAnswer))

    @staticmethod
    def blob_state(sha256: str) -> Call[BlobState]:
        return Call("GET", f"/v1/models/blobs/{quoted(sha256)}/state", parse=_model(BlobState))

    @staticmethod
    def send_blob(sha256: str, size: int, source: Path, offset: int = 0,
                  on_chunk: Callable[[int], None] | None = None) -> Call[BlobState]:
        """Send `source` from `offset` on as the rest of the file `sha256` (`size` bytes in all);
        the host checks it once complete."""
        return Call("PUT", f"/v1/models/blobs/{quoted(sha256)}", params={"offset": offset, "size": size},
                    upload=source, upload_offset=offset, on_chunk=on_chunk, timeout=FINISH_TIMEOUT,
                    headers={"Content-Type": "application/octet-stream"}, parse=_model(BlobState))

    @staticmethod
    def finish_blob(sha256: str, size: int) -> Call[BlobState]:
        """Check a file written into the host's partial folder (over SFTP) and file it."""
        return Call("POST", f"/v1/models/blobs/{quoted(sha256)}/finish", params={"size": size},
                    timeout=FINISH_TIMEOUT, parse=_model(BlobState))

    @staticmethod
    def images() -> Call[list[StoredArtifact]]:
        return Call("GET", "/v1/images", parse=lambda r: _ARTIFACTS.validate_json(r.content))

    @staticmethod
    def remove_image(runtime: RuntimeKind, artifact: str) -> Call[RemovedArtifact]:
        return Call("DELETE", "/v1/images", params={"runtime": runtime, "artifact": artifact},
                    timeout=httpx.Timeout(30.0, read=300.0), parse=_model(RemovedArtifact))

    @staticmethod
    def logs(replica_id: str, *, tail: int = 100, follow: bool = False, timestamps: bool = False,
             since: float | None = None) -> Stream[str]:
        """A replica's log lines; with follow, until the replica goes away. `timestamps` leads each
        with its RFC 3339 time; `since` (a Unix time) skips older lines."""
        params: dict[str, Any] = {"tail": tail, "follow": str(follow).lower()}
        if timestamps:
            params["timestamps"] = "true"
        if since is not None:
            params["since"] = repr(since)
        return Stream("GET", f"/v1/replicas/{quoted(replica_id)}/logs", params=params, what="log",
                      skip_blank=False)


Verify = bool | str | Path | ssl.SSLContext


class AgentClient(SyncCore):
    """Talks to an agent at `base_url` with its bearer token (never logged). `verify`: for an
    https agent (direct mode), a CA file (PEM) or an SSLContext; True: the system's CAs."""

    service = "the agent"

    def __init__(self, base_url: str, token: str, *, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None, verify: Verify = True) -> None:
        super().__init__(base_url, token=token, timeout=timeout, transport=transport, verify=verify,
                         trust_env=False)

    def healthy(self) -> bool:
        """Whether the agent answers /healthz within HEALTH_TIMEOUT (never raises)."""
        try:
            return self.run(AgentCalls.healthz())
        except WorkbenchError:
            return False

    host = sync_call(AgentCalls.host)
    gpus = sync_call(AgentCalls.gpus)
    replicas = sync_call(AgentCalls.replicas)
    replica = sync_call(AgentCalls.replica)
    create_replica = sync_call(AgentCalls.create_replica)
    delete_replica = sync_call(AgentCalls.delete_replica)
    artifact_exists = sync_call(AgentCalls.artifact_exists)
    build = sync_stream(AgentCalls.build)
    pull = sync_stream(AgentCalls.pull)
    logs = sync_stream(AgentCalls.logs)
    models = sync_call(AgentCalls.models)
    model = sync_call(AgentCalls.model)
    prepare_model = sync_call(AgentCalls.prepare_model)
    commit_model = sync_call(AgentCalls.commit_model)
    fetch_model = sync_stream(AgentCalls.fetch_model)
    remove_model = sync_call(AgentCalls.remove_model)
    set_cache_limit = sync_call(AgentCalls.set_cache_limit)
    probe_source = sync_call(AgentCalls.probe_source)
    blob_state = sync_call(AgentCalls.blob_state)
    send_blob = sync_call(AgentCalls.send_blob)
    finish_blob = sync_call(AgentCalls.finish_blob)
    images = sync_call(AgentCalls.images)
    remove_image = sync_call(AgentCalls.remove_image)


class AsyncAgentClient(AsyncCore):
    """:class:`AgentClient` for the controller's event loop: the same calls, awaited."""

    service = "the agent"

    def __init__(self, base_url: str, token: str, *, timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None, verify: Verify = True) -> None:
        super().__init__(base_url, token=token, timeout=timeout, transport=transport, verify=verify,
                         trust_env=False)

    async def healthy(self) -> bool:
        """Whether the agent answers /healthz within HEALTH_TIMEOUT (never raises)."""
        try:
            return await self.run(AgentCalls.healthz())
        except WorkbenchError:
            return False

    host = async_call(AgentCalls.host)
    gpus = async_call(AgentCalls.gpus)
    replicas = async_call(AgentCalls.replicas)
    replica = async_call(AgentCalls.replica)
    create_replica = async_call(AgentCalls.create_replica)
    delete_replica = async_call(AgentCalls.delete_replica)
    artifact_exists = async_call(AgentCalls.artifact_exists)
    build = async_stream(AgentCalls.build)
    pull = async_stream(AgentCalls.pull)
    logs = async_stream(AgentCalls.logs)
    models = async_call(AgentCalls.models)
    model = async_call(AgentCalls.model)
    prepare_model = async_call(AgentCalls.prepare_model)
    commit_model = async_call(AgentCalls.commit_model)
    fetch_model = async_stream(AgentCalls.fetch_model)
    remove_model = async_call(AgentCalls.remove_model)
    set_cache_limit = async_call(AgentCalls.set_cache_limit)
    probe_source = async_call(AgentCalls.probe_source)
    blob_state = async_call(AgentCalls.blob_state)
    send_blob = async_call(AgentCalls.send_blob)
    finish_blob = async_call(AgentCalls.finish_blob)
    images = async_call(AgentCalls.images)
    remove_image = async_call(AgentCalls.remove_image)
