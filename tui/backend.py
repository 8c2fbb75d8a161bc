"""Worker-side calls to the controller: everything the TUI asks of the control API.

Runs in worker threads only (never on the UI loop). It uses ControlClient, plus plain httpx for
what is not a control-API call (test predictions go through the router) and an async log stream
(so that closing the logs screen cancels it at once).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from workbench.control_client import ControlClient, ControlError, error_of
from workbench.controller.schemas import (
    AddHostRequest,
    ApiDetail,
    ApiSummary,
    DeletedBody,
    DeployEvent,
    DeployRequest,
    HostBody,
    HostEvent,
    ScaleRequest,
)
from workbench.models import GpuReport

__all__ = ["Backend", "ControlError", "PollResult", "PredictResult"]

FIRST_HISTORY_S = 120.0  # GPU history fetched for a host the first time it is polled


@dataclass
class PollResult:
    """One refresh: everything the screens show, fetched in one worker run."""

    at: float
    hosts: list[HostBody] = field(default_factory=list)
    apis: list[ApiSummary] = field(default_factory=list)
    gpus: dict[str, GpuReport] = field(default_factory=dict)  # by host name, when the endpoint exists
    detail: ApiDetail | None = None
    gpu_errors: dict[str, str] = field(default_factory=dict)


@dataclass
class PredictResult:
    status: int | None
    body: str
    latency_ms: float
    error: str | None = None


class Backend:
    """The TUI's one door to the controller at `url`."""

    def __init__(self, url: str, token: str, *, timeout: float = 5.0):
        self.url = url.rstrip("/")
        self.token = token
        self.client = ControlClient(self.url, token, timeout=timeout)

    def close(self) -> None:
        self.client.close()

    # -- polling --------------------------------------------------------------------------------
    def poll(self, detail_of: str | None = None, gpu_history: bool = True,
             gpu_since: Mapping[str, float] | None = None) -> PollResult:
        """Hosts, APIs, the watched API's detail and each ready GPU host's report. GPU history:
        the samples after `gpu_since[host]`, or the last FIRST_HISTORY_S seconds for a host seen
        for the first time (each poll then moves a sample per GPU, not ten minutes of them)."""
        result = PollResult(at=time.time(), hosts=self.client.hosts(), apis=self.client.apis())
        if detail_of:
            try:
                result.detail = self.client.api(detail_of)
            except ControlError as error:
                if error.status != 404:
                    raise
        gpu_hosts = [h.name for h in result.hosts if h.state == "ready" and h.info and h.info.gpus]
        if gpu_history and gpu_hosts:
            since = {name: (gpu_since or {}).get(name, result.at - FIRST_HISTORY_S) for name in gpu_hosts}
            try:
                body = self.client.fleet_gpus(since)
            except ControlError as error:  # hosts and APIs still count; the GPU note says why
                result.gpu_errors = {name: f"GPU values not read: {error}" for name in gpu_hosts}
            else:
                result.gpus = body.reports
                result.gpu_errors = body.errors
        return result

    # -- APIs -----------------------------------------------------------------------------------
    def delete(self, name: str) -> DeletedBody:
        return self.client.delete(name)

    def scale(self, name: str, request: ScaleRequest) -> ApiSummary:
        return self.client.scale(name, request)

    def restart(self, name: str, replica_id: str) -> None:
        self.client.restart(name, replica_id)

    def deploy(self, request: DeployRequest) -> Iterator[DeployEvent]:
        return self.client.deploy(request)

    def predict(self, name: str, payload: str) -> PredictResult:
        """POST `payload` (JSON text, or plain text) to the router at controller URL + /name."""
        try:
            json.loads(payload)
            headers = {"Content-Type": "application/json"}
        except ValueError:
            headers = {"Content-Type": "text/plain"}
        started = time.perf_counter()
        try:
            response = httpx.post(f"{self.url}/{name}", content=payload.encode(), headers=headers,
                                  timeout=60.0)
        except httpx.HTTPError as error:
            return PredictResult(None, "", (time.perf_counter() - started) * 1000,
                                 f"cannot reach the router at {self.url}: {error}")
        latency = (time.perf_counter() - started) * 1000
        return PredictResult(response.status_code, response.text, latency)

    async def follow_logs(self, name: str, *, tail: int = 200,
                          replica: str | None = None) -> AsyncIterator[str]:
        """GET /v1/apis/{name}/logs?follow=true as lines. Async so that cancelling the worker that
        reads it ends it at once (a thread blocked in a socket read cannot be interrupted)."""
        params: dict[str, Any] = {"tail": tail, "follow": "true"}
        if replica:
            params["replica"] = replica
        async with httpx.AsyncClient(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"},
                                     timeout=httpx.Timeout(10.0, read=None)) as client:
            try:
                async with client.stream("GET", f"/v1/apis/{name}/logs", params=params) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        raise error_of(response)
                    async for line in response.aiter_lines():
                        yield line
            except httpx.TransportError as error:
                raise ControlError(f"the log stream from {self.url} broke: {error}") from error

    # -- hosts ----------------------------------------------------------------------------------
    def add_host(self, request: AddHostRequest) -> Iterator[HostEvent]:
        return self.client.add_host(request)

    def upgrade_host(self, name: str) -> Iterator[HostEvent]:
        return self.client.upgrade_host(name)

    def remove_host(self, name: str) -> Any:
        return self.client.remove_host(name)
