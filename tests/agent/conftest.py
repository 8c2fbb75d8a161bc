"""Fixtures for the agent tests: one real agent per session on a temp home, built artifacts."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import httpx
import pytest

from tests.agent.helpers import Agent, bundle_context, docker_context, read_events
from tests.support.real_parts import require_docker


@pytest.fixture(scope="session")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    """The agent under test; tests that SIGKILL it start it again on the same home."""
    a = Agent(tmp_path_factory.mktemp("agent") / "home")
    try:
        yield a.start()
    finally:
        a.cleanup()


@pytest.fixture
def client(agent: Agent) -> Iterator[httpx.Client]:
    """An authenticated client; every replica left after the test is deleted (grace 0)."""
    if agent.proc is None or agent.proc.poll() is not None:
        agent.start()
    with agent.client() as c:
        yield c
        if agent.proc is not None and agent.proc.poll() is None:
            for r in c.get("/v1/replicas").json():
                c.delete(f"/v1/replicas/{r['id']}", params={"grace": 0})


@pytest.fixture(scope="session")
def bundle(agent: Agent) -> str:
    """A process bundle (requirements: six; a build command), built once per session."""
    artifact, tar = bundle_context()
    with agent.client(timeout=600) as c:
        resp = c.post("/v1/builds", params={"runtime": "process", "artifact": artifact}, content=tar)
    events = read_events(resp)
    assert events[-1]["kind"] == "done", events[-5:]
    return artifact


@pytest.fixture(scope="session")
def docker_image(agent: Agent) -> tuple[str, list[dict[str, object]]]:
    """The test replica image built through /v1/builds once per session; returns the tag and
    the build events. The tag is removed first (keeping its layers as cache) so the build is real."""
    require_docker()
    tag, tar = docker_context()
    subprocess.run(["docker", "rmi", "--no-prune", tag], capture_output=True, check=False)
    with agent.client(timeout=1200) as c:
        resp = c.post("/v1/builds", params={"runtime": "docker", "artifact": tag}, content=tar)
    assert resp.status_code == 200, resp.text
    events = read_events(resp)
    assert events[-1]["kind"] == "done", events[-10:]
    return tag, events


@pytest.fixture
def docker_required() -> None:
    require_docker()
