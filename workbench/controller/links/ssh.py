"""A box over SSH (workbench.remote.box.SSHBox): one verified connection carries the agent's API,
every replica's port, and the commands that install, upgrade, restart and remove the agent.

The SSH work is blocking and runs in threads; its progress comes back as HostEvents through
`emit`, the connection's ups and downs through `watch`. The agent's token is never stored by the
controller: it is read over SSH (the agent's config.json on the box) at every connect.
"""

from __future__ import annotations

import asyncio
import posixpath
from dataclasses import asdict
from pathlib import Path
from typing import Literal

from workbench import __version__
from workbench.clients.agent import AsyncAgentClient
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
from workbench.controller.state import RemoteRecord
from workbench.remote.blobs import sftp_append
from workbench.remote.box import SSHBox
from workbench.remote.connection import HostState
from workbench.remote.errors import AuthFailed, HostKeyChanged, RemoteError, UnknownHostKey
from workbench.remote.preflight import ok
from workbench.remote.sshconfig import resolve
from workbench.weights.transfer import AgentApiSender, BlobSender, OnChunk
from workbench.wire.control import AddHostRequest, HostEvent
from workbench.wire.model_cache import BlobState, PrepareAnswer

#: How model files from the workstation reach a box, on its one SSH connection: the agent's API
#: through the tunnel, or SFTP into the agent's partial folder. bench/model_cache.py measures both
#: against scp on the same sshd (docs/benchmarks.md, 1 GiB): the agent's API through the Paramiko
#: tunnel reached 0.68x of scp, SFTP (Paramiko's, plus the check reading the file again) 0.56x.
ModelTransfer = Literal["sftp", "agent"]
MODEL_TRANSFER: ModelTransfer = "agent"

#: where the clients of a box that is not connected point: the discard port, where nothing
#: listens, so their calls fail like those to any unreachable agent
NOWHERE = "http://127.0.0.1:9"


def validate(request: AddHostRequest) -> None:
    """Refuse (HostInputError) a request SSH cannot use; nothing is contacted."""
    if request.token or request.ca_cert:
        raise HostInputError("--token-file and --ca-cert are for direct mode (add --direct)")
    if request.identity and not Path(request.identity).expanduser().is_file():
        raise HostInputError(f"identity file {request.identity} does not exist")
    try:
        resolve(request.target, identity=request.identity, jump=request.jump)
    except (RemoteError, ValueError) as error:
        raise HostInputError(f"bad target {request.target!r}: {error}") from None


def connect_box(box: SSHBox, name: str, emit: Emit) -> None:
    """Connect with verified host keys; every refusal becomes a HostFailed with the fix."""
    emit(HostEvent(kind="step", host=name, step="connect", message=f"connecting to {box.settings.display}"))
    try:
        box.connect()
    except UnknownHostKey as error:
        emit(HostEvent(kind="trust_required", host=name, message=str(error),
                       fingerprint=error.fingerprint, key_type=error.key_type))
        fingerprint = error.fingerprint
        raise HostFailed(f"the host key of {error.host} is not known; check its {error.key_type} "
                         f"fingerprint {fingerprint} and re-run with --trust {fingerprint}") from None
    except (HostKeyChanged, AuthFailed) as error:
        raise HostFailed(str(error)) from None
    except RemoteError as error:
        raise HostFailed(f"cannot connect to {box.settings.display}: {error}") from None


def _silent(event: HostEvent) -> None:
    pass


class SftpSender:
    """A model file over SFTP into the agent's partial folder, then checked by the agent."""

    via = "sftp"

    def __init__(self, box: SSHBox, client: AsyncAgentClient, partial_dir: str) -> None:
        self.box, self.client, self.partial_dir = box, client, partial_dir

    async def send(self, sha256: str, size: int, source: Path, offset: int, on_chunk: OnChunk) -> BlobState:
        remote = posixpath.join(self.partial_dir, f"{sha256}.part")
        await asyncio.to_thread(sftp_append, self.box.ssh, source, remote, on_chunk)
        return await self.client.finish_blob(sha256, size)


