"""What an agent needs to run one replica of an API version, and the hash that tells whether a
running replica is up to date (the deploy compares it; the reconciler creates replicas from it)."""

from __future__ import annotations

import hashlib
import json

from workbench.spec.models import ApiSpec
from workbench.wire.agent import ReplicaRequest
from workbench.wire.replica import RuntimeConfig, RuntimeKind


def replica_request(spec: ApiSpec, runtime: RuntimeKind, artifact: str, image_hash: str) -> ReplicaRequest:
    """The request for one replica; its spec_hash covers the image, the runtime, the predictor's
    config, serving, env and compute — not routing, update or scaling, which change no replica."""
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
