"""A typed HTTP client for one host's agent (the API in workbench.agent.app)."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx

from workbench.models import BuildEvent, GpuReport, HostInfo, ReplicaInfo, ReplicaRequest, RuntimeKind


class AgentError(Exception):
    """The agent answered with an error, or could not be reached."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or response.reason_phrase
    if isinstance(body, dict):
        detail = body.get("error") or body.get("detail")
        if detail is not None:
            return detail if isinstance(detail, str) else json.dumps(detail)
    return json.dumps(body)


class AgentClient:
    """Talks to an agent at `base_url` with its bearer token. Never logs the token."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None,
                 verify: bool | str | Path | ssl.SSLContext = True):
        """`verify`: for an https agent (direct mode), a CA file (PEM) or an SSLContext that
        verifies its certificate; True: the system's CAs."""
        self.base_url = base_url.rstrip("/")
        if isinstance(verify, str | Path):
            verify = ssl.create_default_context(cafile=str(verify))
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            transport=transport,
            verify=verify,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as error:
            raise AgentError(f"cannot reach the agent at {self.base_url}: {error}") from error
        if response.status_code >= 400:
            raise AgentError(_error_text(response), response.status_code)
        return response

    def healthy(self) -> bool:
        try:
            return self._http.get("/healthz", timeout=2.0).status_code == 200
        except httpx.TransportError:
            return False

    def host(self) -> HostInfo:
        return HostInfo.model_validate(self._request("GET", "/v1/host").json())

    def gpus(self, history: bool = True, since: float | None = None) -> GpuReport:
        """The host's GPUs now (processes mapped to replicas) and, with history, ~10 minutes of
        samples (only those after `since`, a Unix time, when given)."""
        params = {"history": str(history).lower()}
        if since is not None:
            params["since"] = repr(since)
        return GpuReport.model_validate(self._request("GET", "/v1/gpus", params=params).json())

    def replicas(self, api: str | None = None) -> list[ReplicaInfo]:
        params = {"api": api} if api else None
        return [ReplicaInfo.model_validate(item)
                for item in self._request("GET", "/v1/replicas", params=params).json()]

    def replica(self, replica_id: str) -> ReplicaInfo:
        return ReplicaInfo.model_validate(self._request("GET", f"/v1/replicas/{replica_id}").json())

    def create_replica(self, request: ReplicaRequest) -> ReplicaInfo:
        response = self._request("POST", "/v1/replicas", content=request.model_dump_json(),
                                 headers={"Content-Type": "application/json"})
        return ReplicaInfo.model_validate(response.json())

    def delete_replica(self, replica_id: str, grace: float | None = None) -> None:
        params = {"grace": grace} if grace is not None else None
        self._request("DELETE", f"/v1/replicas/{replica_id}", params=params,
                      timeout=(grace or 30.0) + 30.0)

    def artifact_exists(self, runtime: RuntimeKind, name: str) -> bool:
        try:
            self._request("GET", "/v1/artifacts", params={"runtime": runtime, "name": name})
        except AgentError as error:
            if error.status == 404:
                return False
            raise
        return True

    def build(self, runtime: RuntimeKind, artifact: str, context: Path) -> Iterator[BuildEvent]:
        """Upload a build context and yield the agent's progress events as they arrive."""

        def chunks() -> Iterable[bytes]:
            with context.open("rb") as handle:
                while block := handle.read(1 << 20):
                    yield block

        try:
            with self._http.stream(
                "POST", "/v1/builds", params={"runtime": runtime, "artifact": artifact},
                content=chunks(), headers={"Content-Type": "application/gzip"},
                timeout=httpx.Timeout(30.0, read=None),
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise AgentError(_error_text(response), response.status_code)
                for line in response.iter_lines():
                    if line.strip():
                        yield BuildEvent.model_validate_json(line)
        except httpx.TransportError as error:
            raise AgentError(f"build upload to {self.base_url} failed: {error}") from error

    def logs(self, replica_id: str, *, tail: int = 100, follow: bool = False) -> Iterator[str]:
        """Yield a replica's log lines; with follow, until the replica goes away."""
        params: dict[str, Any] = {"tail": tail, "follow": str(follow).lower()}
        try:
            with self._http.stream("GET", f"/v1/replicas/{replica_id}/logs", params=params,
                                   timeout=httpx.Timeout(30.0, read=None)) as response:
                if response.status_code >= 400:
                    response.read()
                    raise AgentError(_error_text(response), response.status_code)
                yield from response.iter_lines()
        except httpx.TransportError as error:
            raise AgentError(f"log stream from {self.base_url} broke: {error}") from error
