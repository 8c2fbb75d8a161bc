"""The hosts the controller added (SSH boxes, direct agents): add, reconnect after a restart, retry
one that does not answer, restart an agent that stopped, upgrade, drain and remove.

Every phase goes through the host's link (workbench.controller.links): how a box is installed,
reached or cleaned up is the link's business; what the fleet, the store and the events see is the
same for every kind of host. A link's progress comes back to the event loop as HostEvents.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import replace
from typing import Any, TypeVar

from workbench import __version__
from workbench.controller.events import Events
from workbench.controller.fleet import Fleet, Host
from workbench.controller.links import LinkFactory, Links
from workbench.controller.links.base import Emit, HostFailed, HostInputError, HostLink, LinkRefused
from workbench.controller.reconciler import Reconciler
from workbench.controller.state import PriceRecord, RemoteRecord, Store
from workbench.controller.views import host_body
from workbench.wire.agent import ReplicaState
from workbench.wire.control import AddHostRequest, HostBody, HostEvent
from workbench.wire.errors import Failed
from workbench.wire.units import DEFAULT_CURRENCY, money, to_micros

log = logging.getLogger("workbench.controller.hosts")

RESTART_AGENT_EVERY = 10.0  # seconds between attempts to restart an agent that stopped answering
DRAIN_TIMEOUT = 120.0
T = TypeVar("T")


async def streamed(work: Callable[[Emit], Awaitable[T]]) -> AsyncIterator[HostEvent | T]:
    """Run `work(emit)`; yield the events it emits (from any thread) as they come, then its result
    (or raise its error)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[HostEvent | None] = asyncio.Queue()

    def emit(event: HostEvent) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, event)

    task = asyncio.ensure_future(work(emit))
    task.add_done_callback(lambda _: queue.put_nowait(None))  # after every event emitted before
    while (event := await queue.get()) is not None:
        yield event
    yield await task


