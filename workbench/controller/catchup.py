"""Builds an API's image/bundle on a host that joined after the API was deployed.

`workbench deploy` builds on every host reachable at that moment. A host added later has none of
the artifacts; when the scheduler picks it, its agent answers 404 ("artifact does not exist").
The reconciler then hands the host to this class and places the replica elsewhere meanwhile: the
build runs in the background from the build plan the deploy made (kept here for the API's current
version), and the host is left out of that API's placements until it is done. After a controller
restart there is no kept plan: it is made again once from the project folder and must give the
recorded artifact. A build that fails keeps the host out for RETRY_AFTER seconds and says why in
the API's events.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from pathlib import Path

from workbench.controller.build import ArtifactPlan, DeployError, ensure_artifact, plan_artifact
from workbench.controller.events import Events
from workbench.controller.fleet import Host
from workbench.controller.state import ApiRecord
from workbench.images.container import ImagePlan
from workbench.images.errors import ContextChanged
from workbench.spec.loader import LoadedSpec
from workbench.wire.agent import BuildEvent
from workbench.wire.replica import RuntimeKind

log = logging.getLogger(__name__)

RETRY_AFTER = 300.0  # seconds a host whose build failed stays out of the API's placements


class CatchUpBuilds:
    def __init__(self, events: Events):
        self.events = events
        self._building: dict[tuple[str, str], asyncio.Task[None]] = {}  # (host, artifact)
        self._failed: dict[tuple[str, str], float] = {}  # (host, artifact) -> when
        self._plans: dict[str, ArtifactPlan] = {}  # API -> the plan of its current artifact
        self._planning: dict[str, asyncio.Lock] = {}  # API -> held while its plan is made again

    def excluded(self, artifact: str | None) -> set[str]:
        """Hosts that must not get a replica of `artifact` now: building it, or failed recently."""
        now = time.time()
        out = {host for host, name in self._building if name == artifact}
        out |= {host for (host, name), at in self._failed.items()
                if name == artifact and now - at < RETRY_AFTER}
        return out

    def start(self, record: ApiRecord, host: Host, runtime: RuntimeKind) -> None:
        key = (host.name, record.artifact or "")
        if key in self._building:
            return
        self.events.record("build", f"{record.name}: {host.name} joined after the deploy and lacks "
                           f"{record.artifact}: building it there", api=record.name,
                           data={"host": host.name, "artifact": record.artifact})
        self._building[key] = asyncio.create_task(self._build(record, host, runtime, key),
                                                  name=f"catch-up-{host.name}-{record.name}")

    async def close(self) -> None:
        for task in self._building.values():
            task.cancel()

    async def _build(self, record: ApiRecord, host: Host, runtime: RuntimeKind, key: tuple[str, str]) -> None:
        started = time.monotonic()
        try:
            await build_on(record, host, runtime, await self._plan_for(record, runtime))
        except Exception as error:  # a failed build must not take the reconciler down
            self._failed[key] = time.time()
            self.events.record("build", f"{record.name}: the build on {host.name} failed: {error}; "
                               f"{host.name} gets no replica of it for {RETRY_AFTER / 60:.0f} min "
                               "(deploy again to retry now)", api=record.name, level=logging.WARNING,
                               data={"host": host.name, "artifact": record.artifact})
        else:
            self._failed.pop(key, None)
            self.events.record("build", f"{record.name}: built {record.artifact} on {host.name} in "
                               f"{time.monotonic() - started:.1f} s", api=record.name,
                               data={"host": host.name, "artifact": record.artifact})
        finally:
            self._building.pop(key, None)

    def built(self, artifact: str, hosts: Iterable[str]) -> None:
        """A deploy built `artifact` on `hosts`: earlier failures there no longer count."""
        for host in hosts:
            self._failed.pop((host, artifact), None)

    def keep(self, plan: ArtifactPlan) -> None:
        """The plan a deploy made for its API: hosts that join later are built from it."""
        self._plans[plan.api] = plan

    async def _plan_for(self, record: ApiRecord, runtime: RuntimeKind) -> ArtifactPlan:
        """The kept plan of `record`'s artifact; without one (a restart), made again once."""
        async with self._planning.setdefault(record.name, asyncio.Lock()):
            plan = self._plans.get(record.name)
            if plan is None or not _makes(plan, record, runtime):
                plan = self._plans[record.name] = await replan(record, runtime)
            return plan


def _makes(plan: ArtifactPlan, record: ApiRecord, runtime: RuntimeKind) -> bool:
    return plan.artifact == record.artifact and plan.runtime == runtime


def _changed(record: ApiRecord) -> DeployError:
    return DeployError(f"the files in {record.project_dir} changed since version {record.version} was "
                       f"deployed, so they would not make {record.artifact}")


def _check_folder(record: ApiRecord) -> Path:
    container = record.api_spec().container
    if container is not None and container.image is not None and record.runtime == "docker":
        return Path(record.project_dir or ".")  # an image to pull: the folder is not needed
    if not record.project_dir or not Path(record.project_dir).is_dir():
        raise DeployError(f"its project folder {record.project_dir or '(unknown)'} is gone from this "
                          "workstation")
    return Path(record.project_dir)


async def replan(record: ApiRecord, runtime: RuntimeKind) -> ArtifactPlan:
    """`record`'s build plan made again from its project folder; it must give the recorded
    artifact (else the project changed since that version was deployed)."""
    folder = _check_folder(record)
    loaded = LoadedSpec(spec=record.api_spec(), project_dir=folder, file=folder / "workbench.yaml")
    plan = await asyncio.to_thread(plan_artifact, loaded, runtime, None)
    if not _makes(plan, record, runtime):
        raise _changed(record)
    if isinstance(plan, ImagePlan):
        plan.image_id = record.image_hash  # the id the deploy found, for the comparison on a new host
    return plan


async def build_on(record: ApiRecord, host: Host, runtime: RuntimeKind,
                   plan: ArtifactPlan | None = None) -> None:
    """Build `record`'s artifact on `host` from `plan` (the deploy's), or from a plan made again
    from the project folder when none is given or it is another artifact's."""
    _check_folder(record)
    if plan is None or not _makes(plan, record, runtime):
        plan = await replan(record, runtime)

    def on_build(event: BuildEvent) -> None:
        if event.kind == "error":
            raise DeployError(event.message)

    try:
        await ensure_artifact(host.client, plan, say=lambda message: log.info("%s", message),
                              on_build=on_build)
    except ContextChanged:
        raise _changed(record) from None
