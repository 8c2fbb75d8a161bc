"""Keeps the router's routes and endpoint pools in line with the desired state and the fleet."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Protocol

from workbench.controller.fleet import Fleet
from workbench.controller.state import ApiRecord, Store
from workbench.router.types import ApiRoute, ApiTraffic, Endpoint, SplitRoute
from workbench.spec.models import OpenAISpec

log = logging.getLogger("workbench.controller.routes")


class RouterLike(Protocol):
    """The part of workbench.router.router.Router the controller uses."""

    def set_route(self, route: ApiRoute | SplitRoute) -> None: ...
    def remove_route(self, name: str) -> None: ...
    def set_endpoints(self, api: str, endpoints: list[Endpoint]) -> None: ...
    def traffic(self, api: str) -> ApiTraffic: ...
    def in_flight(self, api: str) -> int: ...


def _keys(env_name: str | None) -> frozenset[str]:
    if not env_name:
        return frozenset()
    return frozenset(key.strip() for key in os.environ.get(env_name, "").split(",") if key.strip())


def health_path_of(record: ApiRecord) -> str | None:
    """What the router's active check asks a replica of `record`: a predictor's /readyz, a
    container API's health path — none when that is on another port than the one it serves."""
    container = record.api_spec().container
    if container is None:
        return "/readyz"
    health = container.health
    return health.path if health.port in (None, container.port) else None


def route_for(record: ApiRecord) -> ApiRoute | SplitRoute:
    if record.kind == "traffic_splitter":
        splitter = record.splitter_spec()
        shadow = next((t.name for t in splitter.apis if t.shadow), None)
        return SplitRoute(name=splitter.name,
                          targets=tuple((t.name, t.weight) for t in splitter.apis if not t.shadow),
                          shadow=shadow, models=models_of(splitter.openai),
                          incarnation=record.created_at)
    spec = record.api_spec()
    return ApiRoute(name=spec.name, routing=spec.routing, max_body_bytes=spec.serving.max_body_bytes,
                    scale_to_zero=spec.autoscaling is not None and spec.autoscaling.min_replicas == 0,
                    api_keys=_keys(spec.routing.api_keys_env), incarnation=record.created_at,
                    models=models_of(spec.openai))


def models_of(openai: OpenAISpec | None) -> tuple[str, ...]:
    return tuple(openai.models) if openai is not None else ()


class RouteSync:
    """Pushes routes and ready endpoints to the router whenever they change."""

    def __init__(self, router: RouterLike, store: Store, fleet: Fleet, retiring: Callable[[], set[str]]):
        self.router = router
        self.store = store
        self.fleet = fleet
        self.retiring = retiring  # replica ids leaving the pool before they are deleted
        self._routes: dict[str, ApiRoute | SplitRoute] = {}
        self._endpoints: dict[str, list[Endpoint]] = {}

    def endpoints(self, api: str, health_path: str | None = "/readyz") -> list[Endpoint]:
        leaving = self.retiring()
        ready = sorted(self.fleet.ready_endpoints(api), key=lambda pair: pair[1].created_at)
        endpoints = []
        for host, r in ready:
            if r.id in leaving:
                continue
            try:
                endpoint = host.endpoint(r.url or "", r.id)
            except Exception as error:  # a tunnel that cannot open: not routable now
                log.warning("no tunnel to replica %s on %s: %s", r.id, host.name, error)
                continue
            endpoints.append(Endpoint(replica_id=r.id, url=endpoint.url, host=host.name,
                                      headers=endpoint.headers, ca_cert=endpoint.ca_cert,
                                      health_path=health_path))
        return endpoints

    def sync(self) -> None:
        records = {record.name: record for record in self.store.apis()}
        for name in list(self._routes):
            if name not in records:
                self.router.remove_route(name)
                self._routes.pop(name, None)
                self._endpoints.pop(name, None)
        for name, record in records.items():
            try:
                route = route_for(record)
            except ValueError:
                log.exception("stored spec of %s is unreadable", name)
                continue
            if self._routes.get(name) != route:
                self.router.set_route(route)
                self._routes[name] = route
            if record.kind == "api":
                endpoints = self.endpoints(name, health_path_of(record))
                if self._endpoints.get(name) != endpoints:
                    self.router.set_endpoints(name, endpoints)
                    self._endpoints[name] = endpoints

    def ready_count(self, api: str) -> int:
        return len(self._endpoints.get(api, []))

    def ready_endpoints(self, api: str) -> list[Endpoint]:
        """The endpoints last handed to the router for `api`."""
        return list(self._endpoints.get(api, []))
