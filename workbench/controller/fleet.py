"""The fleet monitor: each host's agent polled about once a second (never overlapping).

A host that stops answering, or whose link goes down, is marked unreachable at once (its replicas
leave the router's pools); when it answers again its replicas come back. Reconciler writes
(create/delete) are noted here at once so the next decision sees them before the next poll does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from workbench.controller.links.base import HostLink, LinkState, ReplicaEndpoint
from workbench.wire.agent import HostInfo, ReplicaInfo, ReplicaState
from workbench.wire.errors import WorkbenchError

log = logging.getLogger("workbench.controller.fleet")

POLL_SECONDS = 1.0
HOST_INFO_SECONDS = 10.0


@dataclass(eq=False)
class Host:
    """One host: its link, and what the last poll saw there."""

    name: str
    link: HostLink = field(repr=False)
    state: str = "connecting"  # connecting | ready | unreachable
    last_seen: float | None = None
    unreachable_since: float | None = None
    info: HostInfo | None = None
    message: str | None = None
    replicas: dict[str, ReplicaInfo] = field(default_factory=dict)
    info_at: float = 0.0
    cordoned: bool = False  # being removed: no new replicas
    _noted: dict[str, float] = field(default_factory=dict)  # replica id -> monotonic time of a write
    _gone: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.client = self.link.agent_client(timeout=60.0)
        self.poller = self.link.agent_client(timeout=3.0)

    @property
    def url(self) -> str:
        return self.link.agent_url

    @property
    def token(self) -> str:
        return self.link.token

    @property
    def kind(self) -> str:
        """A label (local | ssh | direct) for lists; nothing decides by it."""
        return self.link.kind

    @property
    def address(self) -> str:
        """What the user typed (user@host:port), or the agent's URL."""
        return self.link.address

    @property
    def reachable(self) -> bool:
        return self.state == "ready"

    @property
    def schedulable(self) -> bool:
        return self.reachable and not self.cordoned

    def endpoint(self, replica_url: str, replica_id: str) -> ReplicaEndpoint:
        """What the router uses for a replica on this host (see HostLink.endpoint)."""
        return self.link.endpoint(replica_url, replica_id)

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
        #: called (from the poll) when a host's agent stops answering while its link is up
        self.on_agent_down: Callable[[Host], None] | None = None
        self.poll_seconds = poll_seconds
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._first_poll: dict[str, asyncio.Event] = {}
        self._background: set[asyncio.Task[None]] = set()  # clients closing, polls after a reconnect

    def add(self, host: Host) -> None:
        """Start polling a host (it replaces one of the same name) and follow its link's state."""
        self._forget(host.name)
        self.hosts[host.name] = host
        self._first_poll[host.name] = asyncio.Event()
        self._tasks[host.name] = asyncio.create_task(self._monitor(host), name=f"fleet-{host.name}")
        host.link.watch(lambda state: self._link_changed(host, state))

    def hold(self, host: Host) -> None:
        """List a host that cannot be reached now (it replaces one of the same name); it is not
        polled until a reachable one is added in its place."""
        self._forget(host.name)
        self.hosts[host.name] = host

    def _forget(self, name: str) -> None:
        old = self.hosts.get(name)
        if old is not None:
            self._stop_task(name)
            self._first_poll.pop(name, None)
            self._close_later(old)

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

    def pause(self, name: str) -> None:
        """Stop polling a host that stays listed (while it is being removed: no poll, no restart
        of an agent that is being stopped)."""
        self._stop_task(name)

    def mark_unreachable(self, host: Host, message: str) -> None:
        """The link dropped: take the host (and its replicas) out now, not at the next poll."""
        if host.state != "unreachable":
            host.unreachable_since = time.time()
        host.state, host.message = "unreachable", message
        if self.on_change is not None:
            self.on_change()

    def _link_changed(self, host: Host, state: LinkState) -> None:
        """On the event loop: the host's link went down (out of the pools now) or came back."""
        if self.hosts.get(host.name) is not host:
            return  # removed or replaced since
        if not state.connected:
            self.mark_unreachable(host, state.message or f"the link to {host.address} is down")
            if state.last_seen:
                host.last_seen = state.last_seen
        else:
            self._spawn(self.poll_now(host))

    def _close_later(self, host: Host) -> None:
        self._spawn(host.aclose())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

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
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

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
        link = host.link.state
        if not link.connected:
            if host.state != "unreachable":
                self.mark_unreachable(host, link.message or f"the link to {host.address} is down")
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
            if self.on_agent_down is not None and host.link.state.connected:
                self.on_agent_down(host)
        else:
            if not host.link.state.connected:
                return  # the link went down while this poll was in flight: its notice stands
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
