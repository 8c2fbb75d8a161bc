"""controller/replica_request.py: what an agent gets for one replica, and the spec_hash that says
a running replica is up to date — the image, runtime, predictor config, serving, env and compute,
and nothing else."""

from __future__ import annotations

from typing import Any

import pytest

from workbench.controller.replica_request import replica_request
from workbench.spec.models import ApiSpec

BASE: dict[str, Any] = {
    "name": "echo",
    "predictor": {"path": "predictor.py", "config": {"tag": "v1"}, "env": {"MODEL": "small"}},
    "compute": {"cpu": 0.5, "mem": "256Mi"},
    "serving": {"max_concurrency": 4},
}


def spec_with(**changes: Any) -> ApiSpec:
    data = {key: dict(value) if isinstance(value, dict) else value for key, value in BASE.items()}
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            data.setdefault(section, {})[field] = value
        else:
            data[section] = value
    return ApiSpec.model_validate(data)


def spec_hash(spec: ApiSpec, runtime: str = "process", image_hash: str = "a" * 64) -> str:
    return replica_request(spec, runtime, "echo-aaaa", image_hash).spec_hash  # type: ignore[arg-type]


def test_the_request_carries_what_the_agent_runs() -> None:
    request = replica_request(spec_with(), "docker", "workbench/echo:aaaa", "a" * 64)
    assert request.api == "echo" and request.runtime == "docker" and request.artifact == "workbench/echo:aaaa"
    assert request.runtime_config.project_dir == "/app"
    assert request.runtime_config.config == {"tag": "v1"}
    assert request.runtime_config.serving.max_concurrency == 4
    assert request.env == {"MODEL": "small"}
    assert request.cpu == 0.5 and request.mem_bytes == 256 * 1024 * 1024
    assert len(request.spec_hash) == 16
    assert replica_request(spec_with(), "docker", "workbench/echo:aaaa", "a" * 64) == request  # stable


def test_image_and_runtime_are_in_the_hash() -> None:
    base = spec_hash(spec_with())
    assert spec_hash(spec_with(), image_hash="b" * 64) != base
    assert spec_hash(spec_with(), runtime="docker") != base


@pytest.mark.parametrize("change", [
    {"predictor__config": {"tag": "v2"}},
    {"predictor__class": "OtherPredictor"},
    {"serving__max_concurrency": 8},
    {"predictor__env": {"MODEL": "big"}},
    {"compute__cpu": 1.0},
    {"compute__mem": "1Gi"},
])
def test_what_changes_a_replica_changes_the_hash(change: dict[str, Any]) -> None:
    assert spec_hash(spec_with(**change)) != spec_hash(spec_with())


@pytest.mark.parametrize("change", [
    {"replicas": 5},
    {"autoscaling": {"min_replicas": 1, "max_replicas": 4}},
    {"routing__timeout": 5.0},
    {"routing__policy": "round_robin"},
    {"update__max_surge": 2},
    {"image__apt": ["curl"]},  # reaches replicas through the image hash, not on its own
])
def test_what_changes_no_replica_leaves_the_hash(change: dict[str, Any]) -> None:
    assert spec_hash(spec_with(**change)) == spec_hash(spec_with())
