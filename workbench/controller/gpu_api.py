"""GET /v1/hosts/{name}/gpus: one host's GPU report (current values + history) from its agent.

The control API mounts this router: `app.include_router(gpu_routes(get_agent))`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fastapi import APIRouter, Query
from starlette.exceptions import HTTPException

from workbench.agent_client import AgentClient, AgentError
from workbench.models import GpuReport


def gpu_routes(get_agent: Callable[[str], AgentClient | None]) -> APIRouter:
    """`get_agent(name)` gives the host's agent client, or None when no such host is known."""
    router = APIRouter()

    @router.get("/v1/hosts/{name}/gpus", response_model=GpuReport)
    async def host_gpus(name: str, history: bool = Query(True, description="include ~10 min of history")
                        ) -> GpuReport:
        client = get_agent(name)
        if client is None:
            raise HTTPException(404, f"no host {name!r}")
        try:
            return await asyncio.to_thread(client.gpus, history)
        except AgentError as error:
            status = 502 if error.status is None or error.status >= 500 else error.status
            raise HTTPException(status, f"{name}: cannot read GPUs: {error}") from error

    return router
