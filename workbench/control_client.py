"""A typed client for the controller's control API (used by the CLI and the TUI)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
from pydantic import TypeAdapter

from workbench.controller.schemas import (
    AddHostRequest,
    ApiDetail,
    ApiSummary,
    DeletedBody,
    DeployEvent,
    DeployRequest,
    EventBody,
    FleetGpusBody,
    HostBody,
    HostEvent,
    RemovedHostBody,
    ScaleRequest,
)
from workbench.models import GpuReport

# Parsed straight from the JSON bytes (pydantic-core): no intermediate dicts and lists, which for
# a large fleet polled each second is most of the time and most of the garbage.
_API_LIST = TypeAdapter(list[ApiSummary])
_HOST_LIST = TypeAdapter(list[HostBody])


class ControlError(Exception):
    """The controller refused a request or could not be reached; str() says why."""

    def __init__(self, message: str, status: int | None = None, body: Any = None):
        super().__init__(message)
        self.status = status
        self.body = body


def error_of(response: httpx.Response) -> ControlError:
    try:
        body = response.json()
    except ValueError:
        return ControlError(response.text.strip() or response.reason_phrase, response.status_code)
    message = body.get("error") if isinstance(body, dict) else None
    if not isinstance(message, str):
        message = json.dumps(body)
    return ControlError(message, response.status_code, body)


class ControlClient:
    """Talks to one controller at `url` with its bearer token (never logged)."""

    def __init__(self, url: str, token: str, *, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None):
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout, transport=transport,
                                  headers={"Authorization": f"Bearer {token}"})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as error:
            raise ControlError(f"cannot reach the controller at {self.url}: {error}") from error
        if response.status_code >= 400:
            raise error_of(response)
        return response

    def apis(self) -> list[ApiSummary]:
        return _API_LIST.validate_json(self._call("GET", "/v1/apis").content)

    def api(self, name: str) -> ApiDetail:
        return ApiDetail.model_validate_json(self._call("GET", f"/v1/apis/{name}").content)

    def delete(self, name: str) -> DeletedBody:
        return DeletedBody.model_validate(
            self._call("DELETE", f"/v1/apis/{name}", timeout=httpx.Timeout(30.0, read=None)).json()
        )

    def scale(self, name: str, request: ScaleRequest) -> ApiSummary:
        response = self._call("POST", f"/v1/apis/{name}/scale",
                              json=request.model_dump(exclude_none=True))
        return ApiSummary.model_validate(response.json())

    def restart(self, name: str, replica_id: str) -> None:
        self._call("POST", f"/v1/apis/{name}/replicas/{replica_id}/restart")

    def hosts(self) -> list[HostBody]:
        return _HOST_LIST.validate_json(self._call("GET", "/v1/hosts").content)

    def events(self, api: str | None = None, limit: int = 100) -> list[EventBody]:
        params: dict[str, Any] = {"limit": limit}
        if api:
            params["api"] = api
        return [EventBody.model_validate(item)
                for item in self._call("GET", "/v1/events", params=params).json()]

    def deploy(self, request: DeployRequest) -> Iterator[DeployEvent]:
        """Start a deployment and yield its progress events until done or error."""
        for line in self._lines("POST", "/v1/deployments", "deployment",
                                json=request.model_dump(exclude_none=True)):
            if line.strip():
                yield DeployEvent.model_validate_json(line)

    def logs(self, name: str, *, tail: int = 100, follow: bool = False,
             replica: str | None = None) -> Iterator[str]:
        params: dict[str, Any] = {"tail": tail, "follow": str(follow).lower()}
        if replica:
            params["replica"] = replica
        yield from self._lines("GET", f"/v1/apis/{name}/logs", "log", params=params)

    def _lines(self, method: str, path: str, what: str, **kwargs: Any) -> Iterator[str]:
        """The lines of a streamed answer (NDJSON progress, logs); a refusal or a broken stream
        becomes a ControlError."""
        try:
            with self._http.stream(method, path, timeout=httpx.Timeout(30.0, read=None),
                                   **kwargs) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_of(response)
                yield from response.iter_lines()
        except httpx.TransportError as error:
            raise ControlError(f"the {what} stream from {self.url} broke: {error}") from error

    # -- hosts -------------------------------------------------------------------------------
    def host(self, name: str) -> HostBody:
        return HostBody.model_validate(self._call("GET", f"/v1/hosts/{name}").json())

    def gpus(self, name: str, history: bool = False, since: float | None = None) -> GpuReport:
        """The host's live GPU report (GET /v1/hosts/{name}/gpus), with ~10 min of history if
        asked (only the samples taken after `since`, a Unix time, when given)."""
        params = {"history": str(history).lower()}
        if since is not None:
            params["since"] = repr(since)
        response = self._call("GET", f"/v1/hosts/{name}/gpus", params=params)
        return GpuReport.model_validate_json(response.content)

    def fleet_gpus(self, since: Mapping[str, float] | None = None, history: bool = True) -> FleetGpusBody:
        """Every ready GPU host's report (GET /v1/gpus); history only after `since[host]` for the
        hosts named there."""
        params: list[tuple[str, str]] = [("history", str(history).lower())]
        params += [("since", f"{name}:{at!r}") for name, at in (since or {}).items()]
        return FleetGpusBody.model_validate_json(self._call("GET", "/v1/gpus", params=params).content)

    def remove_host(self, name: str, *, purge: bool = False) -> RemovedHostBody:
        response = self._call("DELETE", f"/v1/hosts/{name}", params={"purge": str(purge).lower()},
                              timeout=httpx.Timeout(30.0, read=None))
        return RemovedHostBody.model_validate(response.json())

    def add_host(self, request: AddHostRequest) -> Iterator[HostEvent]:
        """Register a box; yields its progress (connect, preflight, install steps) until done/error."""
        return self._host_stream("/v1/hosts", request.model_dump(exclude_none=True))

    def upgrade_host(self, name: str) -> Iterator[HostEvent]:
        return self._host_stream(f"/v1/hosts/{name}/upgrade", None)

    def _host_stream(self, path: str, body: dict[str, Any] | None) -> Iterator[HostEvent]:
        for line in self._lines("POST", path, "host", json=body):
            if line.strip():
                yield HostEvent.model_validate_json(line)
