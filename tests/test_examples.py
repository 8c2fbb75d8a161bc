"""The examples, end to end through the CLI: deploy → predict → delete, in Docker and as processes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.real_parts import EXAMPLES, Workbench, docker_answers, require_docker

DIGIT_ZERO = [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0, 0, 4, 12, 0,
              0, 8, 8, 0, 0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0, 0, 2, 14, 5, 10, 12, 0, 0,
              0, 0, 6, 13, 10, 0, 0, 0]

REQUESTS: dict[str, tuple[Any, Any]] = {
    "echo": ({"hello": "world", "n": [1, 2]}, lambda body: body == {"hello": "world", "n": [1, 2]}),
    "iris": ({"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
             lambda body: body["label"] == "setosa" and body["probabilities"]["setosa"] > 0.8),
    "digits-torch": ({"pixels": DIGIT_ZERO},
                     lambda body: body["digit"] == 0 and body["device"] in ("cpu", "cuda")),
}


@pytest.fixture(scope="module", params=["process", pytest.param("docker", marks=pytest.mark.docker)])
def bench(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workbench]:
    """One home per runtime, shared by the examples (so the agent starts once)."""
    runtime = request.param
    if runtime == "docker":
        require_docker()
    workbench = Workbench.create(tmp_path_factory.mktemp(f"home-{runtime}"))
    workbench.env["WORKBENCH_TEST_RUNTIME"] = runtime
    try:
        yield workbench
    finally:
        workbench.cleanup()


@pytest.mark.slow
@pytest.mark.parametrize("example", ["echo", "iris", "digits-torch"])
def test_deploy_predict_delete(bench: Workbench, example: str) -> None:
    runtime = bench.env["WORKBENCH_TEST_RUNTIME"]
    deployed = bench.run("deploy", str(EXAMPLES / example), "--runtime", runtime, "--json")
    [result] = json.loads(deployed.stdout)
    assert result["name"] == example and result["runtime"] == runtime
    assert result["endpoint"] == f"{bench.url}/{example}"

    payload, check = REQUESTS[example]
    answer = bench.json("predict", example, json.dumps(payload))
    assert answer["status"] == 200, answer  # type: ignore[index]
    assert check(answer["body"]), answer  # type: ignore[index]
    # an app calls the router directly
    direct = httpx.post(result["endpoint"], json=payload, timeout=30)
    assert direct.status_code == 200 and check(direct.json())
    assert direct.headers["x-request-id"]

    listed = bench.json("get")
    [row] = [row for row in listed if row["name"] == example]  # type: ignore[union-attr]
    assert row["status"] == "live" and row["replicas"]["ready"] == 1
    assert row["traffic"]["status_2xx"] >= 2

    # deploying the same spec again changes nothing and rebuilds nothing
    again = json.loads(bench.run("deploy", str(EXAMPLES / example), "--runtime", runtime, "--json").stdout)
    assert again[0]["unchanged"] is True and again[0]["built"] is False

    bench.run("delete", example)
    assert all(row["name"] != example for row in bench.json("get"))  # type: ignore[union-attr]
    _assert_nothing_left(bench, example, runtime)


def _assert_nothing_left(bench: Workbench, example: str, runtime: str) -> None:
    if runtime == "docker" and docker_answers():
        import docker

        client = docker.from_env()
        left = client.containers.list(all=True, filters={"label": [f"workbench.agent={bench.agent_id()}",
                                                                    f"workbench.api={example}"]})
        client.close()
        assert left == []
    for meta in Path(bench.agent_home / "replicas").glob("*.json"):
        assert json.loads(meta.read_text()).get("request", {}).get("api") != example
