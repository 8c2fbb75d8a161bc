"""Artifacts on hosts: which runtime an API gets, its build plan, and its image or bundle on a
host — found there by content hash, else built (or pulled) from the plan.

A deploy makes the plan once per (API, runtime, offline) with `plan_artifact` and hands the same
plan to every host's `ensure_artifact`; the catch-up builder keeps it for hosts that join later.
An artifact is one of:

- a predictor image (docker runtime) or bundle (process runtime): `workbench.images.plan`;
- a container API's bundle on the process runtime (its project's files, the command runs there):
  the same plan;
- a container API's own Dockerfile, built on each host and tagged by content hash:
  `workbench.images.container.DockerfilePlan`;
- a container API's image, found on each host or pulled there: `ImagePlan`, whose id (from the
  first host) goes into the spec hash.

Another input of the content hash (a model's manifest) goes into a plan's `hash_inputs`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from workbench.clients.agent import AsyncAgentClient
from workbench.images.container import DockerfilePlan, ImagePlan, plan_dockerfile, plan_image
from workbench.images.context import make_context, make_dockerfile_context
from workbench.images.plan import BuildPlan, plan_build
from workbench.spec.loader import LoadedSpec
from workbench.spec.models import ApiSpec
from workbench.wire.agent import BuildEvent, HostInfo
from workbench.wire.errors import Failed
from workbench.wire.replica import RuntimeKind

#: What a deploy makes once per API and hands to every host.
ArtifactPlan = BuildPlan | DockerfilePlan | ImagePlan


class DeployError(Failed):
    """A deploy failed; the message says why and what to do. `log_tail` holds replica output."""

    def __init__(self, message: str, log_tail: list[str] | None = None):
        super().__init__(message)
        self.log_tail = log_tail or []


def choose_runtime(spec: ApiSpec, host: HostInfo, override: RuntimeKind | None = None) -> RuntimeKind:
    """The runtime `spec` gets on `host`: the override, else the spec's; `auto` takes Docker when
    the host has a working engine (and, for a container API, an image or Dockerfile to run), else
    the process runtime."""
    wanted = override or spec.runtime
    container = spec.container
    if container is not None:
        _check_container_runtime(spec, wanted)
        if container.image is None and container.build is None:
            return "process"
    if wanted == "process":
        return "process"
    if host.docker.available:
        return "docker"
    reason = host.docker.error or "no Docker engine answers"
    if wanted == "docker" or (container is not None and not container.command):
        raise DeployError(
            f"API {spec.name} asks for the docker runtime, but Docker is not available on "
            f"{host.hostname}: {reason}. Start the Docker engine (e.g. `sudo systemctl start docker`), "
            "or use the process runtime: `runtime: process` in workbench.yaml or `--runtime process`"
            + (" with a container.command" if container is not None else "") + "."
        )
    return "process"


def _check_container_runtime(spec: ApiSpec, wanted: str) -> None:
    container = spec.container
    assert container is not None
    if wanted == "process" and not container.command:
        raise DeployError(f"API {spec.name}: the process runtime runs container.command on the host, and "
                          "it has none; set one (e.g. [python, server.py]) or deploy with Docker")
    if wanted == "docker" and container.image is None and container.build is None:
        raise DeployError(f"API {spec.name}: the docker runtime runs container.image or container.build, "
                          "and it has neither; set one or deploy with `--runtime process`")


def plan_artifact(loaded: LoadedSpec, runtime: RuntimeKind, offline: bool | None) -> ArtifactPlan:
    """The plan of the API's artifact; it reads and hashes the project's files (call it in a
    worker thread, once per deploy)."""
    container = loaded.spec.container
    if container is not None and runtime == "docker":
        return plan_image(loaded) if container.image is not None else plan_dockerfile(loaded, offline)
    return plan_build(loaded, runtime, offline)


async def ensure_artifact(client: AsyncAgentClient, plan: ArtifactPlan, *, say: Callable[[str], None],
                          on_build: Callable[[BuildEvent], None]) -> bool:
    """Put `plan.artifact` on `client`'s host unless it is there already; True when it was built
    (or pulled).

    `say` gets progress lines (also from a worker thread); `on_build` each build (or pull) event,
    and raises to stop on a failed one. The context holds exactly the planned files (ContextChanged
    when one changed since the plan was made)."""
    if isinstance(plan, ImagePlan):
        return await _pull(client, plan, say=say, on_build=on_build)
    if await client.artifact_exists(plan.runtime, plan.artifact):
        say(f"{plan.api}: {plan.artifact} is up to date (no rebuild)")
        return False
    say(f"{plan.api}: building {plan.artifact} ({plan.runtime} runtime)")
    if isinstance(plan, DockerfilePlan):
        context = await asyncio.to_thread(make_dockerfile_context, plan, progress=say)
    else:
        context = await asyncio.to_thread(make_context, plan, progress=say)
    try:
        async for event in client.build(plan.runtime, plan.artifact, context.path):
            on_build(event)
    finally:
        context.cleanup()
    return True


async def _pull(client: AsyncAgentClient, plan: ImagePlan, *, say: Callable[[str], None],
                on_build: Callable[[BuildEvent], None]) -> bool:
    pulled = False
    async for event in client.pull(plan.image):
        on_build(event)
        if event.kind != "done":
            continue
        pulled = not event.cached
        if plan.image_id is None:
            plan.image_id = event.image_id
        elif event.image_id and event.image_id != plan.image_id:
            say(f"note: {plan.api}: this host's {plan.image} is {event.image_id[:19]}, another host's "
                f"{plan.image_id[:19]}; pin a digest (image@sha256:...) to run one image everywhere")
    if not pulled:
        say(f"{plan.api}: image {plan.image} is present ({(plan.image_id or '')[:19]})")
    return pulled
