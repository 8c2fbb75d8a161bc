"""Artifacts on hosts: which runtime an API gets, its build plan, and its image or bundle on a
host — found there by content hash, else built from the plan.

A deploy makes the plan once per (API, runtime, offline) with `plan_artifact` and hands the same
plan to every host's `ensure_artifact`; the catch-up builder keeps it for hosts that join later.
Today an artifact is a predictor image (docker runtime) or bundle (process runtime) planned by
`workbench.images.plan`. Another kind of artifact (an image to pull, a project's own Dockerfile)
is another plan made in `plan_artifact` and produced in `ensure_artifact`; another input of the
content hash (a model's manifest) goes into the plan's `hash_inputs`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from workbench.clients.agent import AsyncAgentClient
from workbench.images.context import make_context
from workbench.images.plan import BuildPlan, plan_build
from workbench.spec.loader import LoadedSpec
from workbench.spec.models import ApiSpec
from workbench.wire.agent import BuildEvent, HostInfo
from workbench.wire.errors import Failed
from workbench.wire.replica import RuntimeKind


class DeployError(Failed):
    """A deploy failed; the message says why and what to do. `log_tail` holds replica output."""

    def __init__(self, message: str, log_tail: list[str] | None = None):
        super().__init__(message)
        self.log_tail = log_tail or []


def choose_runtime(spec: ApiSpec, host: HostInfo, override: RuntimeKind | None = None) -> RuntimeKind:
    """The runtime `spec` gets on `host`: the override, else the spec's; `auto` takes Docker when
    the host has a working engine, else the process runtime."""
    wanted = override or spec.runtime
    if wanted == "process":
        return "process"
    if host.docker.available:
        return "docker"
    reason = host.docker.error or "no Docker engine answers"
    if wanted == "docker":
        raise DeployError(
            f"API {spec.name} asks for the docker runtime, but Docker is not available on "
            f"{host.hostname}: {reason}. Start the Docker engine (e.g. `sudo systemctl start docker`), "
            "or use the process runtime: `runtime: process` in workbench.yaml or `--runtime process`."
        )
    return "process"


def plan_artifact(loaded: LoadedSpec, runtime: RuntimeKind, offline: bool | None) -> BuildPlan:
    """The plan of the API's artifact; it reads and hashes the project's files (call it in a
    worker thread, once per deploy)."""
    return plan_build(loaded, runtime, offline)


async def ensure_artifact(client: AsyncAgentClient, plan: BuildPlan, *, say: Callable[[str], None],
                          on_build: Callable[[BuildEvent], None]) -> bool:
    """Put `plan.artifact` on `client`'s host unless it is there already; True when it was built.

    `say` gets progress lines (also from a worker thread); `on_build` each build event, and raises
    to stop on a failed build. The context holds exactly the planned files (ContextChanged when
    one changed since the plan was made)."""
    if await client.artifact_exists(plan.runtime, plan.artifact):
        say(f"{plan.api}: {plan.artifact} is up to date (no rebuild)")
        return False
    say(f"{plan.api}: building {plan.artifact} ({plan.runtime} runtime)")
    context = await asyncio.to_thread(make_context, plan, progress=say)
    try:
        async for event in client.build(plan.runtime, plan.artifact, context.path):
            on_build(event)
    finally:
        context.cleanup()
    return True
