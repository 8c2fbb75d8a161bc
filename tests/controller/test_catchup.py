"""CatchUpBuilds: what keeps a host out of an API's placements, the builds that cannot run, and
the deploy's build plan reused for a host that joins later (against a real agent, process runtime).
(The whole flow, on a box added after the deploy, is in tests/remote/test_fleet.py.)"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent.helpers import Agent
from tests.controller.helpers import echo_project
from workbench.clients.agent import AsyncAgentClient
from workbench.controller.build import DeployError
from workbench.controller.catchup import RETRY_AFTER, CatchUpBuilds, build_on
from workbench.controller.events import Events
from workbench.controller.fleet import Host
from workbench.controller.links.local import LocalLink
from workbench.controller.state import ApiRecord, Store
from workbench.images.plan import BuildPlan, plan_build
from workbench.spec.loader import load_specs


def record_of(folder: Path) -> ApiRecord:
    return record_and_plan(folder)[0]


def record_and_plan(folder: Path) -> tuple[ApiRecord, BuildPlan]:
    """The state a deploy of `folder` leaves (version 3), and the plan it made."""
    loaded = load_specs(folder)[0]
    plan = plan_build(loaded, "process", None)
    spec = loaded.spec.model_dump(mode="json", by_alias=True)
    return ApiRecord(name=loaded.spec.name, kind="api", spec=spec, project_dir=str(folder), runtime="process",
                     artifact=plan.artifact, version=3), plan


def box() -> Host:
    host = Host(name="box9", link=LocalLink("http://127.0.0.1:9", "t", name="box9"))
    host.client = AsyncAgentClient(host.url, host.token, timeout=1)  # nothing answers there
    return host


def test_changed_or_missing_project_is_refused_before_the_agent_is_asked(tmp_path: Path) -> None:
    folder = echo_project(tmp_path, yaml="name: echo\nruntime: process\n")
    record = record_of(folder)
    (folder / "predictor.py").write_text((folder / "predictor.py").read_text() + "\n# edited\n")
    with pytest.raises(DeployError, match=r"changed since version 3 was deployed"):
        asyncio.run(build_on(record, box(), "process"))
    gone = ApiRecord(name="echo", kind="api", spec=record.spec, project_dir=str(tmp_path / "nope"),
                     artifact=record.artifact)
    with pytest.raises(DeployError, match="is gone from this workstation"):
        asyncio.run(build_on(gone, box(), "process"))


async def test_a_failed_build_keeps_the_host_out_until_a_deploy_builds_there(tmp_path: Path) -> None:
    events = Events(Store(tmp_path / "state.db"))
    catchup = CatchUpBuilds(events)
    folder = echo_project(tmp_path, yaml="name: echo\nruntime: process\n")
    record = record_of(folder)
    assert record.artifact
    catchup.start(record, box(), "process")  # the agent does not answer: the build fails
    assert catchup.excluded(record.artifact) == {"box9"}  # while it runs
    catchup.start(record, box(), "process")  # one build per host and artifact
    for _ in range(200):
        if not catchup._building:
            break
        await asyncio.sleep(0.05)
    assert catchup.excluded(record.artifact) == {"box9"}  # failed: out for RETRY_AFTER
    assert catchup.excluded("another-artifact") == set()
    said = [e.message for e in events.store.events("echo", 10)]
    assert any("the build on box9 failed" in m and f"{RETRY_AFTER / 60:.0f} min" in m for m in said), said
    assert sum("joined after the deploy" in m for m in said) == 1
    catchup.built(record.artifact, ["box9"])
    assert catchup.excluded(record.artifact) == set()
    await catchup.close()


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    running = Agent(tmp_path_factory.mktemp("catchup-agent") / "home")
    try:
        yield running.start()
    finally:
        running.cleanup()


def joined(agent: Agent, name: str) -> Host:
    """A host that joined after the deploy, served by the real agent."""
    host = Host(name=name, link=LocalLink(agent.url, agent.config["token"], name=name))
    host.client = host.link.agent_client(timeout=300)
    return host


async def settle(catchup: CatchUpBuilds) -> None:
    for _ in range(1200):
        if not catchup._building:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the catch-up build did not finish")


def said(events: Events, api: str) -> list[str]:
    return [e.message for e in events.store.events(api, 50)]


async def test_a_late_host_gets_the_artifact_from_the_deploys_plan(agent: Agent, tmp_path: Path) -> None:
    events = Events(Store(tmp_path / "state.db"))
    catchup = CatchUpBuilds(events)
    record, plan = record_and_plan(echo_project(tmp_path, yaml="name: late\nruntime: process\n"))
    catchup.keep(plan)  # what the deploy does once it has made the plan
    # a file added since: a plan made now would name another artifact, the kept one still makes this one
    (Path(str(record.project_dir)) / "notes.txt").write_text("written after the deploy\n")
    host = joined(agent, "box-late")
    catchup.start(record, host, "process")
    await settle(catchup)
    messages = said(events, "late")
    assert any(f"built {record.artifact} on box-late" in m for m in messages), messages
    assert catchup.excluded(record.artifact) == set()
    assert await host.client.artifact_exists("process", str(record.artifact))
    await catchup.close()


async def test_after_a_restart_the_plan_is_made_once_and_must_match(agent: Agent, tmp_path: Path) -> None:
    events = Events(Store(tmp_path / "state.db"))
    catchup = CatchUpBuilds(events)  # a restarted controller: no plan kept
    record = record_of(echo_project(tmp_path, yaml="name: restarted\nruntime: process\n"))
    catchup.start(record, joined(agent, "box-a"), "process")
    await settle(catchup)
    assert any(f"built {record.artifact} on box-a" in m for m in said(events, "restarted"))
    (Path(str(record.project_dir)) / "notes.txt").write_text("written after the first catch-up\n")
    catchup.start(record, joined(agent, "box-b"), "process")  # the plan made for box-a is kept
    await settle(catchup)
    assert any(f"built {record.artifact} on box-b" in m for m in said(events, "restarted"))
    fresh = CatchUpBuilds(events)  # and a plan made now, from the changed folder, is refused
    fresh.start(record, joined(agent, "box-c"), "process")
    await settle(fresh)
    assert any("box-c failed: the files in" in m and "changed since version 3 was deployed" in m
               for m in said(events, "restarted")), said(events, "restarted")
    assert fresh.excluded(record.artifact) == {"box-c"}
    await catchup.close()
    await fresh.close()


async def test_a_planned_file_changed_since_the_deploy_is_refused(agent: Agent, tmp_path: Path) -> None:
    record, plan = record_and_plan(echo_project(tmp_path, yaml="name: edited\nruntime: process\n"))
    folder = Path(str(record.project_dir))
    (folder / "predictor.py").write_text((folder / "predictor.py").read_text() + "\n# edited\n")
    host = joined(agent, "box-edit")
    with pytest.raises(DeployError, match=re.escape(f"the files in {folder} changed since version 3 was "
                                                    f"deployed, so they would not make {record.artifact}")):
        await build_on(record, host, "process", plan)
    assert not await host.client.artifact_exists("process", str(record.artifact))
