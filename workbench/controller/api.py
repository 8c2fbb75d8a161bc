"""The control API (FastAPI): /v1/* with a bearer token, plus /metrics and /healthz.

Every error is JSON {"error": "..."} with a 4xx status; bad input never makes a 500.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import shlex
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import ValidationError

from workbench import __version__
from workbench.clients.agent import AsyncAgentClient
from workbench.controller.cost import cost_report
from workbench.controller.deployments import Deployments
from workbench.controller.events import Events
from workbench.controller.fleet import Fleet, Host
from workbench.controller.gpu_api import gpu_routes
from workbench.controller.hosts import HostManager
from workbench.controller.idle import IdleWatcher, check_rule, command_env, rule_body
from workbench.controller.images import prune
from workbench.controller.intake import DeployInputError
from workbench.controller.metering import FleetMeter
from workbench.controller.reconciler import Reconciler
from workbench.controller.routes import RouteSync
from workbench.controller.state import ApiRecord, IdleRuleRecord, PriceRecord, Store
from workbench.controller.tracker import RolloutTracker
from workbench.controller.views import Views, event_body
from workbench.spec.models import AutoscalingSpec
from workbench.spec.weights import ModelSpec
from workbench.weights.resolve import resolve
from workbench.wire.agent import LATEST_LOG_TIME, ReplicaInfo, ReplicaState
from workbench.wire.control import (
    AddHostRequest,
    ApiDetail,
    ApiSummary,
    CostReport,
    DeletedBody,
    DeployRequest,
    EventBody,
    HostBody,
    HostEvent,
    HostModelsBody,
    HostSettingsRequest,
    IdlePlanBody,
    IdleRuleRequest,
    ModelPullRequest,
    ModelsRemovedBody,
    PruneBody,
    PruneRequest,
    RemovedHostBody,
    RemovedModel,
    ScaleRequest,
)
from workbench.wire.errors import BadRequest, Conflict, NotFound, Unauthorized, Unavailable, WorkbenchError
from workbench.wire.handlers import error_response, install_error_handlers, validation_text
from workbench.wire.model_cache import ModelEvent
from workbench.wire.units import (
    DEFAULT_CURRENCY,
    format_duration,
    from_micros,
    money,
    parse_duration,
    to_micros,
)

log = logging.getLogger("workbench.controller.api")


@dataclass
class ControlDeps:
    store: Store
    fleet: Fleet
    events: Events
    reconciler: Reconciler
    deployments: Deployments
    tracker: RolloutTracker
    routes: RouteSync
    views: Views
    registry: CollectorRegistry
    token: str
    hosts: HostManager | None = None
    meter: FleetMeter | None = None
    idle: IdleWatcher | None = None


_bearer = HTTPBearer(auto_error=False, description="the token in $WORKBENCH_HOME/controller/token")


def create_control_api(deps: ControlDeps) -> FastAPI:
    app = FastAPI(title="workbench controller", version=__version__, openapi_url="/v1/openapi.json",
                  docs_url="/v1/docs", redoc_url=None)
    install_error_handlers(app, log=log)
    store, fleet, views = deps.store, deps.fleet, deps.views

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, Any]:
        return {"ok": True, "version": __version__}

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(deps.registry), media_type=CONTENT_TYPE_LATEST)

    async def auth(credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:  # noqa: B008
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise Unauthorized("missing bearer token: send Authorization: Bearer <token> "
                                "(the token is in $WORKBENCH_HOME/controller/token)")
        if not secrets.compare_digest(credentials.credentials.encode(), deps.token.encode()):
            raise Unauthorized("wrong bearer token")

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(auth)],
                   responses={401: {"description": "missing or wrong token"}})

    def record_of(name: str) -> ApiRecord:
        record = store.get_api(name)
        if record is None:
            known = ", ".join(r.name for r in store.apis()) or "none"
            raise NotFound(f"no API named {name!r} (deployed: {known})")
        return record

    def live_replicas(name: str) -> list[tuple[Host, ReplicaInfo]]:
        return [(h, r) for h, r in fleet.replicas(name)
                if r.state not in (ReplicaState.STOPPING, ReplicaState.STOPPED)]

    @v1.get("/apis", response_model=list[ApiSummary])
    async def list_apis() -> list[ApiSummary]:
        return [views.summary(record) for record in store.apis()]

    @v1.get("/apis/{name}", response_model=ApiDetail, responses={404: {"description": "unknown API"}})
    async def get_api(name: str) -> ApiDetail:
        return views.detail(record_of(name))

    @v1.post("/deployments", responses={400: {"description": "bad spec"},
                                        200: {"content": {"application/x-ndjson": {}}}})
    async def deploy(body: DeployRequest) -> Response:
        try:
            order = await deps.deployments.prepare(body)
        except DeployInputError as error:  # a bad spec's 400 lists its file:line: field problems
            return error_response(400, error.message, **error.extra)

        async def lines() -> AsyncIterator[bytes]:
            async for event in deps.deployments.stream(order):
                yield (event.model_dump_json() + "\n").encode()

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    @v1.delete("/apis/{name}", response_model=DeletedBody, responses={404: {}, 409: {}})
    async def delete_api(name: str) -> DeletedBody:
        record = record_of(name)
        users = [r.name for r in store.apis() if r.kind == "traffic_splitter"
                 and name in {t.name for t in r.splitter_spec().apis}]
        if users:
            raise Conflict(f"traffic splitter {', '.join(users)} routes to {name}; delete it first")
        store.delete_api(name)
        deps.tracker.finish(name, record.version, failed=True, message=f"{name} was deleted")
        deps.routes.sync()
        grace = record.api_spec().serving.graceful_shutdown if record.kind == "api" else 0.0
        tasks = [deps.reconciler.retire(h, r) for h, r in live_replicas(name) if h.reachable]
        deps.events.record("delete", f"deleted ({len(tasks)} replica(s) stopping)", api=name)
        if tasks:
            await asyncio.wait(tasks, timeout=grace + 30)
        return DeletedBody(name=name, deleted_replicas=len(tasks))

    @v1.post("/apis/{name}/scale", response_model=ApiSummary, responses={400: {}, 404: {}})
    async def scale(name: str, body: ScaleRequest) -> ApiSummary:
        record = record_of(name)
        if record.kind != "api":
            raise BadRequest(f"{name} is a traffic splitter; it has no replicas to scale")
        spec = record.api_spec()
        if body.replicas is None and body.min_replicas is None and body.max_replicas is None:
            raise BadRequest("give replicas (a fixed count) or min_replicas/max_replicas (autoscaled)")
        if spec.autoscaling is None:
            if body.min_replicas is not None or body.max_replicas is not None:
                raise BadRequest(f"{name} has a fixed replica count; scale it with --replicas N "
                                 "(or deploy it with an autoscaling block for --min/--max)")
            assert body.replicas is not None
            new_spec = spec.model_copy(update={"replicas": body.replicas})
            desired = body.replicas
            text = f"replicas {record.desired_replicas} → {desired}"
        else:
            if body.replicas is not None:
                raise BadRequest(f"{name} is autoscaled; set its bounds with --min N and/or --max N instead")
            bounds = spec.autoscaling.model_dump()
            for key in ("min_replicas", "max_replicas"):
                if getattr(body, key) is not None:
                    bounds[key] = getattr(body, key)
            if bounds["init_replicas"] is not None and not (
                    bounds["min_replicas"] <= bounds["init_replicas"] <= bounds["max_replicas"]):
                bounds["init_replicas"] = None
            try:
                autoscaling = AutoscalingSpec.model_validate(bounds)
            except ValidationError as error:
                raise BadRequest(validation_text(error)) from None
            new_spec = spec.model_copy(update={"autoscaling": autoscaling})
            desired = min(max(record.desired_replicas, autoscaling.min_replicas), autoscaling.max_replicas)
            text = f"autoscaling bounds {autoscaling.min_replicas}..{autoscaling.max_replicas}"
        store.put_api(record.evolve(spec=new_spec.model_dump(mode="json", by_alias=True),
                                    desired_replicas=desired, updated_at=time.time()))
        deps.events.record("scale", text, api=name, data=body.model_dump(exclude_none=True))
        deps.routes.sync()
        deps.reconciler.trigger()
        summary = views.summary(record_of(name))
        more = desired - len(live_replicas(name))
        if more > 0:  # say now what the reconciler would find: not all of them fit
            placed, failed = deps.reconciler.room_for(record_of(name), more)
            if failed is not None:
                summary.message = (f"room for {placed} of {more} more replica(s) now ({failed.shortage}): "
                                   f"{failed.reason}; the rest start when a host has room")
        return summary

    @v1.post("/apis/{name}/replicas/{replica_id}/restart", status_code=202, responses={404: {}})
    async def restart_replica(name: str, replica_id: str) -> dict[str, Any]:
        record_of(name)
        match = [(h, r) for h, r in live_replicas(name) if r.id == replica_id]
        if not match:
            known = ", ".join(r.id for _, r in live_replicas(name)) or "none"
            raise NotFound(f"{name} has no replica {replica_id!r} (replicas: {known})")
        deps.events.record("replica", f"restart of replica {replica_id} requested (replaced by a new one)",
                           api=name, data={"replica": replica_id})
        deps.reconciler.restart(name, replica_id)
        return {"name": name, "replica": replica_id, "message": "a new replica replaces it once ready"}

    @v1.get("/apis/{name}/logs", response_class=PlainTextResponse, responses={404: {}})
    async def logs(name: str, tail: int = Query(100, ge=0, le=100_000), follow: bool = False,
                   replica: str | None = None,
                   timestamps: bool = Query(False, description="lead each line with its RFC 3339 time"),
                   since: float | None = Query(None, ge=0, le=LATEST_LOG_TIME,
                                               description="only lines written at or after this Unix "
                                               "time")) -> Response:
        record_of(name)
        pairs = [(h, r) for h, r in live_replicas(name) if replica is None or r.id == replica]
        if replica is not None and not pairs:
            raise NotFound(f"{name} has no replica {replica!r}")
        prefix = len(pairs) > 1
        query = _LogQuery(tail, timestamps, since)
        if not follow:
            chunks = await asyncio.gather(*(_tail(h, r, query, prefix) for h, r in pairs))
            return PlainTextResponse("".join(chunks))
        return StreamingResponse(_follow(pairs, query, prefix), media_type="text/plain")

    @v1.get("/hosts", response_model=list[HostBody])
    async def hosts() -> list[HostBody]:
        return views.hosts()

    def manager() -> HostManager:
        if deps.hosts is None:
            raise BadRequest("this controller does not manage remote hosts")
        return deps.hosts

    def added(name: str) -> bool:
        """A host the host manager added (not the controller's own local host)."""
        return deps.hosts is not None and deps.hosts.manages(name)

    def host_of(name: str) -> Host:
        host = fleet.hosts.get(name)
        if host is None:
            known = ", ".join(fleet.hosts) or "none"
            raise NotFound(f"no host named {name!r} (hosts: {known})")
        return host

    def ndjson(events: AsyncIterator[HostEvent]) -> StreamingResponse:
        async def lines() -> AsyncIterator[bytes]:
            async for event in events:
                yield (event.model_dump_json() + "\n").encode()

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    @v1.post("/hosts", responses={400: {"description": "duplicate name or bad target"},
                                  200: {"content": {"application/x-ndjson": {}}}})
    async def add_host(body: AddHostRequest) -> StreamingResponse:
        hosts = manager()
        hosts.validate(body)  # HostInputError: a 400 saying what to fix
        return ndjson(hosts.add(body))

    @v1.get("/hosts/{name}", response_model=HostBody, responses={404: {"description": "unknown host"}})
    async def get_host(name: str) -> HostBody:
        return views.host(host_of(name))

    @v1.patch("/hosts/{name}", response_model=HostBody, responses={400: {}, 404: {}, 503: {}})
    async def set_host(name: str, body: HostSettingsRequest) -> HostBody:
        """What the host costs per hour, and its model cache's limit; what is left out stays."""
        host = host_of(name)
        old = store.prices().get(name)
        pricing = body.price is not None or body.currency is not None
        if not pricing and body.cache_limit is None:
            raise BadRequest("nothing to set: give a price (--price 2.40), a currency (--currency EUR) "
                             "or a model cache limit (--cache-limit 500Gi)")
        if pricing and body.price is None and old is None:
            raise BadRequest(f"{name} has no price yet: give one with the currency (--price 2.40)")
        if body.cache_limit is not None:
            # first: the agent may refuse, and then nothing has changed
            if not host.reachable:
                raise Unavailable(f"{name} is {host.state}: its agent keeps the limit, "
                                  "set it once it is ready")
            report = await host.client.set_cache_limit(body.cache_limit or None)
            limit = (f"{report.limit_bytes / 2**30:.1f} GiB" if report.limit_bytes
                     else "none (the disk's size)")
            deps.events.record("host", f"host {name}: model cache limit {limit}",
                               data={"host": name, "cache_limit": report.limit_bytes})
        if pricing:
            micros = to_micros(body.price) if body.price is not None else old.price_micros  # type: ignore[union-attr]
            currency = body.currency or (old.currency if old else DEFAULT_CURRENCY)
            store.put_price(PriceRecord(name, micros, currency))
            was = f" (was {money(from_micros(old.price_micros), old.currency)}/h)" if old else ""
            deps.events.record("host", f"host {name} costs {money(from_micros(micros), currency)}/h{was}",
                               data={"host": name, "price": str(from_micros(micros)), "currency": currency})
        return views.host(host)

    def watcher() -> IdleWatcher:
        if deps.idle is None:
            raise BadRequest("this controller does not watch for idle hosts")
        return deps.idle

    @v1.put("/hosts/{name}/idle", response_model=IdlePlanBody, responses={400: {}, 404: {}})
    async def set_idle_rule(name: str, body: IdleRuleRequest) -> IdlePlanBody:
        host = host_of(name)
        idle = watcher()
        rule = IdleRuleRecord(host=name, after_seconds=body.after, util_threshold=body.util_threshold,
                              command=body.command, cwd=body.cwd, remove=body.remove)
        argv = check_rule(rule, removable=added(name))  # BadRequest: what to fix; nothing saved
        quiet_since, is_idle = idle.state(name)
        has_gpus = bool(host.info and host.info.gpus)
        idle_for = idle.idle_for(name, has_gpus=has_gpus)
        env = command_env(name, host.address, max(idle_for, body.after)) if argv else {}
        steps = [f"when {name} has been idle for {format_duration(body.after)} (no request reached its "
                 f"replicas and every GPU stayed below {body.util_threshold:g}%): it is flagged idle and an "
                 "event says so"]
        if body.remove:
            live = len([r for r in host.replicas.values() if r.state not in (ReplicaState.STOPPING,
                                                                              ReplicaState.STOPPED)])
            steps.append(f"then its {live} replica(s) are moved to other hosts (or stopped), its agent is "
                         "uninstalled and it leaves the fleet (as `workbench host remove`)")
        if argv:
            steps.append(f"then `{shlex.join(argv)}` runs on this machine"
                         + (f" in {body.cwd}" if body.cwd else "") + ", with "
                         + " ".join(f"{k}={v}" for k, v in env.items() if k != "WORKBENCH_IDLE_SECONDS")
                         + " and WORKBENCH_IDLE_SECONDS in its environment; its exit status and last "
                         "output line go into an event; once per idle period (a failure is retried "
                         "only in the next one)")
        now_text = (f"{name} is idle now (for {format_duration(idle_for)})" if is_idle else
                    f"{name} is in use now" if idle_for < 1 else
                    f"{name} has been quiet for {format_duration(idle_for)}")
        steps.append(now_text + (": the action would start at once" if is_idle and (argv or body.remove)
                                 and not body.dry_run else ""))
        if not body.dry_run:
            idle.save(rule)
        return IdlePlanBody(rule=rule_body(rule), saved=not body.dry_run, env=env, steps=steps,
                            quiet_since=quiet_since, idle=is_idle)

    @v1.delete("/hosts/{name}/idle", responses={404: {}})
    async def delete_idle_rule(name: str) -> dict[str, Any]:
        host_of(name)
        if not watcher().delete(name):
            raise NotFound(f"{name} has no idle rule")
        return {"host": name, "removed": True}

    @v1.get("/cost", response_model=CostReport, responses={400: {}})
    async def cost(since: str = Query("7d", description="the window: 7d, 24h, 30m, or seconds")
                   ) -> CostReport:
        try:
            seconds = parse_duration(since)
        except ValueError as error:
            raise BadRequest(f"since={since!r}: {error}") from None
        if deps.meter is not None:
            deps.meter.flush()  # the minutes not written yet count too
        now = time.time()
        return cost_report(store, now - seconds, now, views.live_hosts())

    @v1.delete("/hosts/{name}", response_model=RemovedHostBody, responses={400: {}, 404: {}})
    async def remove_host(name: str, purge: bool = False) -> RemovedHostBody:
        host_of(name)
        if not added(name):
            raise BadRequest("the local host cannot be removed")
        moved, deleted = await manager().remove(name, purge)
        return RemovedHostBody(name=name, moved_replicas=moved, deleted_replicas=deleted, purged=purge)

    @v1.post("/hosts/{name}/upgrade", responses={400: {}, 404: {},
                                                200: {"content": {"application/x-ndjson": {}}}})
    async def upgrade_host(name: str) -> StreamingResponse:
        host_of(name)
        if not added(name):
            raise BadRequest("the local agent is upgraded with the workstation's workbench")
        return ndjson(manager().upgrade(name))

    # -- the hosts' model caches ----------------------------------------------------------------
    @v1.get("/models", response_model=list[HostModelsBody])
    async def list_models(host: str | None = None) -> list[HostModelsBody]:
        chosen = [host_of(host)] if host else list(fleet.hosts.values())

        async def one(h: Host) -> HostModelsBody:
            if not h.reachable:
                return HostModelsBody(host=h.name, error=h.message or f"{h.name} is {h.state}")
            try:
                return HostModelsBody(host=h.name, cache=await h.client.models())
            except WorkbenchError as error:
                return HostModelsBody(host=h.name, error=str(error))

        return list(await asyncio.gather(*(one(h) for h in chosen)))

    @v1.post("/models/pulls", responses={400: {}, 404: {}, 503: {},
                                         200: {"content": {"application/x-ndjson": {}}}})
    async def pull_model(body: ModelPullRequest) -> StreamingResponse:
        host = host_of(body.host)
        if not host.reachable:
            raise Unavailable(f"{body.host} is {host.state}: {host.message or 'its agent does not answer'}")
        try:
            spec = ModelSpec(source=body.source, name=body.name, include=body.include, exclude=body.exclude,
                             sha256=body.sha256)
        except ValidationError as error:
            raise BadRequest(validation_text(error)) from None
        source = spec.parsed
        if source.kind == "local" and not source.path.startswith("/"):  # type: ignore[union-attr]
            raise BadRequest(f"{body.source}: give the controller an absolute path (the CLI does)")
        planned = await asyncio.to_thread(resolve, spec, Path("/"))
        sync = deps.reconciler.models

        async def lines() -> AsyncIterator[bytes]:
            queue: asyncio.Queue[ModelEvent] = asyncio.Queue()
            work = asyncio.ensure_future(sync.ensure(host, planned, queue.put_nowait))
            label = planned.manifest.label
            yield (ModelEvent(kind="log", id=planned.id, host=host.name,
                              message=f"{label}: {len(planned.manifest.files)} file(s), "
                                      f"{planned.manifest.size / 1e6:.1f} MB").model_dump_json()
                   + "\n").encode()
            while not work.done() or not queue.empty():
                try:
                    event = await asyncio.wait_for(queue.get(), 0.5)
                except TimeoutError:
                    continue
                if event.kind == "progress":
                    yield (event.model_dump_json() + "\n").encode()
            try:
                await work
            except WorkbenchError as error:
                final = ModelEvent(kind="error", id=planned.id, host=host.name, message=str(error))
            else:
                final = ModelEvent(kind="done", id=planned.id, host=host.name,
                                   message=f"{label} is in {host.name}'s cache",
                                   bytes_total=planned.manifest.size)
            yield (final.model_dump_json() + "\n").encode()

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    @v1.delete("/models/{ref}", response_model=ModelsRemovedBody, responses={404: {}})
    async def remove_model(ref: str, host: str | None = None) -> ModelsRemovedBody:
        """Remove a model (by name, or by an id prefix of 8+ digits) from one host or all."""
        chosen = [host_of(host)] if host else [h for h in fleet.hosts.values() if h.reachable]
        body = ModelsRemovedBody()
        found = False
        for h in chosen:
            try:
                report = await h.client.models()
            except WorkbenchError as error:
                body.refused[h.name] = str(error)
                continue
            for model in report.models:
                if model.name != ref and not (len(ref) >= 8 and model.id.startswith(ref)):
                    continue
                found = True
                try:
                    await h.client.remove_model(model.id)
                except WorkbenchError as error:
                    body.refused[h.name] = str(error)
                else:
                    body.removed.append(RemovedModel(host=h.name, id=model.id, name=model.name))
            deps.reconciler.models.forget(h.name)
        if not found and not body.refused:
            raise NotFound(f"no model {ref!r} in the cache of {host or 'any host'} "
                           "(see `workbench model list`)")
        for gone in body.removed:
            deps.events.record("model", f"model {gone.name} ({gone.id[:12]}) removed from {gone.host}",
                               data=gone.model_dump())
        return body

    @v1.get("/events", response_model=list[EventBody], responses={404: {"description": "unknown API"}})
    async def events(api: str | None = None, limit: int = Query(100, ge=1, le=1000),
                     since: float | None = Query(None, description="only events at or after this "
                                                 "time (seconds since the epoch)")) -> list[EventBody]:
        found = store.events(api, limit, since=since)
        if api is not None and not found and store.get_api(api) is None and not store.events(api, 1):
            record_of(api)  # a name nothing ever happened to: 404, as everywhere
        return [event_body(e) for e in found]

    @v1.post("/images/prune", response_model=PruneBody)
    async def prune_images(body: PruneRequest) -> PruneBody:
        pruned = await prune(store, fleet, body)
        if pruned.removed and not body.dry_run:
            freed = sum(i.size_bytes or 0 for i in pruned.removed)
            deps.events.record("image", f"pruned {len(pruned.removed)} image(s), {freed / 2**20:.0f} MiB "
                               f"(kept the last {body.keep} version(s) of each deployed API)",
                               data={"removed": [i.artifact for i in pruned.removed]})
        return pruned

    app.include_router(v1)

    def agent_of(name: str) -> AsyncAgentClient | None:
        host = fleet.hosts.get(name)
        return host.client if host is not None else None

    def gpu_hosts() -> list[str]:
        return [name for name, host in fleet.hosts.items()
                if host.state == "ready" and host.info is not None and host.info.gpus]

    app.include_router(gpu_routes(agent_of, gpu_hosts), dependencies=[Depends(auth)])
    return app


@dataclass(frozen=True)
class _LogQuery:
    tail: int
    timestamps: bool = False
    since: float | None = None


async def _tail(host: Host, replica: ReplicaInfo, query: _LogQuery, prefix: bool) -> str:
    mark = f"[{replica.id}] " if prefix else ""
    try:
        lines = [line async for line in host.client.logs(replica.id, tail=query.tail,
                                                         timestamps=query.timestamps, since=query.since)]
    except WorkbenchError as error:
        return f"{mark}(logs unavailable: {error.status or error})\n"
    return "".join(f"{mark}{_untagged(line, replica.id) if mark else line}\n" for line in lines)


def _untagged(line: str, replica_id: str) -> str:
    """A line the predictor runtime tagged with its replica (``workbench: [id] serving…``) without
    the tag, where the merge leads the line with the same ``[id]`` (its time may come first)."""
    tag = f"workbench: [{replica_id}] "
    stamp, _, rest = line.partition(" ")
    if line.startswith(tag):
        return "workbench: " + line[len(tag):]
    if rest.startswith(tag):
        return f"{stamp} workbench: {rest[len(tag):]}"
    return line


async def _follow(pairs: list[tuple[Host, ReplicaInfo]], query: _LogQuery,
                  prefix: bool) -> AsyncIterator[bytes]:
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=1000)

    async def pump(host: Host, replica: ReplicaInfo) -> None:
        mark = f"[{replica.id}] " if prefix else ""
        try:
            async for line in host.client.logs(replica.id, tail=query.tail, follow=True,
                                               timestamps=query.timestamps, since=query.since):
                await queue.put(f"{mark}{_untagged(line, replica.id) if mark else line}\n".encode())
        except WorkbenchError as error:
            await queue.put(f"{mark}(log stream ended: {error})\n".encode())
        finally:
            await queue.put(None)

    tasks = [asyncio.create_task(pump(h, r)) for h, r in pairs]
    open_streams = len(tasks)
    try:
        while open_streams:
            item = await queue.get()
            if item is None:
                open_streams -= 1
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
