"""Composition: the controller's parts wired together, and the ASGI app that serves them.

`/v1/*`, `/metrics` and `/healthz` go to the control API; every other path to the router.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from typing import Any

from prometheus_client import CollectorRegistry
from starlette.types import Receive, Scope, Send

from workbench.controller.api import ControlDeps, create_control_api
from workbench.controller.deployments import Deployments
from workbench.controller.events import Events
from workbench.controller.fleet import Fleet, Host
from workbench.controller.home import ControllerHome
from workbench.controller.hosts import HostManager
from workbench.controller.idle import IdleWatcher
from workbench.controller.links.local import LocalLink
from workbench.controller.metering import FleetMeter
from workbench.controller.metrics import ReplicaCollector
from workbench.controller.reconciler import Reconciler
from workbench.controller.routes import RouteSync
from workbench.controller.scaling import AutoscalingLoop
from workbench.controller.scrape import MetricScraper, ScrapedCollector, scrape_targets
from workbench.controller.state import HostRecord, Store
from workbench.controller.tracker import RolloutTracker
from workbench.controller.usage import DEFAULT_RETENTION_SECONDS, UsageMeter
from workbench.controller.views import Views
from workbench.local_agent import ensure_agent
from workbench.router.router import Router
from workbench.wire.errors import BadRequest

log = logging.getLogger("workbench.controller")

CONTROL_PATHS = ("/metrics", "/healthz")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def public_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


class Controller:
    """Everything `workbench serve` runs, in one event loop."""

    def __init__(self, home: ControllerHome, *, host: str = "127.0.0.1", port: int = 8765,
                 usage_retention: float = DEFAULT_RETENTION_SECONDS):
        self.home = home
        self.host = host
        self.port = port
        self.usage_retention = usage_retention
        self.base_url = public_url(host, port)
        self._tasks: list[asyncio.Task[None]] = []
        self._host_states: dict[str, tuple[str, float | None]] = {}

    async def start(self) -> None:
        self.home.create()
        self.store = Store(self.home.db)
        self.events = Events(self.store)
        self.registry = CollectorRegistry()
        self.tracker = RolloutTracker()
        self.fleet = Fleet(on_change=self._fleet_changed)
        self.router = Router(registry=self.registry, wake=self._wake,
                             require_api_keys=not is_loopback(self.host))
        await self.router.start()
        self.routes = RouteSync(self.router, self.store, self.fleet, lambda: set(self.reconciler.retiring))
        self.reconciler = Reconciler(self.store, self.fleet, self.events, self.routes, self.tracker)
        self.scraper = MetricScraper(lambda: scrape_targets(self.store.apis(), self.routes.ready_endpoints))
        self.scaling = AutoscalingLoop(self.store, self.router, self.events, self.reconciler.trigger,
                                       scraper=self.scraper)
        self.deployments = Deployments(self.store, self.fleet, self.events, self.reconciler, self.tracker,
                                       self.routes, self.base_url)
        self.idle = IdleWatcher(self.store, self.events, remove_host=self._remove_idle_host)
        self.views = Views(self.store, self.fleet, self.router, self.routes, self.base_url, idle=self.idle,
                           weights=self.reconciler.models.describe, scraper=self.scraper)
        self.hosts = HostManager(self.store, self.fleet, self.events, self.reconciler,
                                 describe=self.views.host)
        self.meter = FleetMeter(self.store, self.fleet, self.router,
                                UsageMeter(self.store, retention_seconds=self.usage_retention), self.idle)
        self.registry.register(ReplicaCollector(self.store, self.routes.ready_count))
        self.registry.register(ScrapedCollector(self.scraper, lambda: [r.name for r in self.store.apis()]))
        self.api = create_control_api(ControlDeps(
            store=self.store, fleet=self.fleet, events=self.events, reconciler=self.reconciler,
            deployments=self.deployments, tracker=self.tracker, routes=self.routes, views=self.views,
            registry=self.registry, token=self.home.token(), hosts=self.hosts, meter=self.meter,
            idle=self.idle))
        agent = await asyncio.to_thread(ensure_agent, on_start=log.info)
        self.fleet.add(Host("local", LocalLink(agent.url, agent.token)))
        await self.hosts.restore()  # registered boxes reconnect before the first reconcile
        await self.fleet.wait_first_poll()
        self._persist_hosts()
        self.routes.sync()
        await self.reconciler.reconcile_once()
        self._tasks = [asyncio.create_task(self.reconciler.run(), name="reconciler"),
                       asyncio.create_task(self.scaling.run(), name="autoscaler"),
                       asyncio.create_task(self.meter.run(), name="meter"),
                       asyncio.create_task(self.scraper.run(), name="metric scraper")]
        apis = self.store.apis()
        self.events.record("controller", f"started on {self.base_url} with {len(apis)} API(s)",
                           data={"apis": [a.name for a in apis]})

    async def _remove_idle_host(self, name: str) -> None:
        """An idle rule's --remove: as `workbench host remove NAME` (drain, uninstall, forget)."""
        if not self.hosts.manages(name):
            raise BadRequest(f"{name} is not a host that was added; it cannot be removed")
        await self.hosts.remove(name, purge=False)

    def _wake(self, api: str) -> None:
        self.scaling.wake(api)
        self.reconciler.trigger()

    def _fleet_changed(self) -> None:
        self.routes.sync()
        self._persist_hosts()
        self.reconciler.trigger()

    def _persist_hosts(self) -> None:
        for host in self.fleet.hosts.values():
            if self._host_states.get(host.name) == (host.state, host.last_seen) and host.state == "ready":
                continue
            previous = self._host_states.get(host.name, ("", None))[0]
            self._host_states[host.name] = (host.state, host.last_seen)
            if previous != host.state:
                self.events.record("host", f"host {host.name} is {host.state}"
                                   + (f": {host.message}" if host.message else ""),
                                   level=logging.WARNING if host.state == "unreachable" else logging.INFO)
                self.store.put_host(HostRecord(name=host.name, address=host.address,
                                               state=host.state,
                                               last_seen=host.last_seen,
                                               info=host.info.model_dump(mode="json") if host.info else None,
                                               message=host.message))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        path: str = scope.get("path", "")
        if path == "/v1" or path.startswith("/v1/") or path in CONTROL_PATHS:
            await self.api(scope, receive, send)
        else:
            await self.router(scope, receive, send)

    async def drain(self, timeout: float = 30.0) -> bool:
        """Stop taking new requests; wait for those in flight."""
        started = time.monotonic()
        done = await self.router.drain(timeout)
        log.info("router drained in %.1f s%s", time.monotonic() - started, "" if done else " (timed out)")
        return done

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.meter.close()
        await self.scraper.close()
        await self.reconciler.close()
        await self.fleet.close()
        await self.hosts.close()
        await self.router.close()
        self.events.record("controller", "stopped (replicas keep running)")
        self.store.close()


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message: dict[str, Any] = dict(await receive())
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
