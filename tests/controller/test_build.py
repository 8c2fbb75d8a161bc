"""controller/build.py: the runtime an API gets on a host, and its artifact put on a real agent
(process runtime) — built once from the deploy's plan, found by content hash after that."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent.helpers import Agent
from tests.controller.helpers import echo_project
from workbench.clients.agent import AsyncAgentClient
from workbench.controller.build import DeployError, choose_runtime, ensure_artifact, plan_artifact
from workbench.images.errors import ContextChanged
from workbench.spec.loader import load_specs
from workbench.spec.models import ApiSpec
from workbench.wire.agent import BuildEvent, DockerStatus, HostInfo


def host_info(docker: bool, error: str | None = None) -> HostInfo:
    return HostInfo(hostname="gpu-box", os="Linux", arch="x86_64", python="3.11", agent_version="0",
                    cpu_count=4, mem_total_bytes=1 << 33, mem_available_bytes=1 << 32,
                    disk_free_bytes=1 << 35, docker=DockerStatus(available=docker, error=error),
                    runtimes=["docker", "process"] if docker else ["process"])


@pytest.mark.parametrize(("wanted", "override", "docker", "runtime"), [
    ("auto", None, True, "docker"),
    ("auto", None, False, "process"),
    ("process", None, True, "process"),
    ("docker", None, True, "docker"),
    ("docker", "process", False, "process"),  # --runtime process wins over the spec
    ("process", "docker", True, "docker"),
])
def test_runtime_choice(wanted: str, override: str | None, docker: bool, runtime: str) -> None:
    spec = ApiSpec(name="echo", runtime=wanted)  # type: ignore[arg-type]
    assert choose_runtime(spec, host_info(docker), override) == runtime  # type: ignore[arg-type]


def test_docker_asked_for_but_unavailable_names_the_host_the_reason_and_the_fixes() -> None:
    for spec, override in ((ApiSpec(name="echo", runtime="docker"), None), (ApiSpec(name="echo"), "docker")):
        with pytest.raises(DeployError) as caught:
            choose_runtime(spec, host_info(False, "permission denied on /var/run/docker.sock"), override)  # type: ignore[arg-type]
        assert str(caught.value) == (
            "API echo asks for the docker runtime, but Docker is not available on gpu-box: permission "
            "denied on /var/run/docker.sock. Start the Docker engine (e.g. `sudo systemctl start docker`), "
            "or use the process runtime: `runtime: process` in workbench.yaml or `--runtime process`.")
    with pytest.raises(DeployError, match="gpu-box: no Docker engine answers"):
        choose_runtime(ApiSpec(name="echo", runtime="docker"), host_info(False))


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    running = Agent(tmp_path_factory.mktemp("build-agent") / "home")
    try:
        yield running.start()
    finally:
        running.cleanup()


def client_of(agent: Agent) -> AsyncAgentClient:
    return AsyncAgentClient(agent.url, agent.config["token"], timeout=300)


async def test_builds_once_from_the_plan_then_finds_the_artifact(agent: Agent, tmp_path: Path) -> None:
    [loaded] = load_specs(echo_project(tmp_path, yaml="name: echo\nruntime: process\n"))
    plan = plan_artifact(loaded, "process", None)
    said: list[str] = []
    events: list[BuildEvent] = []
    async with client_of(agent) as client:
        assert not await client.artifact_exists("process", plan.artifact)
        assert await ensure_artifact(client, plan, say=said.append, on_build=events.append) is True
        assert await client.artifact_exists("process", plan.artifact)
        assert said[0] == f"echo: building {plan.artifact} (process runtime)"
        assert any(line.startswith("context for echo:") and plan.image_hash[:16] in line for line in said)
        assert events[-1].kind == "done" and events[-1].artifact == plan.artifact
        assert not events[-1].cached  # a real build, not the agent's own cache

        again: list[str] = []
        seen: list[BuildEvent] = []
        assert await ensure_artifact(client, plan, say=again.append, on_build=seen.append) is False
        assert again == [f"echo: {plan.artifact} is up to date (no rebuild)"] and seen == []
        # the same files planned again name the same artifact: found, not rebuilt
        replanned = plan_artifact(load_specs(loaded.file)[0], "process", None)
        assert replanned.artifact == plan.artifact
        assert await ensure_artifact(client, replanned, say=again.append, on_build=seen.append) is False
    assert [p.name for p in (agent.home / "bundles").iterdir()] == [plan.artifact]


async def test_a_failed_build_stops_where_on_build_raises(agent: Agent, tmp_path: Path) -> None:
    folder = echo_project(tmp_path, yaml="name: broken\nruntime: process\n"
                          "image: {build_commands: [[python, -c, 'raise SystemExit(3)']]}\n")
    plan = plan_artifact(load_specs(folder)[0], "process", None)

    def on_build(event: BuildEvent) -> None:
        if event.kind == "error":
            raise DeployError(f"the build failed: {event.message}")

    async with client_of(agent) as client:
        with pytest.raises(DeployError, match="exited with code 3"):
            await ensure_artifact(client, plan, say=lambda _: None, on_build=on_build)
        assert not await client.artifact_exists("process", plan.artifact)


async def test_a_file_changed_since_the_plan_is_refused_before_anything_is_sent(agent: Agent,
                                                                                tmp_path: Path) -> None:
    folder = echo_project(tmp_path, yaml="name: edited\nruntime: process\n")
    plan = plan_artifact(load_specs(folder)[0], "process", None)
    (folder / "predictor.py").write_text((folder / "predictor.py").read_text() + "\n# edited\n")
    events: list[BuildEvent] = []
    async with client_of(agent) as client:
        with pytest.raises(ContextChanged, match=r"predictor\.py changed since the build was planned"):
            await ensure_artifact(client, plan, say=lambda _: None, on_build=events.append)
        assert events == [] and not await client.artifact_exists("process", plan.artifact)
