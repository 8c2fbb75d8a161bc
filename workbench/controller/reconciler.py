"""The reconciler: makes every host run what the desired state says, one API at a time.

Runs on a trigger (a deploy, a scale, a fleet change, a wake) or every second. Each pass, per API:
self-healing (replace replicas that stay failed or keep restarting), one rollout step (create /
retire, see rollout.py), rollout completion or failure (revert to the previous version), and
orphan removal (replicas of APIs the state does not know). A retired replica leaves the router's
pool before the agent stops it gracefully.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter

from workbench.controller.catchup import CatchUpBuilds
from workbench.controller.events import Events
from workbench.controller.fleet import Fleet, Host
from workbench.controller.model_sync import ModelSync
from workbench.controller.replica_request import replica_request
from workbench.controller.rollout import ReplicaView, plan
from workbench.controller.routes import RouteSync
from workbench.controller.scheduler import (
    Demand,
    HostView,
    Placement,
    demand_for,
    gpu_usage,
    note_placed,
    place,
)
from workbench.controller.state import ApiRecord, Store
from workbench.controller.tracker import RolloutTracker
from workbench.weights.resolve import PlannedModel
from workbench.wire.agent import ReplicaInfo, ReplicaState
from workbench.wire.errors import WorkbenchError
from workbench.wire.replica import RuntimeKind

log = logging.getLogger("workbench.controller.reconciler")

PASS_SECONDS = 1.0
LOST_AFTER = 30.0  # a host unreachable this long: its replicas are rescheduled elsewhere
FAILED_REPLACE_AFTER = 30.0  # a replica failed this long is replaced
MAX_RESTARTS = 5  # restarts outside a rollout before a replica is replaced
DRAIN_WAIT = 5.0  # seconds to wait for the router's in-flight requests to a leaving replica
GONE_STATES = (ReplicaState.STOPPING, ReplicaState.STOPPED)


def _with_starting(progress: str, entries: list[tuple[Host, ReplicaInfo, ReplicaView]],
                   spec_hash: str) -> str:
    """The rollout's progress, with what a new replica that is still starting says (a container
    API's server: its last log line; model servers load for minutes)."""
    said = next((info.message for _, info, view in entries if view.spec_hash == spec_hash
                 and info.state == ReplicaState.STARTING and info.message), None)
    return f"{progress} ({said})" if said else progress


def demand_of(record: ApiRecord | None) -> Demand:
    if record is None or record.kind != "api":
        return Demand()
    return demand_for(record.api_spec().compute)


