"""GPU reports from the agents, through the control API.

- GET /v1/hosts/{name}/gpus: one host's report (current values + history);
- GET /v1/gpus: every ready GPU host's report in one answer, the agents asked in parallel (what
  the TUI polls each second: one request instead of one per host).

History can be cut to the samples after a time (`since`), so a client that polls keeps up with a
sample per GPU per poll instead of re-reading ten minutes. The control API mounts this router:
`app.include_router(gpu_routes(get_agent, gpu_hosts))`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Query
from starlette.exceptions import HTTPException

from workbench.clients.agent import AsyncAgentClient
from workbench.wire.agent import GpuReport
from workbench.wire.control import FleetGpusBody
from workbench.wire.errors import WorkbenchError

#: one host's share of GET /v1/gpus: a hung agent costs the whole answer this long, not the
#: agent client's own timeout, so the other hosts' values still arrive every poll
FLEET_READ_DEADLINE_S = 2.0


def parse_since(values: list[str]) -> dict[str, float]:
    """`NAME:UNIXTIME` per host (the time is after the last colon)."""
    out: dict[str, float] = {}
    for value in values:
        name, sep, at = value.rpartition(":")
        try:
            out[name] = float(at)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise HTTPException(422, f"since={value!r}: expected HOST:UNIXTIME, "
                                     "e.g. since=local:1790000000.5")
    return out


def gpu_routes(get_agent: Callable[[str], AsyncAgentClient | None],
               gpu_hosts: Callable[[], list[str]] = list) -> APIRouter:
    """`get_agent(name)` gives the host's agent client, or None when no such host is known;
    `gpu_hosts()` names the hosts that are ready and have GPUs."""
    router = APIRouter()

    @router.get("/v1/hosts/{name}/gpus", response_model=GpuReport)
    async def host_gpus(name: str,
                        history: bool = Query(True, description="include ~10 min of history"),
                        since: float | None = Query(None, description="only history samples taken "
                                                    "after this Unix time")) -> GpuReport:
        client = get_agent(name)
        if client is None:
            raise HTTPException(404, f"no host {name!r}")
        try:
            return await client.gpus(history, since)
        except WorkbenchError as error:
            status = 502 if error.status is None or error.status >= 500 else error.status
            raise HTTPException(status, f"{name}: cannot read GPUs: {error}") from error

    @router.get("/v1/gpus", response_model=FleetGpusBody)
    async def fleet_gpus(history: bool = Query(True, description="include history"),
                         since: Annotated[list[str] | None, Query(
                             description="HOST:UNIXTIME: only that host's samples taken after that "
                                         "time (repeat per host)")] = None) -> FleetGpusBody:
        cut = parse_since(since or [])
        body = FleetGpusBody()

        async def read(name: str) -> None:
            client = get_agent(name)
            if client is None:
                return
            try:
                body.reports[name] = await asyncio.wait_for(
                    client.gpus(history, cut.get(name)), FLEET_READ_DEADLINE_S)
            except WorkbenchError as error:
                body.errors[name] = f"{name}: cannot read GPUs: {error}"
            except TimeoutError:
                body.errors[name] = (f"{name}: cannot read GPUs: the agent did not answer within "
                                     f"{FLEET_READ_DEADLINE_S:.0f} s (hung or overloaded?)")

        await asyncio.gather(*(read(name) for name in gpu_hosts()))
        body.reports = dict(sorted(body.reports.items()))
        return body

    return router
