"""Deploy APIs onto one host's agent: build (or reuse) the artifact, start replicas, swap.

The controller (workbench.controller.deployments) calls `choose_runtime`, `ensure_artifact` and
`replica_request` per host.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from workbench.clients.agent import AsyncAgentClient
from workbench.images.context import make_context
from workbench.images.plan import plan_build
from workbench.spec.loader import LoadedSpec
from workbench.spec.models import ApiSpec
from workbench.wire.agent import BuildEvent, HostInfo, ReplicaInfo, ReplicaRequest
from workbench.wire.replica import RuntimeConfig, RuntimeKind


class DeployError(Exception):
    """A deploy failed; the message says why and what to do. `log_tail` holds replica output."""

    def __init__(self, message: str, log_tail: list[str] | None = None):
        super().__init__(message)
        self.log_tail = log_tail or []


@dataclass
class DeployResult:
    api: str
    runtime: RuntimeKind
    artifact: str
    built: bool
    replicas: list[ReplicaInfo] = field(default_factory=list)
    replaced: int = 0
    unchanged: bool = False


def choose_runtime(loaded: LoadedSpec, host: HostInfo, override: str | None = None) -> RuntimeKind:
    wanted = override or loaded.spec.runtime
    if wanted == "process":
        return "process"
    if host.docker.available:
        return "docker"
    reason = host.docker.error or "no Docker engine answers"
    if wanted == "docker":
        raise DeployError(
            f"API {loaded.spec.name} asks for the docker runtime, but Docker is not available on "
            f"{host.hostname}: {reason}. Start the Docker engine (e.g. `sudo systemctl start docker`), "
            "or use the process runtime: `runtime: process` in workbench.yaml or `--runtime process`."
        )
    return "process"


def replica_request(loaded: LoadedSpec | ApiSpec, runtime: RuntimeKind, artifact: str,
                    image_hash: str) -> ReplicaRequest:
    """What an agent needs to run one replica; its spec_hash identifies an up-to-date replica
    (image, runtime, predictor config, serving, env, compute — not routing, update or scaling)."""
    spec = loaded.spec if isinstance(loaded, LoadedSpec) else loaded
    runtime_config = RuntimeConfig(
        api=spec.name,
        project_dir="/app",
        predictor_path=spec.predictor.path,
        predictor_class=spec.predictor.class_name,
        config=spec.predictor.config,
        serving=spec.serving,
    )
    identity = {
        "image_hash": image_hash,
        "runtime": runtime,
        "runtime_config": runtime_config.model_dump(mode="json"),
        "env": spec.predictor.env,
        "compute": spec.compute.model_dump(mode="json"),
    }
    spec_hash = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return ReplicaRequest(
        api=spec.name,
        spec_hash=spec_hash,
        runtime=runtime,
        artifact=artifact,
        runtime_config=runtime_config,
        env=spec.predictor.env,
        cpu=spec.compute.cpu,
        mem_bytes=spec.compute.mem,
    )


async def ensure_artifact(client: AsyncAgentClient, loaded: LoadedSpec, runtime: RuntimeKind,
                          offline: bool | None, *, say: Callable[[str], None],
                          on_build: Callable[[BuildEvent], None]) -> tuple[str, str, bool]:
    """Build the API's image/bundle on `client`'s host unless it is there already (by content
    hash). `say` gets progress lines (also from a worker thread); `on_build` each build event and
    raises to stop on a failed build. Returns (artifact, image_hash, built)."""
    plan = await asyncio.to_thread(plan_build, loaded, runtime, offline)
    image_hash = plan.image_hash()
    artifact = plan.artifact(image_hash)
    if await client.artifact_exists(runtime, artifact):
        say(f"{loaded.spec.name}: {artifact} is up to date (no rebuild)")
        return artifact, image_hash, False
    say(f"{loaded.spec.name}: building {artifact} ({runtime} runtime)")
    context = await asyncio.to_thread(make_context, loaded, runtime=runtime, offline=offline, progress=say)
    built: str | None = None
    try:
        async for event in client.build(runtime, context.artifact, context.path):
            on_build(event)
            if event.kind == "done":
                built = event.artifact
    finally:
        context.cleanup()
    return built or context.artifact, context.image_hash, True
