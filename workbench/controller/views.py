"""Read models for the control API: API summaries and details, hosts, events."""

from __future__ import annotations

import re
from collections.abc import Callable

from workbench.controller.cost import LiveHost
from workbench.controller.fleet import Fleet, Host
from workbench.controller.idle import IdleWatcher, rule_body
from workbench.controller.routes import RouterLike, RouteSync
from workbench.controller.scrape import MetricScraper
from workbench.controller.state import ApiRecord, EventRecord, IdleRuleRecord, PriceRecord, Store
from workbench.router.types import ApiTraffic
from workbench.wire.agent import ReplicaState
from workbench.wire.control import (
    ApiDetail,
    ApiStatus,
    ApiSummary,
    EventBody,
    HostBody,
    IdleRuleBody,
    ReplicaBody,
    ReplicaCounts,
    TrafficBody,
)
from workbench.wire.model_cache import WAITING_FOR_WEIGHTS
from workbench.wire.units import DEFAULT_CURRENCY, from_micros

GONE = (ReplicaState.STOPPING, ReplicaState.STOPPED)


def _traffic(traffic: ApiTraffic) -> TrafficBody:
    return TrafficBody(requests_per_second=traffic.requests_per_second, p50_ms=traffic.p50_ms,
                       p99_ms=traffic.p99_ms, status_2xx=traffic.status_2xx, status_4xx=traffic.status_4xx,
                       status_5xx=traffic.status_5xx, in_flight=traffic.in_flight, retries=traffic.retries,
                       ejections=traffic.ejections)


def event_body(event: EventRecord) -> EventBody:
    return EventBody(at=event.at, api=event.api, kind=event.kind, message=event.message, data=event.data)


def host_body(host: Host, price: PriceRecord | None = None, quiet_since: float | None = None,
              idle: bool = False, rule: IdleRuleBody | None = None) -> HostBody:
    state = host.state if host.state in ("ready", "unreachable") else "connecting"
    kind = host.kind if host.kind in ("local", "ssh", "direct") else "local"
    return HostBody(name=host.name, address=host.address, state=state,
                    kind=kind, agent_version=host.info.agent_version if host.info else None,
                    last_seen=host.last_seen, info=host.info, replicas=len(host.replicas),
                    message=host.message, price=from_micros(price.price_micros) if price else None,
                    currency=price.currency if price else DEFAULT_CURRENCY, quiet_since=quiet_since,
                    idle=idle, idle_rule=rule)


def status_of(record: ApiRecord, counts: ReplicaCounts) -> ApiStatus:
    message = record.message or ""
    if record.kind == "traffic_splitter":
        return "splitter"
    pending = message.startswith("pending")
    if pending and counts.ready == 0 and counts.up_to_date == 0:
        return "pending"  # nothing runs: every replica waits for room
    if pending and counts.ready and counts.up_to_date == counts.ready:
        return "live"  # serving what fits (a rollout waits for the rest); the note says how many
    if record.rollout_from == 0:
        return "starting"
    if record.rollout_from is not None:
        return "updating"
    if record.desired_replicas == 0 and counts.ready == 0:
        return "scaled-to-zero"
    if counts.ready == 0:
        return "error" if counts.failed or message.startswith("error") else "starting"
    if counts.ready < record.desired_replicas or counts.up_to_date != counts.ready:
        return "updating"
    return "live"


def pending_note(record: ApiRecord, running: int) -> str | None:
    """"1 pending: no CPU" while replicas asked for wait for a host with room (the reconciler's
    message reads "pending (no CPU): no host has room …")."""
    message = record.message or ""
    waiting = record.desired_replicas - running
    if not message.startswith("pending") or waiting <= 0:
        return None
    shortage = re.match(r"pending \(([^)]*)\)", message)
    return f"{waiting} pending: {shortage.group(1) if shortage else 'no room'}"


