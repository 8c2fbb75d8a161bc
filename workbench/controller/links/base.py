"""`HostLink`: how the controller reaches one host — its agent, the replicas on it, its lifecycle.

httpx hides HTTP/1, HTTP/2 and mock transports behind one small interface; the controller hides
"the agent on this machine", "a box over SSH" and "an agent on the LAN" (direct mode) behind this
one. Nothing above a link asks which kind it is: `kind` is a label for lists and `host show`.

The fleet uses `agent_client`, `endpoint`, `state` and `watch`; the host manager uses the
lifecycle (`add`, `connect`, `upgrade`, `restart_agent`, `uninstall`, `forget`, `close`). Methods
that stream progress take `emit` (callable from any thread) and report with `HostEvent`s.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from workbench.clients.agent import AsyncAgentClient
from workbench.controller.state import RemoteRecord
from workbench.weights.transfer import AgentApiSender, BlobSender
from workbench.wire.control import HostEvent
from workbench.wire.errors import BadRequest, Failed
from workbench.wire.model_cache import PrepareAnswer

Emit = Callable[[HostEvent], None]


class LinkRefused(BadRequest):
    """The link cannot do this (now, or for this kind of host); nothing was done, and the message
    says what to do instead."""


class HostInputError(BadRequest):
    """The request to add a host is wrong (400); nothing was done."""


class HostFailed(Failed):
    """A step failed; the message says what to do (becomes the stream's error event)."""


@dataclass(frozen=True)
class LinkState:
    """Whether the way to the host is up, when it was last seen up, and why it is down."""

    connected: bool
    last_seen: float | None = None
    message: str | None = None


#: a link that never goes down (nothing between the controller and the agent but a socket)
ALWAYS_UP = LinkState(connected=True)


@dataclass(frozen=True)
class ReplicaEndpoint:
    """What the router uses for one replica on the host: its URL, the headers every request to it
    carries, and the CA file that verifies it (TLS)."""

    url: str
    headers: tuple[tuple[str, str], ...] = ()
    ca_cert: str | None = None


@dataclass(frozen=True)
class Joined:
    """What a link learned while adding its host: the record to keep, and how to describe it."""

    record: RemoteRecord
    summary: str  #: in "host NAME added (SUMMARY, agent VERSION)"
    done: str  #: the stream's last message


@dataclass(frozen=True)
class Notice:
    """An event the controller records about a host (e.g. its agent's version differs)."""

    message: str
    data: dict[str, object] = field(default_factory=dict)


class HostLink(ABC):
    """One host's link. `name` is the host's name in the fleet; `address` what the user typed."""

    kind: str = "local"

    def __init__(self, name: str, address: str) -> None:
        self.name = name
        self.address = address
        self._watchers: list[Callable[[LinkState], None]] = []

    # -- the agent and the replicas -------------------------------------------------------------
    @property
    @abstractmethod
    def agent_url(self) -> str:
        """Where the agent's API answers, from the controller's side of the link."""

    @property
    @abstractmethod
    def token(self) -> str:
        """The agent's bearer token (never logged)."""

    @property
    def verify(self) -> bool | str | Path:
        """How the agent's TLS certificate is checked (a CA file, or the system's store)."""
        return True

    def agent_client(self, timeout: float) -> AsyncAgentClient:
        return AsyncAgentClient(self.agent_url, self.token, timeout=timeout, verify=self.verify)

    @abstractmethod
    def endpoint(self, replica_url: str, replica_id: str) -> ReplicaEndpoint:
        """What the router uses for a replica that listens at `replica_url` on the host."""

    def blob_sender(self, client: AsyncAgentClient, prepared: PrepareAnswer) -> BlobSender:
        """How model files from this machine reach the host's cache (the agent's API, by default)."""
        return AgentApiSender(client)

    # -- state ----------------------------------------------------------------------------------
    @property
    def state(self) -> LinkState:
        return ALWAYS_UP

    def watch(self, callback: Callable[[LinkState], None]) -> None:
        """Call `callback(state)` on the controller's event loop whenever the link goes down or
        comes back (never, for a link that cannot go down)."""
        self._watchers.append(callback)

    def _changed(self, state: LinkState, loop: asyncio.AbstractEventLoop) -> None:
        """Tell the watchers, on `loop` (safe to call from any thread)."""
        for callback in list(self._watchers):
            loop.call_soon_threadsafe(callback, state)

    # -- lifecycle ------------------------------------------------------------------------------
    async def add(self, emit: Emit) -> Joined:
        """Make the host part of the fleet for the first time (install, check, keep secrets)."""
        raise LinkRefused(f"{self.name} cannot be added")

    async def connect(self) -> None:
        """Reach a host that was added before (after a controller restart); HostFailed says why not."""
        return None  # nothing to do, unless the link says otherwise

    async def outdated(self) -> Notice | None:
        """A notice when the host's agent is not the workstation's version (checked after connect)."""
        return None

    async def upgrade(self, emit: Emit) -> str:
        """Replace the host's agent with the workstation's version; returns the version installed."""
        raise LinkRefused(f"{self.name} cannot be upgraded from here")

    async def restart_agent(self) -> str | None:
        """Start the host's agent again when it stopped answering while the link is up; says what
        was done (for the event), or None when nothing could be."""
        return None

    async def uninstall(self, purge: bool) -> None:
        """Remove what was installed on the host (with purge: everything workbench keeps there)."""
        return None  # nothing to do, unless the link says otherwise

    def forget(self) -> None:
        """Delete what the controller keeps about the host besides its record (secrets on disk)."""
        return None  # nothing to do, unless the link says otherwise

    async def close(self) -> None:
        """Release the link (connections, tunnels); the host's clients are closed by the fleet."""
        return None  # nothing to do, unless the link says otherwise
