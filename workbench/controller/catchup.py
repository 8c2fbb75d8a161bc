"""Builds an API's image/bundle on a host that joined after the API was deployed.

`workbench deploy` builds on every host reachable at that moment. A host added later has none of
the artifacts; when the scheduler picks it, its agent answers 404 ("artifact does not exist").
The reconciler then hands the host to this class and places the replica elsewhere meanwhile: the
build runs in the background from the API's project folder (the same content hash, so the same
artifact name), and the host is left out of that API's placements until it is done. A build that
fails keeps the host out for RETRY_AFTER seconds and says why in the API's events.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from pathlib import Path

from workbench.controller.events import Events
from workbench.controller.fleet import Host
from workbench.controller.state import ApiRecord
from workbench.deploy import DeployError, ensure_artifact
from workbench.images.plan import plan_build
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
            await build_on(record, host, runtime)
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


async def build_on(record: ApiRecord, host: Host, runtime: RuntimeKind) -> None:
    """Build `record`'s artifact on `host` from its project folder."""
    if not record.project_dir or not Path(record.project_dir).is_dir():
        raise DeployError(f"its project folder {record.project_dir or '(unknown)'} is gone from this "
                          "workstation")
    folder = Path(record.project_dir)
    loaded = LoadedSpec(spec=record.api_spec(), project_dir=folder, file=folder / "workbench.yaml")
    plan = await asyncio.to_thread(plan_build, loaded, runtime, None)
    if plan.artifact(plan.image_hash()) != record.artifact:
        raise DeployError(f"the files in {folder} changed since version {record.version} was deployed, "
                          f"so they would not make {record.artifact}")

    def on_build(event: BuildEvent) -> None:
        if event.kind == "error":
            raise DeployError(event.message)

    await ensure_artifact(host.client, loaded, runtime, None, say=lambda message: log.info("%s", message),
                          on_build=on_build)
