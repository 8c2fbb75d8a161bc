"""POST /v1/deployments: validate a workbench.yaml, build per host, store, and follow the rollout.

`prepare` checks everything that can be checked up front (a bad file is a 400 before any
streaming); `stream` yields DeployEvents — builds, rollout progress — ending in one done or error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from workbench.controller.events import Events
from workbench.controller.fleet import Fleet, Host
from workbench.controller.reconciler import Reconciler
from workbench.controller.routes import RouteSync
from workbench.controller.state import ApiRecord, Store
from workbench.controller.tracker import RolloutTracker
from workbench.deploy import DeployError, choose_runtime, ensure_artifact, replica_request
from workbench.spec.loader import LoadedSpec, LoadedSplitter, SpecError, load_spec_file
from workbench.wire.agent import BuildEvent
from workbench.wire.control import DeployEvent, DeployRequest, DeployResultBody
from workbench.wire.errors import BadRequest
from workbench.wire.replica import RuntimeKind

log = logging.getLogger("workbench.controller.deployments")


class DeployInputError(BadRequest):
    """The request or the file it names is wrong (400); nothing changed."""


@dataclass(frozen=True)
class DeployPlan:
    file: Path
    apis: list[LoadedSpec]
    splitters: list[LoadedSplitter]
    runtime: RuntimeKind | None
    offline: bool | None


class Deployments:
    def __init__(self, store: Store, fleet: Fleet, events: Events, reconciler: Reconciler,
                 tracker: RolloutTracker, routes: RouteSync, base_url: str):
        self.store = store
        self.fleet = fleet
        self.events = events
        self.reconciler = reconciler
        self.tracker = tracker
        self.routes = routes
        self.base_url = base_url
        self._lock = asyncio.Lock()

    def endpoint(self, name: str) -> str:
        return f"{self.base_url}/{name}"

    # -- validation --------------------------------------------------------------------------
    async def prepare(self, request: DeployRequest) -> DeployPlan:
        if not request.path.strip():
            raise DeployInputError("path must name a project folder or a workbench.yaml")
        try:
            spec_file = await asyncio.to_thread(load_spec_file, request.path)
        except SpecError as error:
            raise DeployInputError(str(error)) from None
        except (OSError, ValueError) as error:
            raise DeployInputError(f"cannot read {request.path}: {error}") from None
        apis, splitters = spec_file.apis, spec_file.splitters
        if request.apis is not None:
            known = [a.spec.name for a in apis] + [s.spec.name for s in splitters]
            unknown = [name for name in request.apis if name not in known]
            if unknown:
                raise DeployInputError(f"{spec_file.file} has no API named {', '.join(unknown)}; "
                                       f"it describes: {', '.join(known)}")
            apis = [a for a in apis if a.spec.name in request.apis]
            splitters = [s for s in splitters if s.spec.name in request.apis]
        deploying = {a.spec.name for a in apis}
        for loaded in apis:
            existing = self.store.get_api(loaded.spec.name)
            if existing is not None and existing.kind != "api":
                raise DeployInputError(f"{loaded.spec.name} is deployed as a traffic splitter; "
                                       "delete it first (`workbench delete`)")
        for splitter in splitters:
            existing = self.store.get_api(splitter.spec.name)
            if existing is not None and existing.kind != "traffic_splitter":
                raise DeployInputError(f"{splitter.spec.name} is deployed as an API; delete it first")
            for target in splitter.spec.apis:
                record = self.store.get_api(target.name)
                if target.name not in deploying and (record is None or record.kind != "api"):
                    raise DeployInputError(
                        f"{spec_file.file}: traffic splitter {splitter.spec.name} routes to {target.name}, "
                        "which is neither deployed nor in this file")
        return DeployPlan(spec_file.file, apis, splitters, request.runtime, request.offline)

    # -- the stream --------------------------------------------------------------------------
    async def stream(self, plan: DeployPlan) -> AsyncIterator[DeployEvent]:
        results: list[DeployResultBody] = []
        async with self._lock:
            try:
                for loaded in plan.apis:
                    async for event in self._deploy_api(loaded, plan, results):
                        yield event
                for splitter in plan.splitters:
                    results.append(self._deploy_splitter(splitter))
                self.routes.sync()
            except DeployError as error:
                yield DeployEvent(kind="error", message=str(error), log_tail=error.log_tail)
                return
            except Exception as error:
                log.exception("deploy of %s failed", plan.file)
                yield DeployEvent(kind="error", message=f"deploy failed: {error}")
                return
        yield DeployEvent(kind="done", message=f"deployed {len(results)} API(s)", results=results)

    def _hosts(self) -> list[Host]:
        hosts = [h for h in self.fleet.hosts.values() if h.schedulable and h.info is not None]
        if not hosts:
            states = ", ".join(f"{h.name}: {h.state} ({h.message or 'no answer yet'})"
                               for h in self.fleet.hosts.values()) or "no hosts"
            raise DeployError(f"no host is reachable to build and run replicas ({states})")
        return sorted(hosts, key=lambda h: (h.name != "local", h.name))

    async def _deploy_api(self, loaded: LoadedSpec, plan: DeployPlan,
                          results: list[DeployResultBody]) -> AsyncIterator[DeployEvent]:
        spec = loaded.spec
        hosts = self._hosts()
        primary = hosts[0]
        assert primary.info is not None
        runtime = choose_runtime(loaded, primary.info, plan.runtime)
        if runtime == "process" and spec.runtime == "auto" and plan.runtime is None:
            yield DeployEvent(kind="log", api=spec.name, message=(
                f"{spec.name}: Docker is not available on {primary.name} "
                f"({primary.info.docker.error or 'no engine'}); using the process runtime"))
        targets = [h for h in hosts if h.info and runtime in h.info.runtimes
                   and (runtime != "docker" or h.info.docker.available)]
        built = False
        artifact = image_hash = ""
        for host in targets:
            outcome: list[tuple[str, str, bool]] = []
            async for event in self._build(host, loaded, runtime, plan.offline, outcome):
                yield event
            artifact, image_hash, was_built = outcome[0]
            built = built or was_built
        self.reconciler.catchup.built(artifact, [host.name for host in targets])
        request = replica_request(loaded, runtime, artifact, image_hash)
        spec_json = spec.model_dump(mode="json", by_alias=True)
        existing = self.store.get_api(spec.name)
        if (existing is not None and existing.spec_hash == request.spec_hash and existing.spec == spec_json
                and existing.project_dir == str(loaded.project_dir) and existing.rollout_from is None):
            yield DeployEvent(kind="log", api=spec.name, message=f"{spec.name}: unchanged")
            results.append(DeployResultBody(name=spec.name, runtime=runtime, artifact=artifact, built=built,
                                            unchanged=True, endpoint=self.endpoint(spec.name)))
            return
        desired = spec.desired_replicas
        if spec.autoscaling is not None and existing is not None and existing.kind == "api":
            bounds = spec.autoscaling
            desired = min(max(existing.desired_replicas, bounds.min_replicas), bounds.max_replicas)
        hash_changed = existing is None or existing.spec_hash != request.spec_hash
        rollout_from: int | None = None
        if hash_changed:
            rollout_from = 0 if existing is None else (
                existing.rollout_from if existing.rollout_from is not None else existing.version)
        outdated = [r for _, r in self.fleet.replicas(spec.name) if r.spec_hash != request.spec_hash]
        now = time.time()
        record = ApiRecord(name=spec.name, kind="api", spec=spec_json, project_dir=str(loaded.project_dir),
                           runtime=runtime, artifact=artifact, image_hash=image_hash,
                           spec_hash=request.spec_hash, desired_replicas=desired,
                           version=self.store.next_version(spec.name), rollout_from=rollout_from,
                           created_at=existing.created_at if existing else now, updated_at=now)
        status = (self.tracker.begin(spec.name, record.version, replaced=len(outdated))
                  if hash_changed else None)
        self.store.put_api(record)
        self.store.add_history(record)
        what = "new API" if existing is None else ("new replicas" if hash_changed else "settings only")
        self.events.record("deploy", f"version {record.version} ({what}, {desired} replica(s))",
                           api=spec.name, data={"version": record.version, "spec_hash": record.spec_hash,
                                                "artifact": artifact, "built": built, "runtime": runtime})
        self.routes.sync()
        self.reconciler.trigger()
        if status is not None:
            shown = ""
            while status.state == "running":
                await self.tracker.wait_change(status, 0.5)
                if status.progress and status.progress != shown:
                    shown = status.progress
                    yield DeployEvent(kind="rollout", api=spec.name, message=f"{spec.name}: {shown}")
                current = self.store.get_api(spec.name)
                if current is not None and (current.message or "").startswith("pending"):
                    yield DeployEvent(kind="log", api=spec.name, message=(
                        f"{spec.name}: {current.message}; it starts when a host has room"))
                    break
            if status.state == "failed":
                raise DeployError(status.message, status.log_tail)
        results.append(DeployResultBody(name=spec.name, runtime=runtime, artifact=artifact, built=built,
                                        replaced=len(outdated) if hash_changed else 0,
                                        endpoint=self.endpoint(spec.name)))

    async def _build(self, host: Host, loaded: LoadedSpec, runtime: RuntimeKind, offline: bool | None,
                     outcome: list[tuple[str, str, bool]]) -> AsyncIterator[DeployEvent]:
        """Build on `host`, forwarding its progress as DeployEvents as they happen."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[DeployEvent | None] = asyncio.Queue()
        name = loaded.spec.name

        def put(event: DeployEvent | None) -> None:  # also called from the context builder's thread
            loop.call_soon_threadsafe(queue.put_nowait, event)

        def say(message: str) -> None:
            put(DeployEvent(kind="log", api=name, message=message))

        def on_build(event: BuildEvent) -> None:
            put(DeployEvent(kind="build", api=name, message=event.message, build=event))
            if event.kind == "error":
                raise DeployError(f"{name}: the build on {host.name} failed: {event.message}")

        async def work() -> tuple[str, str, bool]:
            try:
                return await ensure_artifact(host.client, loaded, runtime, offline, say=say,
                                             on_build=on_build)
            finally:
                put(None)

        task = asyncio.ensure_future(work())
        while (event := await queue.get()) is not None:
            yield event
        outcome.append(await task)

    def _deploy_splitter(self, loaded: LoadedSplitter) -> DeployResultBody:
        spec = loaded.spec
        spec_json = spec.model_dump(mode="json", by_alias=True)
        existing = self.store.get_api(spec.name)
        endpoint = self.endpoint(spec.name)
        if existing is not None and existing.spec == spec_json:
            return DeployResultBody(name=spec.name, kind="traffic_splitter", unchanged=True,
                                    endpoint=endpoint)
        now = time.time()
        record = ApiRecord(name=spec.name, kind="traffic_splitter", spec=spec_json,
                           version=self.store.next_version(spec.name),
                           created_at=existing.created_at if existing else now, updated_at=now)
        self.store.put_api(record)
        self.store.add_history(record)
        targets = ", ".join(f"{t.name} {t.weight:g}%{' (shadow)' if t.shadow else ''}" for t in spec.apis)
        self.events.record("deploy", f"traffic splitter version {record.version}: {targets}", api=spec.name)
        return DeployResultBody(name=spec.name, kind="traffic_splitter", endpoint=endpoint)
