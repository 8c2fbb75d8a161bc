"""POST /v1/deployments: check the request once, build per host, store, and follow the rollout.

`prepare` checks everything that can be checked up front (intake.py: a bad file is a 400 before
any streaming); `stream` yields DeployEvents — builds, rollout progress — ending in one done or
error. Each API's build plan is made once (build.py) and handed to every host's build, then kept
by the catch-up builder for hosts that join later.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

from workbench.controller.build import (
    ArtifactPlan,
    DeployError,
    choose_runtime,
    ensure_artifact,
    plan_artifact,
)
from workbench.controller.events import Events
from workbench.controller.fleet import Fleet, Host
from workbench.controller.intake import DeployInputError, DeployOrder, check_against, read_order
from workbench.controller.reconciler import Reconciler
from workbench.controller.replica_request import replica_request
from workbench.controller.routes import RouteSync
from workbench.controller.scheduler import HostView, capacity_text, demand_for, demand_text, fits_ever
from workbench.controller.state import ApiRecord, Store
from workbench.controller.tracker import RolloutTracker
from workbench.spec.loader import LoadedSpec, LoadedSplitter
from workbench.weights.resolve import PlannedModel, resolve
from workbench.wire.agent import BuildEvent
from workbench.wire.control import DeployEvent, DeployRequest, DeployResultBody
from workbench.wire.errors import WorkbenchError

log = logging.getLogger("workbench.controller.deployments")


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
    async def prepare(self, request: DeployRequest) -> DeployOrder:
        """The request checked once (DeployInputError, a 400, when it is wrong)."""
        order = await asyncio.to_thread(read_order, request)
        check_against(order, self.store)
        self._check_capacity(order)
        return order

    def _check_capacity(self, order: DeployOrder) -> None:
        """A replica no host could ever hold (its totals, whatever runs there now) fails the deploy
        here, naming the largest host, instead of waiting as pending forever."""
        hosts = [h for h in self.fleet.hosts.values() if h.schedulable and h.info is not None]
        if not hosts:
            return  # the stream says no host is reachable
        for loaded in order.apis:
            demand = demand_for(loaded.spec.compute)
            views = [HostView(name=h.name, reachable=True, info=h.info) for h in hosts]
            if any(fits_ever(view, demand) for view in views):
                continue
            largest = max(hosts, key=lambda h: (h.info.cpu_count, h.info.mem_total_bytes,  # type: ignore[union-attr]
                                                len(h.info.gpus)))  # type: ignore[union-attr]
            assert largest.info is not None
            raise DeployInputError(
                f"{loaded.spec.name}: no host could ever run a replica: it asks for {demand_text(demand)} "
                f"and the largest host, {largest.name}, has {capacity_text(largest.info)}; lower `compute` "
                f"in {order.file.name} or add a larger host (`workbench host add`). Nothing was deployed")

    # -- the stream --------------------------------------------------------------------------
    async def stream(self, order: DeployOrder) -> AsyncIterator[DeployEvent]:
        results: list[DeployResultBody] = []
        async with self._lock:
            try:
                planned: dict[str, list[PlannedModel]] = {}
                for loaded in order.apis:  # every model first: a bad source deploys nothing
                    planned[loaded.spec.name] = []
                    for model in loaded.spec.model_specs:
                        yield DeployEvent(kind="log", api=loaded.spec.name,
                                          message=f"{loaded.spec.name}: model {model.model_name} "
                                                  f"from {model.source}")
                        found = await asyncio.to_thread(resolve, model, Path(loaded.project_dir))
                        planned[loaded.spec.name].append(found)
                        yield DeployEvent(kind="log", api=loaded.spec.name, message=(
                            f"{loaded.spec.name}: model {found.manifest.label}: {len(found.manifest.files)} "
                            f"file(s), {found.manifest.size / 1e6:.1f} MB"))
                for loaded in order.apis:
                    async for event in self._deploy_api(loaded, order, results, planned[loaded.spec.name]):
                        yield event
                for splitter in order.splitters:
                    results.append(self._deploy_splitter(splitter))
                self.routes.sync()
            except DeployError as error:
                yield DeployEvent(kind="error", message=str(error), log_tail=error.log_tail)
                return
            except WorkbenchError as error:  # a model source that cannot be used, a refused build …
                yield DeployEvent(kind="error", message=str(error))
                return
            except Exception as error:
                log.exception("deploy of %s failed", order.file)
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

    async def _deploy_api(self, loaded: LoadedSpec, order: DeployOrder, results: list[DeployResultBody],
                          models: list[PlannedModel]) -> AsyncIterator[DeployEvent]:
        spec = loaded.spec
        hosts = self._hosts()
        primary = hosts[0]
        assert primary.info is not None
        runtime = choose_runtime(spec, primary.info, order.runtime)
        if runtime == "process" and spec.runtime == "auto" and order.runtime is None:
            yield DeployEvent(kind="log", api=spec.name, message=(
                f"{spec.name}: Docker is not available on {primary.name} "
                f"({primary.info.docker.error or 'no engine'}); using the process runtime"))
        targets = [h for h in hosts if h.info and runtime in h.info.runtimes
                   and (runtime != "docker" or h.info.docker.available)]
        plan = await asyncio.to_thread(plan_artifact, loaded, runtime, order.offline, models)
        built = False
        for host in targets:
            outcome: list[bool] = []
            async for event in self._build(host, plan, outcome):
                yield event
            built = built or outcome[0]
        artifact, image_hash = plan.artifact, plan.image_hash  # an image's id is known once found
        self.reconciler.catchup.keep(plan)
        self.reconciler.catchup.built(artifact, [host.name for host in targets])
        mounts = [m.mount_spec() for m in models] or None
        request = replica_request(spec, runtime, artifact, image_hash, mounts)
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
        notes: list[str] = []
        if existing is not None and existing.kind == "api" and existing.desired_replicas != desired:
            # a `workbench scale` since the last deploy: the file wins, and the user hears it
            notes.append(f"replicas {existing.desired_replicas} → {desired}, as {order.file.name} says")
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
                           created_at=existing.created_at if existing else now, updated_at=now,
                           models=[m.to_json() for m in models] or None)
        status = (self.tracker.begin(spec.name, record.version, replaced=len(outdated))
                  if hash_changed else None)
        self.store.put_api(record)
        self.store.add_history(record)
        what = "new API" if existing is None else ("new replicas" if hash_changed else "settings only")
        self.events.record("deploy", f"version {record.version} ({what}, {desired} replica(s))"
                           + "".join(f"; {note}" for note in notes),
                           api=spec.name, data={"version": record.version, "spec_hash": record.spec_hash,
                                                "artifact": artifact, "built": built, "runtime": runtime,
                                                "models": {m.manifest.name: m.id for m in models}})
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
                                        endpoint=self.endpoint(spec.name), notes=notes))

    async def _build(self, host: Host, plan: ArtifactPlan, outcome: list[bool]) -> AsyncIterator[DeployEvent]:
        """Put the plan's artifact on `host`, forwarding its progress as DeployEvents as they happen."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[DeployEvent | None] = asyncio.Queue()
        name = plan.api

        def put(event: DeployEvent | None) -> None:  # also called from the context builder's thread
            loop.call_soon_threadsafe(queue.put_nowait, event)

        def say(message: str) -> None:
            put(DeployEvent(kind="log", api=name, message=message))

        def on_build(event: BuildEvent) -> None:
            put(DeployEvent(kind="build", api=name, message=event.message, build=event))
            if event.kind == "error":
                raise DeployError(f"{name}: {plan.action} on {host.name} failed: {event.message}")

        async def work() -> bool:
            try:
                return await ensure_artifact(host.client, plan, say=say, on_build=on_build)
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
