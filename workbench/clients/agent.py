"""One host's agent (the API in workbench.agent.app), typed: :class:`AsyncAgentClient` for the
controller's event loop, :class:`AgentClient` for blocking callers (the CLI, installs over SSH).
Each call is described once, in :class:`AgentCalls`."""

from __future__ import annotations

import ssl
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
from workbench.wire.replica import RuntimeKind

_REPLICAS = TypeAdapter(list[ReplicaInfo])
_ARTIFACTS = TypeAdapter(list[StoredArtifact])
HEALTH_TIMEOUT = 2.0


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
    images = async_call(AgentCalls.images)
    remove_image = async_call(AgentCalls.remove_image)
