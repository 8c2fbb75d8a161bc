"""The controller's control API, typed: :class:`ControlClient` (CLI) and
:class:`AsyncControlClient` (the TUI). Each call is described once, in :class:`ControlCalls`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import TypeAdapter

from workbench.clients.core import (
    AsyncCore,
    Call,
    Stream,
    SyncCore,
    async_call,
    async_stream,
    quoted,
    sync_call,
    sync_stream,
)
from workbench.wire.agent import GpuReport
from workbench.wire.control import (
    AddHostRequest,
    ApiDetail,
    ApiSummary,
    CostReport,
    DeletedBody,
    DeployEvent,
    DeployRequest,
    EventBody,
    FleetGpusBody,
    HostBody,
    HostEvent,
    HostModelsBody,
    HostSettingsRequest,
    IdlePlanBody,
    IdleRuleRequest,
    ModelPullRequest,
    ModelsRemovedBody,
    PruneBody,
    RemovedHostBody,
    ScaleRequest,
)
from workbench.wire.model_cache import ModelEvent

# Parsed straight from the JSON bytes (pydantic-core): no intermediate dicts and lists, which for
# a large fleet polled each second is most of the time and most of the garbage.
_API_LIST = TypeAdapter(list[ApiSummary])
_HOST_LIST = TypeAdapter(list[HostBody])
_EVENT_LIST = TypeAdapter(list[EventBody])
_HOST_MODELS = TypeAdapter(list[HostModelsBody])
#: deleting waits for the replicas' graceful stop
_LONG = httpx.Timeout(30.0, read=None)


def _model(kind: Any) -> Any:
    return lambda response: kind.model_validate_json(response.content)


def _flag(value: bool) -> str:
    return str(value).lower()


class ControlCalls:
    """The control API's calls (no I/O): what to send and how to read the answer."""

    @staticmethod
    def apis() -> Call[list[ApiSummary]]:
        return Call("GET", "/v1/apis", parse=lambda r: _API_LIST.validate_json(r.content))

    @staticmethod
    def api(name: str) -> Call[ApiDetail]:
        return Call("GET", f"/v1/apis/{quoted(name)}", parse=_model(ApiDetail))

    @staticmethod
    def delete(name: str) -> Call[DeletedBody]:
        return Call("DELETE", f"/v1/apis/{quoted(name)}", timeout=_LONG, parse=_model(DeletedBody))

    @staticmethod
    def scale(name: str, request: ScaleRequest) -> Call[ApiSummary]:
        return Call("POST", f"/v1/apis/{quoted(name)}/scale", json=request.model_dump(exclude_none=True),
                    parse=_model(ApiSummary))

    @staticmethod
    def restart(name: str, replica_id: str) -> Call[None]:
        return Call("POST", f"/v1/apis/{quoted(name)}/replicas/{quoted(replica_id)}/restart",
                    parse=lambda r: None)

    @staticmethod
    def hosts() -> Call[list[HostBody]]:
        return Call("GET", "/v1/hosts", parse=lambda r: _HOST_LIST.validate_json(r.content))

    @staticmethod
    def host(name: str) -> Call[HostBody]:
        return Call("GET", f"/v1/hosts/{quoted(name)}", parse=_model(HostBody))

    @staticmethod
    def events(api: str | None = None, limit: int = 100, since: float | None = None) -> Call[list[EventBody]]:
        params: dict[str, Any] = {"limit": limit}
        if api:
            params["api"] = api
        if since is not None:
            params["since"] = repr(since)
        return Call("GET", "/v1/events", params=params, parse=lambda r: _EVENT_LIST.validate_json(r.content))

    @staticmethod
    def prune_images(keep: int = 2, dry_run: bool = False) -> Call[PruneBody]:
        return Call("POST", "/v1/images/prune", json={"keep": keep, "dry_run": dry_run}, timeout=_LONG,
                    parse=_model(PruneBody))

    @staticmethod
    def deploy(request: DeployRequest) -> Stream[DeployEvent]:
        """Start a deployment; its progress events until done or error."""
        return Stream("POST", "/v1/deployments", json=request.model_dump(exclude_none=True),
                      parse_line=DeployEvent.model_validate_json, what="deployment")

    @staticmethod
    def logs(name: str, *, tail: int = 100, follow: bool = False, replica: str | None = None,
             timestamps: bool = False, since: float | None = None) -> Stream[str]:
        """The API's replicas' log lines (merged); with follow, until the replicas go away. With
        timestamps each line starts with its RFC 3339 time; `since` (a Unix time) skips older ones."""
        params: dict[str, Any] = {"tail": tail, "follow": _flag(follow)}
        if replica:
            params["replica"] = replica
        if timestamps:
            params["timestamps"] = "true"
        if since is not None:
            params["since"] = repr(since)
        return Stream("GET", f"/v1/apis/{quoted(name)}/logs", params=params, what="log", skip_blank=False)

    @staticmethod
    def gpus(name: str, history: bool = False, since: float | None = None) -> Call[GpuReport]:
        """The host's live GPU report, with ~10 min of history if asked (only the samples taken
        after `since`, a Unix time, when given)."""
        params = {"history": _flag(history)}
        if since is not None:
            params["since"] = repr(since)
        return Call("GET", f"/v1/hosts/{quoted(name)}/gpus", params=params, parse=_model(GpuReport))

    @staticmethod
    def fleet_gpus(since: Mapping[str, float] | None = None, history: bool = True) -> Call[FleetGpusBody]:
        """Every ready GPU host's report; history only after `since[host]` for the hosts named."""
        params: list[tuple[str, str]] = [("history", _flag(history))]
        params += [("since", f"{name}:{at!r}") for name, at in (since or {}).items()]
        return Call("GET", "/v1/gpus", params=params, parse=_model(FleetGpusBody))

    @staticmethod
    def remove_host(name: str, *, purge: bool = False) -> Call[RemovedHostBody]:
        return Call("DELETE", f"/v1/hosts/{quoted(name)}", params={"purge": _flag(purge)}, timeout=_LONG,
                    parse=_model(RemovedHostBody))

    @staticmethod
    def add_host(request: AddHostRequest) -> Stream[HostEvent]:
        """Register a box; its progress (connect, preflight, install steps) until done/error."""
        return Stream("POST", "/v1/hosts", json=request.model_dump(mode="json", exclude_none=True),
                      parse_line=HostEvent.model_validate_json, what="host")

    @staticmethod
    def set_host(name: str, request: HostSettingsRequest) -> Call[HostBody]:
        """Change a host's settings: its price per hour (and currency), its model cache's limit."""
        return Call("PATCH", f"/v1/hosts/{quoted(name)}",
                    json=request.model_dump(mode="json", exclude_none=True), parse=_model(HostBody))

    @staticmethod
    def set_idle_rule(name: str, request: IdleRuleRequest) -> Call[IdlePlanBody]:
        """Set (or, with dry_run, only explain) what happens when the host sits idle."""
        return Call("PUT", f"/v1/hosts/{quoted(name)}/idle", json=request.model_dump(mode="json"),
                    parse=_model(IdlePlanBody))

    @staticmethod
    def delete_idle_rule(name: str) -> Call[None]:
        return Call("DELETE", f"/v1/hosts/{quoted(name)}/idle", parse=lambda r: None)

    @staticmethod
    def cost(since: str = "7d") -> Call[CostReport]:
        """Spend per host and per API over the window `since` (7d, 24h, 30m, or seconds)."""
        return Call("GET", "/v1/cost", params={"since": since}, parse=_model(CostReport))

    @staticmethod
    def models(host: str | None = None) -> Call[list[HostModelsBody]]:
        """Every host's model cache (or one host's)."""
        return Call("GET", "/v1/models", params={"host": host} if host else None,
                    parse=lambda r: _HOST_MODELS.validate_json(r.content))

    @staticmethod
    def pull_model(request: ModelPullRequest) -> Stream[ModelEvent]:
        """Put a model in a host's cache now; progress until done or error."""
        return Stream("POST", "/v1/models/pulls", json=request.model_dump(exclude_none=True),
                      parse_line=ModelEvent.model_validate_json, what="model pull")

    @staticmethod
    def remove_model(ref: str, host: str | None = None) -> Call[ModelsRemovedBody]:
        return Call("DELETE", f"/v1/models/{quoted(ref)}", params={"host": host} if host else None,
                    parse=_model(ModelsRemovedBody))

    @staticmethod
    def upgrade_host(name: str) -> Stream[HostEvent]:
        return Stream("POST", f"/v1/hosts/{quoted(name)}/upgrade", parse_line=HostEvent.model_validate_json,
                      what="host")


