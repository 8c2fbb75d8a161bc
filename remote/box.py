"""`SSHBox`: one rented box as the workstation sees it — its SSH connection (host key verified),
the agent installed on it (install, upgrade, remove, restart, URL + token) and the tunnels to the
agent and the replicas — all carried by ONE SSH connection (or by `ssh -L` children)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from workbench.remote import daemon
from workbench.remote import install as installer
from workbench.remote.auth import Passphrase
from workbench.remote.connection import HostState, SSHHost, StateName
from workbench.remote.errors import RemoteError
from workbench.remote.hostkeys import KnownHosts
from workbench.remote.preflight import Check, preflight
from workbench.remote.sshconfig import HostSettings, resolve
from workbench.remote.tunnel import DEFAULT_TUNNEL, TunnelKind, Tunnels

from workbench.clients.agent import AgentClient


class SSHBox:
    """One box: `connect()`, then `agent_url` / `agent_token` / `endpoint_url()`; `close()`."""

    def __init__(self, target: str, *, identity: Path | str | None = None, jump: str | None = None,
                 trust: str | None = None, known_hosts: KnownHosts | None = None,
                 ssh_config: Path | None = None, passphrase: Passphrase | None = None,
                 tunnel: TunnelKind = DEFAULT_TUNNEL, keepalive: int = 5) -> None:
        if tunnel not in ("paramiko", "openssh"):
            raise RemoteError(f"tunnel must be 'paramiko' or 'openssh', not {tunnel!r}")
        self.settings: HostSettings = resolve(target, identity=identity, jump=jump, config_path=ssh_config)
        self.ssh = SSHHost(self.settings, known_hosts=known_hosts, trust=trust, passphrase=passphrase,
                           keepalive=keepalive)
        self.tunnels = Tunnels(self.ssh, tunnel)
        self.ssh.on_state(self._state_changed)
        self._access: installer.AgentAccess | None = None

    # -- connection ----------------------------------------------------------------------------
    def connect(self) -> SSHBox:
        """Open the SSH connection (host key verified) and find the installed agent, if any."""
        self.ssh.connect()
        self._access = installer.access(self.ssh)
        return self

    @property
    def tunnel(self) -> TunnelKind:
        return self.tunnels.kind

    @property
    def state(self) -> StateName:
        return self.ssh.state

    @property
    def last_seen(self) -> float | None:
        return self.ssh.last_seen

    def on_state(self, callback: Callable[[HostState], None]) -> None:
        """`callback(HostState)` on every change of the connection (called from its monitor thread)."""
        self.ssh.on_state(callback)

    def _state_changed(self, state: HostState) -> None:
        if state.state == "connected":
            self.tunnels.reopen()

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

    def restart_agent(self) -> bool:
        """Start the agent's daemon when it is gone (its replicas keep running and are re-adopted).
        True when it was started; False when it runs, or no agent is configured on the box."""
        layout = installer.layout_of(self.ssh)
        config = installer.read_config(self.ssh, layout)
        if config is None or daemon.running_pid(self.ssh, layout) is not None:
            return False
        daemon.start(self.ssh, layout, config.port)
        return True

    def remove(self, *, purge: bool = False, progress: installer.Progress | None = None) -> None:
        self.tunnels.close()
        installer.remove(self.ssh, purge=purge, progress=progress)
        self._access = None

    def _require_access(self) -> installer.AgentAccess:
        if self._access is None:
            raise RemoteError(f"no workbench agent is installed on {self.settings.display}; "
                              "install it first (workbench host add / SSHBox.install)")
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

    # -- tunnels -------------------------------------------------------------------------------
    def local_port(self, remote_host: str, remote_port: int) -> int:
        """A local port reaching remote_host:remote_port as seen from the box (created once)."""
        return self.tunnels.local_port(remote_host, remote_port)

    def endpoint_url(self, remote_url: str) -> str:
        """Map a URL on the box (a replica's `http://127.0.0.1:PORT/...`) to a local forwarded URL."""
        return self.tunnels.url(remote_url)

    def close(self) -> None:
        self.tunnels.close()
        self.ssh.close()

    def __enter__(self) -> SSHBox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
