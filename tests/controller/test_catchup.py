"""CatchUpBuilds: what keeps a host out of an API's placements, and the builds that cannot run.
(The build that succeeds, on a box added after the deploy, is in tests/remote/test_fleet.py.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.controller.helpers import echo_project
from workbench.clients.agent import AsyncAgentClient
from workbench.controller.catchup import RETRY_AFTER, CatchUpBuilds, build_on
from workbench.controller.events import Events
from workbench.controller.fleet import Host
from workbench.controller.links.local import LocalLink
from workbench.controller.state import ApiRecord, Store
from workbench.deploy import DeployError
from workbench.images.plan import plan_build
from workbench.spec.loader import load_specs


def record_of(folder: Path) -> ApiRecord:
    loaded = load_specs(folder)[0]
    plan = plan_build(loaded, "process", None)
    spec = loaded.spec.model_dump(mode="json", by_alias=True)
    return ApiRecord(name=loaded.spec.name, kind="api", spec=spec, project_dir=str(folder), runtime="process",
                     artifact=plan.artifact(plan.image_hash()), version=3)


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
