"""HostManager through a fake link: a test implementation of HostLink that reaches a REAL agent
(a `python -m workbench.agent serve` subprocess on a temp home) with no SSH in between, and whose
link state, reachability and version the test switches. What is asserted is what the controller
shows: the fleet's hosts, the events, the stored records, the replicas on the agent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.agent.helpers import Agent, bundle_context, read_events, replica_request
from workbench import __version__
from workbench.clients.agent import AsyncAgentClient
from workbench.controller.events import Events
from workbench.controller.fleet import Fleet
from workbench.controller.hosts import HostManager
from workbench.controller.links.base import (
    Emit,
    HostFailed,
    HostInputError,
    HostLink,
    Joined,
    LinkRefused,
    LinkState,
    Notice,
    ReplicaEndpoint,
)
from workbench.controller.reconciler import Reconciler
from workbench.controller.routes import RouteSync
from workbench.controller.state import RemoteRecord, Store
from workbench.controller.tracker import RolloutTracker
from workbench.router.router import Router
from workbench.wire.agent import ReplicaRequest, ReplicaState
from workbench.wire.control import AddHostRequest, HostEvent

pytestmark = pytest.mark.slow


@dataclass
class Switches:
    """What the test flips: the box answers connects, the version its agent reports."""

    reachable: bool = True
    version: str | None = None  # an outdated agent's version, or None
    refuse_add: str | None = None  # add() fails with this message
    refuse_upgrade: str | None = None  # upgrade() refuses with this message


class FakeLink(HostLink):
    """A link with nothing in between: the agent at its own URL; replicas at theirs."""

    kind = "fake"

    def __init__(self, name: str, address: str, agent: Agent, switches: Switches,
                 calls: list[tuple[str, Any]]) -> None:
        super().__init__(name, address)
        self.agent, self.switches, self.calls = agent, switches, calls
        self._up = True
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def agent_url(self) -> str:
        return self.agent.url

    @property
    def token(self) -> str:
        return str(self.agent.config["token"])

    def endpoint(self, replica_url: str, replica_id: str) -> ReplicaEndpoint:
        return ReplicaEndpoint(replica_url)

    @property
    def state(self) -> LinkState:
        return LinkState(self._up, time.time() if self._up else None, "the fake link is cut")

    def set_up(self, up: bool) -> None:
        """Cut or mend the link, telling the watchers as a real link's monitor would."""
        self._up = up
        assert self._loop is not None
        self._changed(LinkState(up, None, None if up else "the fake link was cut"), self._loop)

    async def add(self, emit: Emit) -> Joined:
        self._loop = asyncio.get_running_loop()
        emit(HostEvent(kind="step", host=self.name, step="connect", message=f"reaching {self.address}"))
        await asyncio.sleep(0)
        if self.switches.refuse_add:
            raise HostFailed(self.switches.refuse_add)
        record = RemoteRecord(name=self.name, target=self.address, kind=self.kind,
                              agent_port=self.agent.port, agent_version=self.switches.version or "current")
        return Joined(record, summary=f"fake, {self.address}", done=f"{self.name} joined (fake)")

    async def connect(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.calls.append(("connect", self.name))
        if not self.switches.reachable:
            raise HostFailed(f"{self.address} does not answer (test)")

    async def outdated(self) -> Notice | None:
        version = self.switches.version
        if version is None:
            return None
        return Notice(f"host {self.name} runs agent {version} (test)", {"host": self.name})

    async def upgrade(self, emit: Emit) -> str:
        if self.switches.refuse_upgrade:
            raise LinkRefused(self.switches.refuse_upgrade)
        emit(HostEvent(kind="step", host=self.name, step="install", message="installing (test)"))
        return "9.9.9"

    async def restart_agent(self) -> str | None:
        if self.agent.proc is not None and self.agent.proc.poll() is None:
            return None
        await asyncio.to_thread(self.agent.start)
        self.calls.append(("restart_agent", self.name))
        return "restarted it through the fake link"

    async def uninstall(self, purge: bool) -> None:
        self.calls.append(("uninstall", purge))

    def forget(self) -> None:
        self.calls.append(("forget", self.name))

    async def close(self) -> None:
        self.calls.append(("close", self.name))


@dataclass
class FakeLinks:
    """The link factory the manager is given: every link reaches `agent`."""

    agent: Agent
    switches: Switches = field(default_factory=Switches)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    made: list[FakeLink] = field(default_factory=list)

    def validate(self, request: AddHostRequest) -> None:
        if request.target == "bad target":
            raise HostInputError(f"bad target {request.target!r} (test)")

    def _make(self, name: str, address: str) -> FakeLink:
        link = FakeLink(name, address, self.agent, self.switches, self.calls)
        self.made.append(link)
        return link

    def for_request(self, request: AddHostRequest) -> HostLink:
        return self._make(request.name, request.target)

    def for_record(self, record: RemoteRecord) -> HostLink:
        return self._make(record.name, record.target)


@dataclass
class Parts:
    """A controller's host-facing parts, as workbench.controller.app wires them."""

    store: Store
    events: Events
    fleet: Fleet
    router: Router
    reconciler: Reconciler
    hosts: HostManager

    def messages(self) -> list[str]:
        return [event.message for event in self.store.events(None, 100)]

    async def close(self) -> None:
        await self.reconciler.close()
        await self.fleet.close()
        await self.hosts.close()
        await self.router.close()
        self.store.close()


async def start_parts(db: Path, links: FakeLinks, poll_seconds: float = 0.2) -> Parts:
    store = Store(db)
    events = Events(store)
    router = Router()
    await router.start()
    holder: dict[str, Reconciler] = {}
    fleet = Fleet(on_change=lambda: holder["reconciler"].routes.sync(), poll_seconds=poll_seconds)
    routes = RouteSync(router, store, fleet, lambda: set(holder["reconciler"].retiring))
    reconciler = holder["reconciler"] = Reconciler(store, fleet, events, routes, RolloutTracker())
    hosts = HostManager(store, fleet, events, reconciler, links)
    return Parts(store, events, fleet, router, reconciler, hosts)


async def eventually(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


async def add(parts: Parts, **body: Any) -> list[HostEvent]:
    request = AddHostRequest(**{"name": "box", "target": "tester@box.example", **body})
    parts.hosts.validate(request)
    return [event async for event in parts.hosts.add(request)]


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    box = Agent(tmp_path / "box-agent")
    try:
        yield box.start()
    finally:
        box.cleanup()


@pytest.fixture
def links(agent: Agent) -> FakeLinks:
    return FakeLinks(agent)


@pytest.fixture
async def parts(tmp_path: Path, links: FakeLinks) -> AsyncIterator[Parts]:
    started = await start_parts(tmp_path / "state.db", links)
    try:
        yield started
    finally:
        await started.close()


async def test_add_registers_the_host_and_keeps_its_record(parts: Parts, links: FakeLinks) -> None:
    links.switches.version = "0.0.1"
    events = await add(parts)
    assert [e.kind for e in events] == ["step", "done"], events
    assert events[-1].message == "box joined (fake)"
    assert events[-1].result is not None and events[-1].result.state == "ready"
    host = parts.fleet.hosts["box"]
    assert host.state == "ready" and host.kind == "fake" and host.address == "tester@box.example"
    assert host.info is not None and host.info.agent_version
    record = parts.store.get_remote("box")
    assert record is not None and record.kind == "fake" and record.agent_version == "0.0.1"
    said = parts.messages()
    assert "host box added (fake, tester@box.example, agent 0.0.1)" in said
    assert "host box runs agent 0.0.1 (test)" in said  # the link's notice, recorded after the poll
    assert parts.hosts.manages("box") and not parts.hosts.manages("local")
    with pytest.raises(HostInputError, match="already exists"):
        parts.hosts.validate(AddHostRequest(name="box", target="elsewhere"))
    with pytest.raises(HostInputError, match="bad target"):
        parts.hosts.validate(AddHostRequest(name="other", target="bad target"))


async def test_a_failed_add_leaves_nothing(parts: Parts, links: FakeLinks) -> None:
    links.switches.refuse_add = "the box said no (test)"
    events = await add(parts)
    assert events[-1].kind == "error" and events[-1].message == "the box said no (test)"
    assert "box" not in parts.fleet.hosts and parts.store.get_remote("box") is None
    assert ("forget", "box") in links.calls and ("close", "box") in links.calls
    assert not any("added" in m for m in parts.messages())


async def test_restore_after_a_restart_then_unreachable_box_comes_back(tmp_path: Path,
                                                                        links: FakeLinks) -> None:
    first = await start_parts(tmp_path / "state.db", links)
    try:
        assert (await add(first))[-1].kind == "done"
    finally:
        await first.close()

    again = await start_parts(tmp_path / "state.db", links)  # the controller restarted: same DB
    try:
        await again.hosts.restore()
        assert again.fleet.hosts["box"].state == "ready"
        assert ("connect", "box") in links.calls
    finally:
        await again.close()

    links.switches.reachable = False  # restarted while the box does not answer
    held = await start_parts(tmp_path / "state.db", links)
    try:
        await held.hosts.restore()
        host = held.fleet.hosts["box"]
        assert host.state == "unreachable" and host.message == "tester@box.example does not answer (test)"
        assert "host box is unreachable: tester@box.example does not answer (test)" in held.messages()
        links.switches.reachable = True  # retried 2 s later
        await eventually(lambda: held.fleet.hosts["box"].state == "ready", 15, "the retry to reconnect")
        assert held.fleet.hosts["box"] is not host
    finally:
        await held.close()


async def test_link_down_marks_unreachable_at_once_and_back_when_mended(tmp_path: Path,
                                                                         links: FakeLinks) -> None:
    parts = await start_parts(tmp_path / "state.db", links, poll_seconds=60)  # only the link tells
    try:
        assert (await add(parts))[-1].kind == "done"
        link, host = links.made[-1], parts.fleet.hosts["box"]
        assert host.state == "ready"
        link.set_up(False)
        await eventually(lambda: host.state == "unreachable", 2, "the cut link to take the host out")
        assert host.message == "the fake link was cut" and host.unreachable_since is not None
        link.set_up(True)
        await eventually(lambda: host.state == "ready", 5, "the mended link to bring the host back")
        assert host.message is None and host.unreachable_since is None
    finally:
        await parts.close()


async def test_an_agent_that_stops_answering_is_restarted_through_the_link(
        parts: Parts, links: FakeLinks, agent: Agent) -> None:
    assert (await add(parts))[-1].kind == "done"
    host = parts.fleet.hosts["box"]
    agent.kill()
    await eventually(lambda: ("restart_agent", "box") in links.calls, 20, "the manager to restart the agent")
    await eventually(lambda: host.state == "ready", 20, "the restarted agent to answer")
    assert ("the agent on box stopped answering; restarted it through the fake link (its replicas are "
            "re-adopted)") in parts.messages()


async def test_remove_drains_the_replicas_then_cleans_up_through_the_link(
        parts: Parts, links: FakeLinks, agent: Agent) -> None:
    assert (await add(parts))[-1].kind == "done"
    artifact, tar = bundle_context(requirements="", commands=[])
    with agent.client(timeout=300) as client:
        built = read_events(client.post("/v1/builds", params={"runtime": "process", "artifact": artifact},
                                        content=tar))
    assert built[-1]["kind"] == "done", built[-5:]
    async with AsyncAgentClient(agent.url, links.made[-1].token, timeout=60) as client:
        request = ReplicaRequest.model_validate(replica_request("process", artifact))
        replica = await client.create_replica(request)
        host = parts.fleet.hosts["box"]
        await eventually(lambda: replica.id in host.replicas, 10, "the poll to see the replica")

        moved, deleted = await parts.hosts.remove("box", purge=True)  # no API record: nowhere to move

        assert (moved, deleted) == (0, 1)
        gone = (ReplicaState.STOPPING, ReplicaState.STOPPED)
        left = [r for r in await client.replicas() if r.state not in gone]
        assert left == []
    assert "box" not in parts.fleet.hosts
    assert parts.store.get_remote("box") is None and parts.hosts.manages("box") is False
    assert ("uninstall", True) in links.calls and ("forget", "box") in links.calls
    assert links.calls.index(("forget", "box")) < links.calls.index(("uninstall", True))
    assert "host box removed (0 replica(s) moved, 1 deleted, purged)" in parts.messages()


async def test_upgrade_goes_through_the_link_and_a_refusal_is_its_message(
        parts: Parts, links: FakeLinks) -> None:
    assert (await add(parts))[-1].kind == "done"
    events = [e async for e in parts.hosts.upgrade("box")]
    assert [e.kind for e in events] == ["step", "done"], events
    assert events[-1].message == f"box runs agent {__version__}"
    record = parts.store.get_remote("box")
    assert record is not None and record.agent_version == "9.9.9"
    assert f"host box upgraded to agent {__version__}" in parts.messages()

    links.switches.refuse_upgrade = "box cannot be upgraded from here (test)"
    refused = [e async for e in parts.hosts.upgrade("box")]
    assert [(e.kind, e.message) for e in refused] == [("error", "box cannot be upgraded from here (test)")]
    links.switches.refuse_upgrade = None
    unknown = [e async for e in parts.hosts.upgrade("nope")]
    assert [(e.kind, e.message) for e in unknown] == [
        ("error", "nope is not connected; wait until it is ready")]


# -- prices and idle rules go with the host ------------------------------------------------------------
async def test_a_price_given_at_add_is_kept_and_a_failed_add_keeps_none(parts: Parts,
                                                                       links: FakeLinks) -> None:
    from decimal import Decimal

    links.switches.refuse_add = "the box said no (test)"
    assert (await add(parts, price="2.40"))[-1].kind == "error"
    assert parts.store.prices() == {}
    links.switches.refuse_add = None
    events = await add(parts, price="2.40", currency="eur")
    assert events[-1].kind == "done"
    [price] = parts.store.prices().values()
    assert (price.host, price.price_micros, price.currency) == ("box", 2_400_000, "EUR")
    assert any("host box added" in m and "€2.40/h" in m for m in parts.messages())
    assert events[-1].result is not None  # the manager's default describe: no price there
    assert Decimal("2.40") == Decimal(price.price_micros) / 1_000_000


async def test_removing_a_host_takes_its_idle_rule_and_price_with_it(parts: Parts) -> None:
    from workbench.controller.state import IdleRuleRecord

    assert (await add(parts, price="1.10"))[-1].kind == "done"
    parts.store.put_idle_rule(IdleRuleRecord(host="box", after_seconds=60, util_threshold=5,
                                             command="true", remove=True))
    await parts.hosts.remove("box", purge=False)
    assert parts.store.idle_rules() == {} and parts.store.prices() == {}
    assert "host box removed (0 replica(s) moved, 0 deleted, its idle rule with it)" in parts.messages()
    assert (await add(parts))[-1].kind == "done"  # added again: no rule, no price from before
    assert parts.store.idle_rules() == {} and parts.store.prices() == {}


async def test_an_idle_rule_with_remove_drains_removes_then_runs_the_command(
        parts: Parts, links: FakeLinks, tmp_path: Path) -> None:
    """The fleet meter (real router counters, a real agent without GPUs) judges the box idle after
    a second without requests: the idle watcher removes it, then runs the command once with the
    host's name and address."""
    import json
    import sys

    from workbench.controller.idle import IdleWatcher
    from workbench.controller.metering import FleetMeter
    from workbench.controller.state import IdleRuleRecord
    from workbench.controller.usage import UsageMeter

    assert (await add(parts, price="0.90"))[-1].kind == "done"
    marker = tmp_path / "marker"
    script = tmp_path / "stop-box"
    script.write_text(f"#!{sys.executable}\nimport json, os\n"
                      f"open({str(marker)!r}, 'a').write(json.dumps([os.environ['WORKBENCH_HOST_NAME'], "
                      "os.environ['WORKBENCH_HOST_ADDRESS']]) + '\\n')\nprint('stopped it')\n")
    script.chmod(0o755)
    parts.store.put_idle_rule(IdleRuleRecord(host="box", after_seconds=1.0, util_threshold=5,
                                             command=str(script), remove=True))
    idle = IdleWatcher(parts.store, parts.events, remove_host=lambda name: parts.hosts.remove(name, False))
    meter = FleetMeter(parts.store, parts.fleet, parts.router, UsageMeter(parts.store), idle)
    task = asyncio.create_task(meter.run())
    try:
        await eventually(lambda: "box" not in parts.fleet.hosts, 30, "the idle box to be removed")
        await eventually(lambda: marker.exists(), 30, "the idle command to run")
        await idle.wait()
        await asyncio.sleep(2.5)  # a few more ticks: nothing runs twice
    finally:
        task.cancel()
        await meter.close()
    assert [json.loads(line) for line in marker.read_text().splitlines()] == [["box", "tester@box.example"]]
    said = parts.messages()
    assert any(m.startswith("host box is idle") for m in said)
    removing = next(i for i, m in enumerate(said) if "draining and removing it" in m)
    removed = next(i for i, m in enumerate(said) if m.startswith("host box removed"))
    ran = next(i for i, m in enumerate(said) if m == "the idle command for box exited 0: stopped it")
    assert removing < removed < ran
    assert parts.store.idle_rules() == {} and parts.store.get_remote("box") is None
