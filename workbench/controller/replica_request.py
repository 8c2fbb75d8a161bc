"""What an agent needs to run one replica of an API version, and the hash that tells whether a
running replica is up to date (the deploy compares it; the reconciler creates replicas from it)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from workbench.spec.models import ApiSpec, ContainerSpec
from workbench.wire.agent import ReplicaRequest
from workbench.wire.replica import HealthCheck, RuntimeConfig, RuntimeKind, ServerConfig


def replica_request(spec: ApiSpec, runtime: RuntimeKind, artifact: str, image_hash: str) -> ReplicaRequest:
    """The request for one replica; its spec_hash covers the image (a container API's image id or
    built hash), the runtime, what the replica runs with (a predictor's config and serving, a
    server's command, args, port, health, shm_size and timeouts), env and compute — not routing,
    update or scaling, which change no replica."""
    if spec.container is not None:
        return _server_request(spec, spec.container, runtime, artifact, image_hash)
    predictor = spec.predictor
    assert predictor is not None  # ApiSpec sets the default predictor when there is no container
    runtime_config = RuntimeConfig(
        api=spec.name,
        project_dir="/app",
        predictor_path=predictor.path,
        predictor_class=predictor.class_name,
        config=predictor.config,
        serving=spec.serving,
    )
    identity = {
        "image_hash": image_hash,
        "runtime": runtime,
        "runtime_config": runtime_config.model_dump(mode="json"),
        "env": predictor.env,
        "compute": spec.compute.model_dump(mode="json"),
    }
    return ReplicaRequest(
        api=spec.name,
        spec_hash=_hash(identity),
        runtime=runtime,
        artifact=artifact,
        runtime_config=runtime_config,
        env=predictor.env,
        cpu=spec.compute.cpu,
        mem_bytes=spec.compute.mem,
    )


def server_config(spec: ApiSpec, container: ContainerSpec) -> ServerConfig:
    """A container API's server as the agent runs it."""
    health = container.health
    return ServerConfig(
        command=container.command,
        args=container.args,
        port=container.port,
        shm_size=container.shm_size,
        health=HealthCheck(path=health.path, port=health.port, timeout=health.timeout, period=health.period),
        startup_timeout=container.startup_timeout,
        graceful_shutdown=spec.serving.graceful_shutdown,
    )


def _server_request(spec: ApiSpec, container: ContainerSpec, runtime: RuntimeKind, artifact: str,
                    image_hash: str) -> ReplicaRequest:
    server = server_config(spec, container)
    identity = {
        "kind": "container",
        "image_hash": image_hash,
        "runtime": runtime,
        "server": server.model_dump(mode="json"),
        "env": container.env,
        "compute": spec.compute.model_dump(mode="json"),
    }
    return ReplicaRequest(
        api=spec.name,
        spec_hash=_hash(identity),
        runtime=runtime,
        artifact=artifact,
        server=server,
        env=container.env,
        cpu=spec.compute.cpu,
        mem_bytes=spec.compute.mem,
    )


def _hash(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