class Views:
    def __init__(self, store: Store, fleet: Fleet, router: RouterLike, routes: RouteSync, base_url: str,
                 idle: IdleWatcher | None = None, weights: Callable[[str, str], str] | None = None,
                 scraper: MetricScraper | None = None):
        #: what an API's waiting replicas wait for (ModelSync.describe): "llm → box0: 120/200 MB, …"
        self.weights = weights
        self.scraper = scraper
        self.store = store
        self.fleet = fleet
        self.router = router
        self.routes = routes
        self.base_url = base_url
        self.idle = idle

    def host(self, host: Host, prices: dict[str, PriceRecord] | None = None,
             rules: dict[str, IdleRuleRecord] | None = None) -> HostBody:
        """A host with its price and idle state (`prices` and `rules`: read once for a list)."""
        prices = self.store.prices() if prices is None else prices
        rules = self.store.idle_rules() if rules is None else rules
        quiet_since, idle = self.idle.state(host.name) if self.idle is not None else (None, False)
        rule = rules.get(host.name)
        return host_body(host, prices.get(host.name), quiet_since, idle,
                         rule_body(rule) if rule is not None else None)

    def hosts(self) -> list[HostBody]:
        prices, rules = self.store.prices(), self.store.idle_rules()
        return [self.host(h, prices, rules) for h in self.fleet.hosts.values()]

    def live_hosts(self) -> dict[str, LiveHost]:
        """Every host in the fleet now, for a cost report."""
        prices = self.store.prices()
        live = {}
        for name in self.fleet.hosts:
            price = prices.get(name)
            quiet_since, idle = self.idle.state(name) if self.idle is not None else (None, False)
            live[name] = LiveHost(price=from_micros(price.price_micros) if price else None,
                                  currency=price.currency if price else DEFAULT_CURRENCY,
                                  idle=idle, quiet_since=quiet_since)
        return live

    def _traffic_of(self, name: str) -> ApiTraffic:
        try:
            return self.router.traffic(name)
        except Exception:
            return ApiTraffic()

    def summary(self, record: ApiRecord) -> ApiSummary:
        replicas = [r for _, r in self.fleet.replicas(record.name) if r.state not in GONE]
        counts = ReplicaCounts(
            requested=record.desired_replicas,
            ready=len(self.routes.endpoints(record.name)) if record.kind == "api" else 0,
            up_to_date=sum(r.spec_hash == record.spec_hash for r in replicas),
            failed=sum(r.state == ReplicaState.FAILED for r in replicas),
        )
        autoscaling = None
        split: list[dict[str, object]] = []
        if record.kind == "api":
            spec = record.api_spec()
            if spec.autoscaling is not None:
                a = spec.autoscaling
                autoscaling = {"min_replicas": a.min_replicas, "max_replicas": a.max_replicas,
                               "target_concurrency": a.target_concurrency or spec.serving.max_concurrency}
        else:  # each target with its traffic: a shadow's beside the live ones'
            split = [{**t.model_dump(), "traffic": _traffic(self._traffic_of(t.name)).model_dump()}
                     for t in record.splitter_spec().apis]
        return ApiSummary(
            name=record.name, kind=record.kind, status=status_of(record, counts), replicas=counts,
            runtime=record.runtime,
            artifact=record.artifact, spec_hash=record.spec_hash, updated_at=record.updated_at,
            endpoint=f"{self.base_url}/{record.name}", traffic=_traffic(self._traffic_of(record.name)),
            autoscaling=autoscaling, split=split, message=record.message or self._waiting(record),
            note=pending_note(record, len(replicas)) if record.kind == "api" else None,
        )

    def _waiting(self, record: ApiRecord) -> str | None:
        if self.weights is None or record.spec_hash is None:
            return None
        text = self.weights(record.name, record.spec_hash)
        return WAITING_FOR_WEIGHTS + text if text else None

    def detail(self, record: ApiRecord, events: int = 20) -> ApiDetail:
        summary = self.summary(record)
        traffic = self._traffic_of(record.name)
        ready_ids = {e.replica_id for e in self.routes.endpoints(record.name)}
        replicas = []
        scraped = self.scraper.replicas(record.name) if self.scraper is not None else {}
        for host, r in sorted(self.fleet.replicas(record.name), key=lambda pair: pair[1].created_at):
            state = r.state if host.reachable else ReplicaState.STARTING
            message = r.message if host.reachable else f"host {host.name} is unreachable"
            if r.state == ReplicaState.READY and r.id not in ready_ids and host.reachable:
                message = message or "leaving the pool"
            replicas.append(ReplicaBody(
                id=r.id, host=host.name, state=state, url=r.url,
                in_flight=traffic.replica_in_flight.get(r.id, 0), restarts=r.restarts, message=message,
                spec_hash=r.spec_hash, up_to_date=r.spec_hash == record.spec_hash,
                ejected=r.id in traffic.ejected, created_at=r.created_at, log_tail=r.log_tail,
                gpu_ids=list(r.gpu_ids), gpu_share=r.gpu_share,
                metric=scraped[r.id].value if r.id in scraped else None,
                metric_problem=scraped[r.id].problem if r.id in scraped else None))
        # this API's events, not those of an earlier API of the same name (`workbench events` has those)
        own = self.store.events(record.name, events, since=record.created_at)
        metric = self.scraper.metric(record.name) if self.scraper is not None else None
        return ApiDetail(**summary.model_dump(), replica_list=replicas, events=[event_body(e) for e in own],
                         metric=metric)
