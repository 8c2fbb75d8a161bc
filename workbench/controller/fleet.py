"""The fleet monitor: each host's agent polled about once a second (never overlapping).

A host that stops answering is marked unreachable at once (its replicas leave the router's pools);
when it answers again its replicas come back. Reconciler writes (create/delete) are noted here at
once so the next decision sees them before the next poll does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from workbench.clients.agent import AsyncAgentClient
from workbench.wire.agent import HostInfo, ReplicaInfo, ReplicaState
from workbench.wire.errors import WorkbenchError

log = logging.getLogger("workbench.controller.fleet")

POLL_SECONDS = 1.0
HOST_INFO_SECONDS = 10.0


class Link(Protocol):
    """What the fleet needs of a remote host's SSH link (workbench.remote.tunnel.RemoteHost)."""

    @property
    def state(self) -> str: ...
    def endpoint_url(self, remote_url: str) -> str: ...


@dataclass
class Host:
    """One agent and what the last poll saw there."""

    name: str
    url: str
    token: str = field(repr=False)
    state: str = "connecting"  # connecting | ready | unreachable
    last_seen: float | None = None
    unreachable_since: float | None = None
    info: HostInfo | None = None
    message: str | None = None
    replicas: dict[str, ReplicaInfo] = field(default_factory=dict)
    info_at: float = 0.0
    kind: str = "local"  # local | ssh | direct
    address: str | None = None  # what the user typed (user@host:port); the agent URL when None
    link: Link | None = field(default=None, repr=False)  # the SSH link of a remote host
    cordoned: bool = False  # being removed: no new replicas
    #: called (from the poll) when the agent stops answering while the SSH link is up
    on_agent_down: Callable[[Host], Any] | None = field(default=None, repr=False)
    ca_cert: str | None = None  # direct mode over TLS: the PEM file that verifies the agent
    _urls: dict[str, str] = field(default_factory=dict, repr=False)
    _noted: dict[str, float] = field(default_factory=dict)  # replica id -> monotonic time of a write
    _gone: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        verify = self.ca_cert or True
        self.client = AsyncAgentClient(self.url, self.token, timeout=60.0, verify=verify)
        self.poller = AsyncAgentClient(self.url, self.token, timeout=3.0, verify=verify)

    @property
    def direct(self) -> bool:
        return self.kind == "direct"

    @property
    def endpoint_headers(self) -> tuple[tuple[str, str], ...]:
        """What the router adds to requests for this host's replicas: the agent's token when they
        are reached through its proxy route (direct mode)."""
        return (("authorization", f"Bearer {self.token}"),) if self.direct else ()

    @property
    def reachable(self) -> bool:
        return self.state == "ready"

    @property
    def schedulable(self) -> bool:
        return self.reachable and not self.cordoned

    def endpoint(self, replica_url: str, replica_id: str | None = None) -> str:
        """The URL the router uses for a replica: through the host's tunnel for a remote host,
        through the agent's proxy route (`endpoint_headers` carry its token) for a direct one."""
        if self.direct and replica_id is not None:
            return f"{self.url.rstrip('/')}/v1/replicas/{replica_id}/proxy"
        if self.link is None:
            return replica_url
        mapped = self._urls.get(replica_url)
        if mapped is None:
            mapped = self._urls[replica_url] = self.link.endpoint_url(replica_url)
        return mapped

    def link_down(self) -> bool:
        return self.link is not None and self.link.state != "connected"

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.poller.aclose()


def _fingerprint(host: Host) -> tuple[object, ...]:
    return (host.state, tuple(sorted((r.id, r.state, r.url, r.restarts) for r in host.replicas.values())))


