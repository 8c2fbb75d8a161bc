"""Worker-side calls to the controller: everything the TUI asks of the control API.

Runs in worker threads only (never on the UI loop). It uses ControlClient for what ControlClient
offers, and thin httpx calls with the same URL and token for what it does not offer yet
(hosts add/upgrade/remove, per-host GPU history, test predictions through the router).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
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
    def poll(self, detail_of: str | None = None, gpu_history: bool = True) -> PollResult:
        result = PollResult(at=time.time(), hosts=self.client.hosts(), apis=self.client.apis())
        if detail_of:
            try:
                result.detail = self.client.api(detail_of)
            except ControlError as error:
                if error.status != 404:
                    raise
        if gpu_history:
            for host in result.hosts:
                if host.state != "ready" or host.info is None or not host.info.gpus:
                    continue
                try:
                    report = self.gpus(host.name)
                except ControlError as error:
                    result.gpu_errors[host.name] = str(error)
                    continue
                if report is not None:
                    result.gpus[host.name] = report
        return result

    def gpus(self, host: str) -> GpuReport | None:
        """The host's GPU report with history, or None when the host just left."""
        try:
            return self.client.gpus(host, history=True)
        except ControlError as error:
            if error.status in (404, 405):
                return None
            raise

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