@dataclass(frozen=True)
class ControllerConfig:
    """Where a running controller answers, and its bearer token (what the CLI hands the TUI)."""

    url: str
    token: str = field(repr=False)


class ControlClient(SyncCore):
    """Talks to one controller with its bearer token (never logged)."""

    service = "the controller"

    def __init__(self, url: str, token: str, *, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(url, token=token, timeout=timeout, transport=transport, trust_env=False)

    apis = sync_call(ControlCalls.apis)
    api = sync_call(ControlCalls.api)
    delete = sync_call(ControlCalls.delete)
    scale = sync_call(ControlCalls.scale)
    restart = sync_call(ControlCalls.restart)
    hosts = sync_call(ControlCalls.hosts)
    host = sync_call(ControlCalls.host)
    events = sync_call(ControlCalls.events)
    deploy = sync_stream(ControlCalls.deploy)
    logs = sync_stream(ControlCalls.logs)
    gpus = sync_call(ControlCalls.gpus)
    fleet_gpus = sync_call(ControlCalls.fleet_gpus)
    remove_host = sync_call(ControlCalls.remove_host)
    add_host = sync_stream(ControlCalls.add_host)
    upgrade_host = sync_stream(ControlCalls.upgrade_host)
    prune_images = sync_call(ControlCalls.prune_images)
    set_host = sync_call(ControlCalls.set_host)
    set_idle_rule = sync_call(ControlCalls.set_idle_rule)
    delete_idle_rule = sync_call(ControlCalls.delete_idle_rule)
    cost = sync_call(ControlCalls.cost)
    models = sync_call(ControlCalls.models)
    pull_model = sync_stream(ControlCalls.pull_model)
    remove_model = sync_call(ControlCalls.remove_model)


class AsyncControlClient(AsyncCore):
    """:class:`ControlClient` for an event loop: the same calls, awaited (streams: async for)."""

    service = "the controller"

    def __init__(self, url: str, token: str, *, timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(url, token=token, timeout=timeout, transport=transport, trust_env=False)

    apis = async_call(ControlCalls.apis)
    api = async_call(ControlCalls.api)
    delete = async_call(ControlCalls.delete)
    scale = async_call(ControlCalls.scale)
    restart = async_call(ControlCalls.restart)
    hosts = async_call(ControlCalls.hosts)
    host = async_call(ControlCalls.host)
    events = async_call(ControlCalls.events)
    deploy = async_stream(ControlCalls.deploy)
    logs = async_stream(ControlCalls.logs)
    gpus = async_call(ControlCalls.gpus)
    fleet_gpus = async_call(ControlCalls.fleet_gpus)
    remove_host = async_call(ControlCalls.remove_host)
    add_host = async_stream(ControlCalls.add_host)
    upgrade_host = async_stream(ControlCalls.upgrade_host)
    prune_images = async_call(ControlCalls.prune_images)
    set_host = async_call(ControlCalls.set_host)
    set_idle_rule = async_call(ControlCalls.set_idle_rule)
    delete_idle_rule = async_call(ControlCalls.delete_idle_rule)
    cost = async_call(ControlCalls.cost)
    models = async_call(ControlCalls.models)
    pull_model = async_stream(ControlCalls.pull_model)
    remove_model = async_call(ControlCalls.remove_model)