class HostManager:
    """The added hosts and their links (the local host is the controller's own, not managed here)."""

    def __init__(self, store: Store, fleet: Fleet, events: Events, reconciler: Reconciler,
                 links: LinkFactory | None = None, describe: Callable[[Host], HostBody] = host_body) -> None:
        self.store = store
        self.fleet = fleet
        self.events = events
        self.reconciler = reconciler
        self.links: LinkFactory = links or Links()
        self.describe = describe  # a host as the control API shows it (with its price)
        self._busy: set[str] = set()
        self._restarting: dict[str, float] = {}
        self._retry: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Future[None]] = set()
        fleet.on_agent_down = self._agent_down

    def manages(self, name: str) -> bool:
        """True for a host that was added (and can be upgraded or removed) here."""
        return self.store.get_remote(name) is not None

    # -- validation ----------------------------------------------------------------------------
    def validate(self, request: AddHostRequest) -> None:
        name = request.name
        if name == "local" or name in self.fleet.hosts or name in self._busy or self.store.get_remote(name):
            raise HostInputError(f"a host named {name!r} already exists (`workbench host list`); "
                                 "pick another name or remove it first")
        self.links.validate(request)

    # -- adding --------------------------------------------------------------------------------
    async def add(self, request: AddHostRequest) -> AsyncIterator[HostEvent]:
        """The link's steps as events, then `done` (the host is in the fleet) or `error` (nothing of
        it is kept)."""
        name = request.name
        self._busy.add(name)
        link: HostLink | None = None
        kept = False
        try:
            link = self.links.for_request(request)
            joined = None
            async for item in streamed(link.add):
                if isinstance(item, HostEvent):
                    yield item
                else:
                    joined = item
            assert joined is not None
            self.store.put_remote(joined.record)
            if request.price is not None:
                self.store.put_price(PriceRecord(name, to_micros(request.price),
                                                 request.currency or DEFAULT_CURRENCY))
            host = await self._register(link)
            kept = True
            version = joined.record.agent_version
            priced = (f", {money(request.price, request.currency or DEFAULT_CURRENCY)}/h"
                      if request.price is not None else "")
            self.events.record("host", f"host {name} added ({joined.summary}, agent {version}{priced})")
            yield HostEvent(kind="done", host=name, message=joined.done, result=self.describe(host))
        except (HostFailed, HostInputError, LinkRefused) as error:
            yield HostEvent(kind="error", host=name, message=str(error))
        except Exception as error:
            log.exception("adding host %s failed", name)
            yield HostEvent(kind="error", host=name, message=f"adding {name} failed: {error}")
        finally:
            self._busy.discard(name)
            if link is not None and not kept:  # leave nothing behind
                link.forget()
                if name not in self.fleet.hosts:
                    self.store.delete_remote(name)
                    self.store.delete_price(name)
                await link.close()

    async def _register(self, link: HostLink) -> Host:
        host = Host(link.name, link)
        self.fleet.add(host)
        await self.fleet.poll_now(host)
        notice = await link.outdated()
        if notice is not None:
            self.events.record("host", notice.message, data=notice.data, level=logging.WARNING)
        return host

    # -- after a restart -----------------------------------------------------------------------
    async def restore(self) -> None:
        """Reconnect every added host (in parallel); one that cannot be reached is retried."""
        records = self.store.remote_hosts()
        await asyncio.gather(*(self._reconnect(record) for record in records))

    async def _reconnect(self, record: RemoteRecord) -> None:
        name = record.name
        link = self.links.for_record(record)
        try:
            await link.connect()
        except HostFailed as error:
            await link.close()
            placeholder = Host(name, link, state="unreachable", message=str(error),
                               unreachable_since=time.time())
            self.fleet.hold(placeholder)
            self.events.record("host", f"host {name} is unreachable: {error}", level=logging.WARNING)
            self._retry[name] = asyncio.create_task(self._retry_later(placeholder))
            return
        await self._register(link)

    async def _retry_later(self, placeholder: Host) -> None:
        """Connect again (2 s, 4 s, … 30 s apart) while the host is still held unreachable."""
        name, delay = placeholder.name, 2.0
        while self.fleet.hosts.get(name) is placeholder:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
            record = self.store.get_remote(name)
            if record is None:
                return
            link = self.links.for_record(record)
            try:
                await link.connect()
            except HostFailed:
                await link.close()
                continue
            await self._register(link)
            return

    # -- an agent that stopped answering -------------------------------------------------------
    def _agent_down(self, host: Host) -> None:
        """The agent stopped answering while the link is up: nothing may restart it on the host,
        so ask the link to (at most every RESTART_AGENT_EVERY seconds)."""
        now = time.monotonic()
        if now - self._restarting.get(host.name, 0.0) < RESTART_AGENT_EVERY:
            return
        self._restarting[host.name] = now

        async def restart() -> None:
            try:
                done = await host.link.restart_agent()
            except Failed as error:
                log.warning("cannot restart the agent on %s: %s", host.name, error)
                return
            if done:
                self.events.record("host", f"the agent on {host.name} stopped answering; {done} (its "
                                   "replicas are re-adopted)", level=logging.WARNING)

        self._spawn(restart())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- upgrading -----------------------------------------------------------------------------
    async def upgrade(self, name: str) -> AsyncIterator[HostEvent]:
        host = self.fleet.hosts.get(name)
        if host is None:
            yield HostEvent(kind="error", host=name,
                            message=f"{name} is not connected; wait until it is ready")
            return
        try:
            version = None
            async for item in streamed(host.link.upgrade):
                if isinstance(item, HostEvent):
                    yield item
                else:
                    version = item
            record = self.store.get_remote(name)
            if record is not None and version is not None:
                self.store.put_remote(replace(record, agent_version=version))
            now = self.fleet.hosts.get(name)
            if now is not None:
                now.info = None  # re-read the agent's version at the next poll
                await self.fleet.poll_now(now)
            self.events.record("host", f"host {name} upgraded to agent {__version__}")
            yield HostEvent(kind="done", host=name, message=f"{name} runs agent {__version__}",
                            result=self.describe(now) if now else None)
        except LinkRefused as error:
            yield HostEvent(kind="error", host=name, message=str(error))
        except Exception as error:
            yield HostEvent(kind="error", host=name, message=f"upgrading {name} failed: {error}")

    # -- removal -------------------------------------------------------------------------------
    async def drain(self, name: str, timeout: float = DRAIN_TIMEOUT) -> tuple[int, int]:
        """Move the host's replicas elsewhere (replacements first), then stop what is left.
        Returns (moved, deleted)."""
        host = self.fleet.hosts[name]
        host.cordoned = True
        gone = (ReplicaState.STOPPING, ReplicaState.STOPPED)
        mine = [r for r in host.replicas.values() if r.state not in gone]
        if not mine or not host.reachable:
            return 0, 0
        for replica in mine:
            self.reconciler.replacing.add(replica.id)
        self.reconciler.trigger()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left = [r for r in mine if r.id in host.replicas and r.id not in self.reconciler.retiring]
            if not left:
                break
            pending = {r.api for r in left if (self.store.get_api(r.api) is None
                                               or (self.store.get_api(r.api).message or "")  # type: ignore[union-attr]
                                               .startswith("pending"))}
            if pending and all(r.api in pending for r in left):
                break  # nowhere else to go
            await asyncio.sleep(0.3)
        leftover = [r for r in mine if r.id in host.replicas and r.id not in self.reconciler.retiring]
        moving = [self.reconciler.retiring[r.id] for r in mine if r.id in self.reconciler.retiring]
        tasks = moving + [self.reconciler.retire(host, r) for r in leftover]
        if tasks:
            await asyncio.wait(tasks, timeout=60)
        for replica in mine:
            self.reconciler.replacing.discard(replica.id)
        return len(mine) - len(leftover), len(leftover)

    async def remove(self, name: str, purge: bool) -> tuple[int, int]:
        """Drain, forget the host (records, secrets), let its link clean the box, then take it out
        of the fleet: it is listed until the box is clean."""
        moved, deleted = await self.drain(name)
        task = self._retry.pop(name, None)
        if task is not None:
            task.cancel()
        host = self.fleet.hosts.get(name)
        self.fleet.pause(name)
        self.store.delete_remote(name)
        self.store.delete_host(name)
        self.store.delete_price(name)
        had_rule = self.store.delete_idle_rule(name)  # the rule goes with the host
        try:
            if host is not None:
                host.link.forget()
                await host.link.uninstall(purge)
        finally:
            self.fleet.remove(name)
            if host is not None:
                await host.link.close()
        self.events.record("host", f"host {name} removed ({moved} replica(s) moved, {deleted} deleted"
                           + (", purged" if purge else "") + (", its idle rule with it" if had_rule else "")
                           + ")")
        return moved, deleted

    async def close(self) -> None:
        for task in self._retry.values():
            task.cancel()
        for host in list(self.fleet.hosts.values()):
            await host.link.close()