class _Room:
    """Per host, what replicas reserve (CPU, memory, GPUs) and how many are the placed API's,
    updated as a pass places more."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.used: dict[str, Demand] = {}
        self.mine: Counter[str] = Counter()
        self.gpus: dict[str, dict[str, float]] = {}
        self.whole: dict[str, set[str]] = {}

    def reserve(self, host: str, demand: Demand, *, mine: bool) -> None:
        u = self.used.get(host, Demand())
        self.used[host] = Demand(u.cpu + demand.cpu, u.mem + demand.mem)
        if mine:
            self.mine[host] += 1

    def take(self, host: str, demand: Demand, gpu_ids: list[str]) -> None:
        self.reserve(host, demand, mine=True)
        note_placed(self.gpus, self.whole, host, gpu_ids, demand)

    def views(self, lacking: set[str]) -> list[HostView]:
        return [HostView(name=h.name, reachable=h.schedulable and h.name not in lacking, info=h.info,
                         used=self.used.get(h.name, Demand()), api_replicas=self.mine[h.name],
                         gpu_alloc=self.gpus.get(h.name, {}),
                         gpu_exclusive=frozenset(self.whole.get(h.name, ())))
                for h in self.fleet.hosts.values()]


class Reconciler:
    def __init__(self, store: Store, fleet: Fleet, events: Events, routes: RouteSync,
                 tracker: RolloutTracker):
        self.store = store
        self.fleet = fleet
        self.events = events
        self.routes = routes
        self.tracker = tracker
        self.retiring: dict[str, asyncio.Task[None]] = {}
        self.replacing: set[str] = set()  # replica ids to replace (restart / self-healing)
        self.restarting: dict[str, str] = {}  # replica id -> API: restarts asked for, until back
        self._wake = asyncio.Event()
        self._pass_lock = asyncio.Lock()
        self._failed_since: dict[str, float] = {}
        self._restart_base: dict[str, int] = {}
        self.catchup = CatchUpBuilds(events)  # builds for hosts that joined after a deploy
        self.models = ModelSync(fleet, events, on_done=self.trigger)  # weights into hosts' caches

    # -- driving -----------------------------------------------------------------------------
    def trigger(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), PASS_SECONDS)
            self._wake.clear()
            try:
                await self.reconcile_once()
            except Exception:
                log.exception("reconcile pass failed")

    async def close(self) -> None:
        """Let graceful stops already under way finish (bounded)."""
        await self.catchup.close()
        tasks = list(self.retiring.values())
        if tasks:
            await asyncio.wait(tasks, timeout=10)

    async def reconcile_once(self) -> None:
        async with self._pass_lock:
            records = {record.name: record for record in self.store.apis()}
            for record in records.values():
                if record.kind == "api":
                    try:
                        await self._reconcile_api(record, records)
                    except Exception:
                        log.exception("reconciling %s failed", record.name)
            self._remove_orphans(records)
            self.routes.sync()

    # -- one API -----------------------------------------------------------------------------
    def _views(self, api: str) -> list[tuple[Host, ReplicaInfo, ReplicaView]]:
        now = time.time()
        views = []
        for host, replica in self.fleet.replicas(api):
            if replica.id in self.retiring or replica.state in GONE_STATES:
                continue
            if not host.reachable and host.unreachable_since and now - host.unreachable_since > LOST_AFTER:
                continue
            spec_hash = f"replace:{replica.spec_hash}" if replica.id in self.replacing else replica.spec_hash
            views.append((host, replica, ReplicaView(id=replica.id, host=host.name, spec_hash=spec_hash,
                                                     state=replica.state, created_at=replica.created_at,
                                                     reachable=host.reachable)))
        return views

    async def _reconcile_api(self, record: ApiRecord, records: dict[str, ApiRecord]) -> None:
        spec = record.api_spec()
        assert record.spec_hash is not None
        rolling = record.rollout_from is not None
        entries = self._views(record.name)
        if not rolling:
            self._heal(record, entries)
            entries = self._views(record.name)
        views = [view for _, _, view in entries]
        step = plan(views, record.spec_hash, record.desired_replicas, spec.update, rolling_out=rolling)
        if rolling:
            late = next((v for _, info, v in entries if v.spec_hash == record.spec_hash and not v.ready
                         and time.time() - info.created_at > spec.startup_timeout + 15), None)
            failed = step.failed or late
            if failed is not None:
                await self._fail_rollout(record, failed, entries)
                return
            progress = _with_starting(step.progress(record.desired_replicas), entries, record.spec_hash)
            waiting = self.models.describe(record.name, record.spec_hash)
            self.tracker.progress(record.name, f"{progress} (waiting for weights: {waiting})" if waiting
                                  else progress)
        by_id = {view.id: (host, info) for host, info, view in entries}
        for view in step.delete:
            host, info = by_id[view.id]
            if host.reachable:
                self.retire(host, info)
        if step.create:
            await self._create(record, step.create, records)
        if self.restarting and not rolling:
            self._note_restarted(record, step.new_ready)
        if rolling and step.settled:
            self.store.put_api(record.evolve(rollout_from=None, message=None, updated_at=time.time()))
            for _, info, _ in entries:
                self._restart_base[info.id] = info.restarts
            progress = step.progress(record.desired_replicas)
            self.events.record("rollout", f"version {record.version} is live: {progress}", api=record.name,
                               data={"version": record.version, "spec_hash": record.spec_hash})
            self.tracker.finish(record.name, record.version)

    def _heal(self, record: ApiRecord, entries: list[tuple[Host, ReplicaInfo, ReplicaView]]) -> None:
        now = time.time()
        for host, info, _ in entries:
            if not host.reachable or info.id in self.replacing:
                continue
            if info.state == ReplicaState.FAILED:
                since = self._failed_since.setdefault(info.id, now)
            else:
                self._failed_since.pop(info.id, None)
                since = now
            base = self._restart_base.setdefault(info.id, info.restarts)
            why = None
            if now - since > FAILED_REPLACE_AFTER:
                why = f"failed for {now - since:.0f} s ({info.message or 'exited'})"
            elif info.restarts - base > MAX_RESTARTS:
                why = f"restarted {info.restarts - base} times"
            if why:
                self.replacing.add(info.id)
                self.events.record("replica", f"replacing replica {info.id} on {host.name}: {why}",
                                   api=record.name,
                                   data={"replica": info.id, "log_tail": info.log_tail[-10:]})

    def _room(self, record: ApiRecord, records: dict[str, ApiRecord]) -> _Room:
        """What every host has reserved now (replicas of every API, leaving ones included)."""
        room = _Room(self.fleet)
        for host, replica in self.fleet.replicas():
            if replica.state in GONE_STATES:
                continue
            room.reserve(host.name, demand_of(records.get(replica.api)), mine=replica.api == record.name
                         and replica.id not in self.retiring)
        room.gpus, room.whole = gpu_usage((h.name, r) for h, r in self.fleet.replicas()
                                          if r.state not in GONE_STATES)
        return room

    def room_for(self, record: ApiRecord, count: int) -> tuple[int, Placement | None]:
        """How many of `count` more replicas of `record` fit now, and (when not all) the placement
        that failed, with its reason: what `scale` warns about before the reconciler tries."""
        records = {r.name: r for r in self.store.apis()}
        room = self._room(record, records)
        runtime = "docker" if record.runtime == "docker" else "process"
        lacking = self.catchup.excluded(record.artifact) if record.artifact else set()
        demand = demand_of(record)
        for placed in range(count):
            placement = place(demand, runtime, room.views(lacking))
            if placement.host is None:
                return placed, placement
            room.take(placement.host, demand, placement.gpu_ids)
        return count, None

    async def _create(self, record: ApiRecord, count: int, records: dict[str, ApiRecord]) -> None:
        spec = record.api_spec()
        assert record.runtime and record.artifact and record.image_hash and record.spec_hash
        runtime: RuntimeKind = "docker" if record.runtime == "docker" else "process"
        models = [PlannedModel.from_json(m) for m in record.models or []]
        request = replica_request(spec, runtime, record.artifact, record.image_hash,
                                  [m.mount_spec() for m in models] or None)
        demand = demand_of(record)
        room = self._room(record, records)
        lacking = self.catchup.excluded(record.artifact)  # building it there, or that build failed
        # replicas placed on hosts that wait for their models: those whose models are there now
        # start first (on that host), the others keep waiting; a host whose transfer failed is
        # left out for a while
        reserved = self.models.reserved(record.name, record.spec_hash) if models else Counter()
        due: list[str] = []
        for name, waiting in list(reserved.items()):
            failed = self.models.failure(name, models)
            if failed is not None or name not in self.fleet.hosts:
                self.models.release(record.name, record.spec_hash, name, waiting)
            elif self.models.ready(name, models):
                due += [name] * waiting
            else:
                count -= waiting
                room.mine[name] += waiting
        if models:
            lacking = lacking | {h for h in self.fleet.hosts if self.models.failure(h, models) is not None}
        while count > 0:
            only = due.pop(0) if due else None
            views = room.views(lacking)
            if only is not None:
                views = [view for view in views if view.name == only]
            placement = place(demand, runtime, views)
            if only is not None:
                self.models.release(record.name, record.spec_hash, only)
                if placement.host is None:
                    continue  # it no longer fits there: placed anew
            elif placement.host is not None and models and not self.models.ready(placement.host, models):
                self.models.reserve(record.name, record.spec_hash, self.fleet.hosts[placement.host], models)
                count -= 1
                room.reserve(placement.host, demand, mine=True)
                continue
            if placement.host is None:
                if self._stop_first(record):
                    return  # a replica being restarted frees its room first; the next pass starts it
                building = sorted(lacking & {h.name for h in self.fleet.hosts.values() if h.schedulable})
                building_note = f" (building it on {', '.join(building)})" if building else ""
                self._set_message(record, f"pending ({placement.shortage}): no host has room for a "
                                  f"replica: {placement.reason}{building_note}")
                return
            host = self.fleet.hosts[placement.host]
            pinned = request.model_copy(update={"gpu_ids": placement.gpu_ids, "gpu_share": demand.gpu_share
                                                if placement.gpu_ids else None})
            try:
                info = await host.client.create_replica(pinned)
            except WorkbenchError as error:
                if error.status == 404:  # the host joined after the deploy: no image/bundle there
                    self.catchup.start(record, host, runtime)
                    lacking.add(host.name)
                    continue  # this replica goes elsewhere meanwhile
                if error.status == 409 and models:  # e.g. a model removed from its cache since
                    self.models.forget(host.name)
                self._set_message(record, f"error: {host.name} refused a replica: {error}")
                return
            count -= 1
            self.fleet.note_created(host.name, info)
            room.take(host.name, demand, placement.gpu_ids)
            log.info("%s: created replica %s on %s", record.name, info.id, host.name)
        self._set_message(record, None)

    # -- restarts ----------------------------------------------------------------------------
    def restart(self, api: str, replica_id: str) -> None:
        """Replace a replica: a new one starts, then the old one stops; when no host has room
        for both, the old one stops first. An event says when the API is back."""
        self.replacing.add(replica_id)
        self.restarting[replica_id] = api
        self.trigger()

    def _stop_first(self, record: ApiRecord) -> bool:
        """No room for the replacement of a replica being restarted: stop that replica now
        (True while one of this API's restarted replicas is stopping or was just stopped)."""
        mine = [(h, r) for h, r in self.fleet.replicas(record.name)
                if r.id in self.restarting and r.state not in GONE_STATES]
        if any(r.id in self.retiring for _, r in mine):
            return True
        waiting = [(h, r) for h, r in mine if h.reachable]
        if not waiting:
            return False
        host, replica = waiting[0]
        self.events.record("replica", f"no host has room for a new replica beside {replica.id}: "
                           f"stopping it on {host.name} first, then starting its replacement",
                           api=record.name, data={"replica": replica.id})
        self.retire(host, replica)
        return True

    def _note_restarted(self, record: ApiRecord, step_ready: int) -> None:
        """An event once a restarted replica is gone and the API has its replicas ready again."""
        present = {r.id for _, r in self.fleet.replicas(record.name) if r.state not in GONE_STATES}
        for replica_id, api in list(self.restarting.items()):
            if api != record.name or replica_id in present or replica_id in self.retiring:
                continue
            if step_ready >= record.desired_replicas:
                del self.restarting[replica_id]
                self.events.record("replica", f"replica {replica_id} restarted: {step_ready}/"
                                   f"{record.desired_replicas} replicas ready again", api=record.name,
                                   data={"replica": replica_id})

    def _set_message(self, record: ApiRecord, message: str | None) -> None:
        current = self.store.get_api(record.name)
        if current is None or current.message == message:
            return
        self.store.put_api(current.evolve(message=message))
        if message:
            self.events.record("schedule", message, api=record.name, level=logging.WARNING)
            self.tracker.progress(record.name, message)

    async def _fail_rollout(self, record: ApiRecord, failed: ReplicaView,
                            entries: list[tuple[Host, ReplicaInfo, ReplicaView]]) -> None:
        found = self.fleet.find(failed.id)
        info = found[1] if found else None
        reason = (info.message if info else None) or "not ready in time"
        tail = info.log_tail if info else []
        previous = self.store.history(record.name, record.rollout_from) if record.rollout_from else None
        left = "the previous version keeps serving" if previous else "nothing was deployed"
        what = "server" if record.api_spec().container is not None else "predictor"
        message = (f"{record.name}: replica {failed.id} failed to start: {reason}; {left}. "
                   f"Fix the {what} and deploy again")
        for host, replica, view in entries:
            if view.spec_hash == record.spec_hash and host.reachable:
                self.retire(host, replica)
        if previous is not None:
            self.store.put_api(previous.evolve(rollout_from=None, updated_at=time.time(),
                                               message=f"error: rollout of version {record.version} failed"))
        else:
            self.store.delete_api(record.name)
        self.events.record("rollout", message, api=record.name, level=logging.WARNING,
                           data={"version": record.version, "replica": failed.id, "log_tail": tail[-50:],
                                 "reverted_to": previous.version if previous else None})
        self.tracker.finish(record.name, record.version, failed=True, message=message, log_tail=tail)
        self.routes.sync()

    # -- removal -----------------------------------------------------------------------------
    def _remove_orphans(self, records: dict[str, ApiRecord]) -> None:
        for host, replica in self.fleet.replicas():
            if (replica.api not in records and host.reachable and replica.id not in self.retiring
                    and replica.state not in GONE_STATES):
                self.events.record("replica", f"removing orphan replica {replica.id} on {host.name}",
                                   api=replica.api)
                self.retire(host, replica)

    def retire(self, host: Host, replica: ReplicaInfo, grace: float | None = None) -> asyncio.Task[None]:
        """Take a replica out of the router's pool now, then stop it gracefully on its agent."""
        task = self.retiring.get(replica.id)
        if task is None:
            task = asyncio.create_task(self._retire(host, replica, grace), name=f"retire-{replica.id}")
            self.retiring[replica.id] = task
            self.routes.sync()
        return task

    async def _retire(self, host: Host, replica: ReplicaInfo, grace: float | None) -> None:
        try:
            await asyncio.sleep(0.2)  # requests the router picked it for just before it left connect
            deadline = time.monotonic() + DRAIN_WAIT
            while time.monotonic() < deadline and self._in_flight(replica) > 0:
                await asyncio.sleep(0.05)
            await host.client.delete_replica(replica.id, grace)
            self.fleet.note_gone(host.name, replica.id)
            log.info("%s: removed replica %s on %s", replica.api, replica.id, host.name)
        except WorkbenchError as error:
            if error.status == 404:
                self.fleet.note_gone(host.name, replica.id)
            else:
                log.warning("%s: cannot remove replica %s: %s", replica.api, replica.id, error)
        finally:
            self.retiring.pop(replica.id, None)
            self.replacing.discard(replica.id)
            self._failed_since.pop(replica.id, None)
            self._restart_base.pop(replica.id, None)
            self.routes.sync()
            self.trigger()

    def _in_flight(self, replica: ReplicaInfo) -> int:
        try:
            return self.routes.router.traffic(replica.api).replica_in_flight.get(replica.id, 0)
        except Exception:
            return 0