class Fleet:
    """Hosts and their replicas, kept fresh by one polling task per host."""

    def __init__(self, on_change: Callable[[], None] | None = None, poll_seconds: float = POLL_SECONDS):
        self.hosts: dict[str, Host] = {}
        self.on_change = on_change
        self.poll_seconds = poll_seconds
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._first_poll: dict[str, asyncio.Event] = {}
        self._closing: set[asyncio.Task[None]] = set()  # clients of hosts that left, closing

    def add(self, host: Host) -> None:
        old = self.hosts.get(host.name)
        if old is not None:
            self._stop_task(host.name)
            self._close_later(old)
        self.hosts[host.name] = host
        self._first_poll[host.name] = asyncio.Event()
        self._tasks[host.name] = asyncio.create_task(self._monitor(host), name=f"fleet-{host.name}")

    async def wait_first_poll(self, timeout: float = 10.0) -> None:
        """Wait until every host was polled once (so adoption sees what already runs)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(event.wait() for event in self._first_poll.values())), timeout)

    def remove(self, name: str) -> Host | None:
        """Stop polling a host and forget it (the caller closes its link)."""
        self._stop_task(name)
        self._first_poll.pop(name, None)
        host = self.hosts.pop(name, None)
        if host is not None:
            self._close_later(host)
        if self.on_change is not None:
            self.on_change()
        return host

    def mark_unreachable(self, host: Host, message: str) -> None:
        """The link dropped: take the host (and its replicas) out now, not at the next poll."""
        if host.state != "unreachable":
            host.unreachable_since = time.time()
        host.state, host.message = "unreachable", message
        if self.on_change is not None:
            self.on_change()

    def _close_later(self, host: Host) -> None:
        task = asyncio.ensure_future(host.aclose())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _stop_task(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for name in list(self._tasks):
            self._stop_task(name)
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for host in self.hosts.values():
            await host.aclose()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    # -- reading -----------------------------------------------------------------------------
    def replicas(self, api: str | None = None) -> list[tuple[Host, ReplicaInfo]]:
        """Every known replica (reachable or not) as (host, info)."""
        return [(host, replica) for host in self.hosts.values() for replica in host.replicas.values()
                if api is None or replica.api == api]

    def find(self, replica_id: str) -> tuple[Host, ReplicaInfo] | None:
        for host in self.hosts.values():
            if replica_id in host.replicas:
                return host, host.replicas[replica_id]
        return None

    def ready_endpoints(self, api: str) -> list[tuple[Host, ReplicaInfo]]:
        return [(host, r) for host, r in self.replicas(api)
                if host.reachable and r.state == ReplicaState.READY and r.url]

    # -- writes the reconciler made ------------------------------------------------------------
    def note_created(self, host_name: str, replica: ReplicaInfo) -> None:
        host = self.hosts[host_name]
        host.replicas[replica.id] = replica
        host._noted[replica.id] = time.monotonic()

    def note_gone(self, host_name: str, replica_id: str) -> None:
        host = self.hosts.get(host_name)
        if host is not None:
            host.replicas.pop(replica_id, None)
            host._gone[replica_id] = time.monotonic()

    async def poll_now(self, host: Host) -> None:
        await self._poll(host)

    # -- polling -----------------------------------------------------------------------------
    async def _monitor(self, host: Host) -> None:
        while True:
            started = time.monotonic()
            try:
                await self._poll(host)
            except Exception:  # never let one bad answer stop the monitor
                log.exception("polling host %s failed", host.name)
            self._first_poll[host.name].set()
            await asyncio.sleep(max(0.05, self.poll_seconds - (time.monotonic() - started)))

    async def _poll(self, host: Host) -> None:
        before = _fingerprint(host)
        started = time.monotonic()
        if host.link_down():
            if host.state != "unreachable":
                self.mark_unreachable(host, f"SSH link to {host.address or host.name} is down")
            return
        try:
            replicas = await host.poller.replicas()
            if host.info is None or time.monotonic() - host.info_at > HOST_INFO_SECONDS:
                host.info = await host.poller.host()
                host.info_at = time.monotonic()
        except WorkbenchError as error:
            if host.state != "unreachable":
                log.warning("host %s stopped answering: %s", host.name, error)
                host.unreachable_since = time.time()
            host.state = "unreachable"
            host.message = str(error)
            if host.on_agent_down is not None and not host.link_down():
                host.on_agent_down(host)
        else:
            if host.state != "ready":
                log.info("host %s is ready (%d replicas)", host.name, len(replicas))
            host.state, host.message, host.unreachable_since = "ready", None, None
            host.last_seen = time.time()
            listed = {r.id for r in replicas}
            fresh = {r.id: r for r in replicas if r.id not in host._gone}
            # a replica created while this poll was in flight is kept until a later poll sees it
            for replica_id, at in list(host._noted.items()):
                if replica_id in fresh or at < started - 30:
                    host._noted.pop(replica_id)
                elif at >= started and replica_id in host.replicas:
                    fresh[replica_id] = host.replicas[replica_id]
            for replica_id, at in list(host._gone.items()):
                if (replica_id not in listed and at < started) or at < started - 300:
                    host._gone.pop(replica_id)
            host.replicas = fresh
        if _fingerprint(host) != before and self.on_change is not None:
            self.on_change()