class SSHLink(HostLink):
    """One box reached over SSH; `add` connects, checks and installs, `connect` reconnects."""

    kind = "ssh"

    def __init__(self, name: str, target: str, *, identity: str | None = None, jump: str | None = None,
                 trust: str | None = None, online: bool = False, port: int | None = None) -> None:
        super().__init__(name, target)
        self.identity, self.jump, self.trust = identity, jump, trust
        self.online, self.port = online, port
        self.box: SSHBox | None = None
        self._agent_url: str | None = None  # through the tunnel, once the agent was found
        self._token = ""
        self._endpoints: dict[str, ReplicaEndpoint] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.model_transfer: ModelTransfer = MODEL_TRANSFER

    @classmethod
    def from_request(cls, request: AddHostRequest) -> SSHLink:
        return cls(request.name, request.target, identity=request.identity, jump=request.jump,
                   trust=request.trust, online=request.online, port=request.port)

    @classmethod
    def from_record(cls, record: RemoteRecord) -> SSHLink:
        return cls(record.name, record.target, identity=record.identity, jump=record.jump)

    def _open(self) -> SSHBox:
        box = SSHBox(self.address, identity=self.identity, jump=self.jump, trust=self.trust)
        box.on_state(self._box_state)
        self.box = box
        return box

    def _found(self, box: SSHBox) -> None:
        """The agent is installed and known: its URL through the tunnel and its token."""
        self._agent_url, self._token = box.agent_url, box.agent_token

    # -- the agent and the replicas -------------------------------------------------------------
    @property
    def agent_url(self) -> str:
        return self._agent_url or NOWHERE

    @property
    def token(self) -> str:
        return self._token

    def endpoint(self, replica_url: str, replica_id: str) -> ReplicaEndpoint:
        """The replica's port forwarded to this machine (the forward is opened once)."""
        found = self._endpoints.get(replica_url)
        if found is None:
            if self.box is None:
                raise HostFailed(f"{self.name} is not connected")
            found = self._endpoints[replica_url] = ReplicaEndpoint(self.box.endpoint_url(replica_url))
        return found

    def blob_sender(self, client: AsyncAgentClient, prepared: PrepareAnswer) -> BlobSender:
        """SFTP on the box's connection (or the agent's API through its tunnel), see MODEL_TRANSFER."""
        if self.model_transfer == "sftp" and self.box is not None and prepared.partial_dir:
            return SftpSender(self.box, client, prepared.partial_dir)
        return AgentApiSender(client)

    # -- state ----------------------------------------------------------------------------------
    @property
    def state(self) -> LinkState:
        box = self.box
        return LinkState(connected=box is not None and box.state == "connected",
                         last_seen=box.last_seen if box is not None else None,
                         message=f"SSH link to {self.address} is down")

    def _box_state(self, state: HostState) -> None:
        """From the connection's monitor thread: it went down or came back."""
        if self._loop is None:
            return
        message = None if state.state == "connected" else state.error or f"SSH link to {self.address} lost"
        self._changed(LinkState(state.state == "connected", state.last_seen, message), self._loop)

    # -- lifecycle ------------------------------------------------------------------------------
    async def add(self, emit: Emit) -> Joined:
        """Connect (host key verified), preflight (a failed check stops with its fix), install."""
        self._loop = asyncio.get_running_loop()

        def work() -> Joined:
            box = self._open()
            connect_box(box, self.name, emit)
            emit(HostEvent(kind="step", host=self.name, step="preflight", message="checking the box"))
            checks = box.preflight()
            emit(HostEvent(kind="preflight", host=self.name, checks=[asdict(c) for c in checks],
                           message="preflight " + ("passed" if ok(checks) else "failed")))
            if not ok(checks):
                fixes = "; ".join(f"{c.name}: {c.detail} — fix: {c.fix or 'see docs/remote.md'}"
                                  for c in checks if c.status == "fail")
                raise HostFailed(f"preflight failed on {box.settings.display}: {fixes}")
            access = box.install(online=self.online, port=self.port, progress=lambda step, detail:
                                 emit(HostEvent(kind="step", host=self.name, step=step, message=detail)))
            self._found(box)
            record = RemoteRecord(name=self.name, target=self.address, identity=self.identity, jump=self.jump,
                                  kind=self.kind, agent_port=access.port, agent_version=access.version)
            return Joined(record, summary=self.address, done=f"{self.name} is part of the fleet")

        return await asyncio.to_thread(work)

    async def connect(self) -> None:
        """Reconnect to the box and find its agent (installed before); HostFailed says why not."""
        self._loop = asyncio.get_running_loop()

        def work() -> None:
            box = self._open()
            connect_box(box, self.name, _silent)
            try:
                self._found(box)
            except RemoteError as error:  # no agent installed there (any more)
                raise HostFailed(str(error)) from None

        await asyncio.to_thread(work)

    async def outdated(self) -> Notice | None:
        box = self.box
        if box is None:
            return None
        try:
            version = await asyncio.to_thread(box.installed_version)
        except RemoteError:
            return None
        if version is None or version == __version__:
            return None
        return Notice(f"host {self.name} runs agent {version}, the workstation {__version__}: run "
                      f"`workbench host upgrade {self.name}`",
                      {"host": self.name, "agent_version": version, "upgrade": True})

    async def upgrade(self, emit: Emit) -> str:
        box = self.box
        if box is None or self._agent_url is None:
            raise LinkRefused(f"{self.name} is not connected; wait until it is ready")

        def work() -> str:
            before = box.installed_version()
            emit(HostEvent(kind="step", host=self.name, step="check",
                           message=f"installed {before or 'nothing'}, workstation {__version__}"))
            access = box.upgrade(progress=lambda step, detail:
                                 emit(HostEvent(kind="step", host=self.name, step=step, message=detail)))
            return access.version

        return await asyncio.to_thread(work)

    async def restart_agent(self) -> str | None:
        """Nothing on the box restarts a daemon-mode agent: start it again through SSH."""
        box = self.box
        if box is None:
            return None
        try:
            started = await asyncio.to_thread(box.restart_agent)
        except RemoteError as error:
            raise HostFailed(str(error)) from None
        return "restarted it over SSH" if started else None

    async def uninstall(self, purge: bool) -> None:
        box = self.box
        if box is not None and box.state == "connected":
            await asyncio.to_thread(box.remove, purge=purge)

    async def close(self) -> None:
        if self.box is not None:
            await asyncio.to_thread(self.box.close)
