"""Deploy APIs onto one host's agent: build (or reuse) the artifact, start replicas, swap.

The controller (workbench.controller.deployments) calls `choose_runtime`, `ensure_artifact` and
`replica_request` per host; `Deployer` is the direct, controller-less flow against one agent.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from workbench.clients.agent import AgentClient
from workbench.images.context import make_context
from workbench.images.plan import plan_build
from workbench.spec.loader import LoadedSpec
from workbench.spec.models import ApiSpec
from workbench.wire.agent import BuildEvent, HostInfo, ReplicaInfo, ReplicaRequest, ReplicaState
from workbench.wire.errors import WorkbenchError
from workbench.wire.replica import RuntimeConfig, RuntimeKind

#: Renders a build's event stream and returns the artifact (raises on a failed build).
BuildRenderer = Callable[[Iterable[BuildEvent]], str | None]


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


def ensure_artifact(client: AgentClient, loaded: LoadedSpec, runtime: RuntimeKind, offline: bool | None,
                    *, say: Callable[[str], None], render_build: BuildRenderer) -> tuple[str, str, bool]:
    """Build the API's image/bundle on `client`'s host unless it is there already (by content
    hash). Returns (artifact, image_hash, built)."""
    plan = plan_build(loaded, runtime, offline)
    image_hash = plan.image_hash()
    artifact = plan.artifact(image_hash)
    if client.artifact_exists(runtime, artifact):
        say(f"{loaded.spec.name}: {artifact} is up to date (no rebuild)")
        return artifact, image_hash, False
    say(f"{loaded.spec.name}: building {artifact} ({runtime} runtime)")
    context = make_context(loaded, runtime=runtime, offline=offline, progress=say)
    try:
        built = render_build(client.build(runtime, context.artifact, context.path))
    finally:
        context.cleanup()
    return built or context.artifact, context.image_hash, True


class Deployer:
    """Runs the deploy steps against one agent, reporting progress through callbacks."""

    def __init__(self, client: AgentClient, *, say: Callable[[str], None],
                 render_build: BuildRenderer,
                 on_wait: Callable[[str, list[ReplicaInfo], int], None] | None = None,
                 poll_interval: float = 0.25):
        self.client = client
        self.say = say
        self.render_build = render_build
        self.on_wait = on_wait
        self.poll_interval = poll_interval

    def ensure_artifact(self, loaded: LoadedSpec, runtime: RuntimeKind,
                        offline: bool | None) -> tuple[str, str, bool]:
        """Build the API's image/bundle unless the agent already has it (by content hash)."""
        return ensure_artifact(self.client, loaded, runtime, offline, say=self.say,
                               render_build=self.render_build)

    def deploy(self, loaded: LoadedSpec, host: HostInfo, *, runtime_override: str | None = None,
               offline: bool | None = None) -> DeployResult:
        spec = loaded.spec
        runtime = choose_runtime(loaded, host, runtime_override)
        if runtime == "process" and spec.runtime == "auto" and runtime_override is None:
            self.say(f"{spec.name}: Docker is not available ({host.docker.error or 'no engine'}); "
                     "using the process runtime")
        artifact, image_hash, built = self.ensure_artifact(loaded, runtime, offline)
        request = replica_request(loaded, runtime, artifact, image_hash)
        existing = self.client.replicas(spec.name)
        current = [r for r in existing if r.spec_hash == request.spec_hash]
        outdated = [r for r in existing if r.spec_hash != request.spec_hash]
        desired = spec.desired_replicas
        missing = max(desired - len(current), 0)
        result = DeployResult(api=spec.name, runtime=runtime, artifact=artifact, built=built)
        created: list[ReplicaInfo] = []
        try:
            for _ in range(missing):
                created.append(self.client.create_replica(request))
        except WorkbenchError as error:
            self._remove(created)
            raise DeployError(f"{spec.name}: the agent refused to start a replica: {error}") from error
        if created:
            self.say(f"{spec.name}: starting {len(created)} replica(s)")
            self._wait_ready(spec.name, [r.id for r in created], spec.serving.startup_timeout,
                             rollback=created, keeps_serving=bool(outdated or current))
        for extra in current[desired:]:
            self.client.delete_replica(extra.id)
        for old in outdated:
            self.client.delete_replica(old.id)
        result.replaced = len(outdated)
        result.unchanged = not built and not created and not outdated and len(current) == desired
        result.replicas = self.client.replicas(spec.name)
        return result

    def _wait_ready(self, api: str, ids: list[str], timeout: float, *, rollback: list[ReplicaInfo],
                    keeps_serving: bool) -> None:
        deadline = time.monotonic() + timeout
        while True:
            states = [self.client.replica(replica_id) for replica_id in ids]
            if self.on_wait:
                self.on_wait(api, states, len(ids))
            failed = next((r for r in states if r.state == ReplicaState.FAILED), None)
            if failed is not None:
                self._remove(rollback)
                left = ("the previous version keeps serving" if keeps_serving
                        else "nothing was deployed")
                raise DeployError(
                    f"{api}: replica {failed.id} failed to start: {failed.message or 'exited'}; "
                    f"{left}. Fix the predictor and deploy again; its output is below.",
                    failed.log_tail,
                )
            if all(r.state == ReplicaState.READY for r in states):
                return
            if time.monotonic() > deadline:
                tail = next((r.log_tail for r in states if r.state != ReplicaState.READY), [])
                self._remove(rollback)
                raise DeployError(
                    f"{api}: replicas not ready after {timeout:.0f} s (serving.startup_timeout); "
                    "nothing changed. Raise the timeout if the model loads slowly.", tail)
            time.sleep(self.poll_interval)

    def _remove(self, replicas: list[ReplicaInfo]) -> None:
        for replica in replicas:
            with contextlib.suppress(WorkbenchError):
                self.client.delete_replica(replica.id, grace=5.0)


def delete_api(client: AgentClient, api: str) -> int:
    """Stop and remove every replica of `api`; returns how many there were."""
    replicas = client.replicas(api)
    for replica in replicas:
        client.delete_replica(replica.id)
    return len(replicas)
