"""`RemoteHost`: what the controller uses for one SSH box — connection, agent URL + token,
replica endpoints, state — all carried by ONE SSH connection (or by `ssh -L` children)."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from workbench.remote import install as installer
from workbench.remote.auth import Passphrase
from workbench.remote.connection import HostState, SSHHost, StateName
from workbench.remote.errors import RemoteError
from workbench.remote.hostkeys import KnownHosts
from workbench.remote.openssh import OpenSSHForward
from workbench.remote.preflight import Check, preflight
from workbench.remote.sshconfig import HostSettings, resolve

from workbench.clients.agent import AgentClient

TunnelKind = Literal["paramiko", "openssh"]
#: The faster tunnel for prediction-sized requests (bench/tunnel.py, docs/benchmarks.md), and the
#: one that keeps ONE connection per box: Paramiko. `openssh` (ssh -L pinned to the verified key)
#: moved 1 MB bodies faster in the same run; it falls back to Paramiko when ssh cannot start.
DEFAULT_TUNNEL: TunnelKind = "paramiko"
log = logging.getLogger(__name__)


class RemoteHost:
    """One box: `connect()`, then `agent_url` / `agent_token` / `endpoint_url()`; `close()`."""

    def __init__(self, target: str, *, identity: Path | str | None = None, jump: str | None = None,
                 trust: str | None = None, known_hosts: KnownHosts | None = None,
                 ssh_config: Path | None = None, passphrase: Passphrase | None = None,
                 tunnel: TunnelKind = DEFAULT_TUNNEL, keepalive: int = 5) -> None:
        if tunnel not in ("paramiko", "openssh"):
            raise RemoteError(f"tunnel must be 'paramiko' or 'openssh', not {tunnel!r}")
        self.settings: HostSettings = resolve(target, identity=identity, jump=jump, config_path=ssh_config)
        self.tunnel: TunnelKind = tunnel
        self.ssh = SSHHost(self.settings, known_hosts=known_hosts, trust=trust, passphrase=passphrase,
                           keepalive=keepalive)
        self.ssh.on_state(self._state_changed)
        self._access: installer.AgentAccess | None = None
        self._openssh: dict[tuple[str, int], OpenSSHForward] = {}
        self._lock = threading.Lock()

    # -- connection ----------------------------------------------------------------------------
    def connect(self) -> RemoteHost:
        """Open the SSH connection (host key verified) and find the installed agent, if any."""
        self.ssh.connect()
        self._access = installer.access(self.ssh)
        return self

    @property
    def state(self) -> StateName:
        return self.ssh.state

    @property
    def last_seen(self) -> float | None:
        return self.ssh.last_seen

    def on_state(self, callback: Callable[[HostState], None]) -> None:
        self.ssh.on_state(callback)

    def _state_changed(self, state: HostState) -> None:
        if state.state == "connected":
            with self._lock:
                forwards = list(self._openssh.values())
            for forward in forwards:
                with contextlib.suppress(RemoteError):  # retried on the next reconnect or use
                    forward.ensure()

    # -- the agent -----------------------------------------------------------------------------
    def preflight(self) -> list[Check]:
        return preflight(self.ssh)

    def install(self, *, online: bool = False, progress: installer.Progress | None = None,
                port: int | None = None) -> installer.AgentAccess:
        self._access = installer.install(self.ssh, online=online, progress=progress, port=port)
        return self._access

    def needs_upgrade(self) -> bool:
        return installer.needs_upgrade(self.ssh)

    def installed_version(self) -> str | None:
        return installer.installed_version(self.ssh)

    def upgrade(self, *, online: bool = False,
                progress: installer.Progress | None = None) -> installer.AgentAccess:
        self._access = installer.upgrade(self.ssh, online=online, progress=progress)
        return self._access

    def remove(self, *, purge: bool = False, progress: installer.Progress | None = None) -> None:
        self._close_openssh()
        installer.remove(self.ssh, purge=purge, progress=progress)
        self._access = None

    def _require_access(self) -> installer.AgentAccess:
        if self._access is None:
            raise RemoteError(f"no workbench agent is installed on {self.settings.display}; "
                              "install it first (workbench host add / RemoteHost.install)")
        return self._access

    @property
    def agent_url(self) -> str:
        """The agent's API as a local URL (through the tunnel)."""
        return self.endpoint_url(f"http://127.0.0.1:{self._require_access().port}")

    @property
    def agent_token(self) -> str:
        return self._require_access().token

    def agent_client(self, timeout: float = 30.0) -> AgentClient:
        return AgentClient(self.agent_url, self.agent_token, timeout=timeout)

    # -- forwards ------------------------------------------------------------------------------
    def local_port(self, remote_host: str, remote_port: int) -> int:
        """A local port reaching remote_host:remote_port as seen from the box (created once)."""
        if self.tunnel == "paramiko":
            return self.ssh.forward(remote_host, remote_port)
        key = (remote_host, remote_port)
        with self._lock:
            forward = self._openssh.get(key)
            if forward is None:
                try:
                    forward = OpenSSHForward(self.ssh.verified_keys(), remote_host, remote_port)
                except RemoteError as error:  # no ssh client, a key only Paramiko can unlock, ...
                    log.warning("openssh tunnel to %s unavailable (%s); using paramiko",
                                self.settings.display, error)
                    return self.ssh.forward(remote_host, remote_port)
                self._openssh[key] = forward
        forward.ensure()
        return forward.port

    def endpoint_url(self, remote_url: str) -> str:
        """Map a URL on the box (a replica's `http://127.0.0.1:PORT/...`) to a local forwarded URL."""
        parts = urlsplit(remote_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.port is None:
            raise RemoteError(f"{remote_url!r} is not an http(s)://HOST:PORT URL")
        port = self.local_port(parts.hostname, parts.port)
        return urlunsplit((parts.scheme, f"127.0.0.1:{port}", parts.path, parts.query, parts.fragment))

    def _close_openssh(self) -> None:
        with self._lock:
            forwards, self._openssh = list(self._openssh.values()), {}
        for forward in forwards:
            forward.close()

    def close(self) -> None:
        self._close_openssh()
        self.ssh.close()

    def __enter__(self) -> RemoteHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
