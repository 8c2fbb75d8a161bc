"""Tunnels to one box: local ports on 127.0.0.1 that reach ports as seen from the box.

Two implementations (docs/remote.md, Tunnels): Paramiko's in-process forward over the box's one SSH
connection (the default), or OpenSSH's `ssh -N -L` children pinned to the keys that connection
verified (one per port; they fall back to Paramiko when ssh cannot start).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from workbench.remote.connection import SSHHost
from workbench.remote.errors import RemoteError
from workbench.remote.openssh import OpenSSHForward

TunnelKind = Literal["paramiko", "openssh"]
#: The faster tunnel for prediction-sized requests (bench/tunnel.py, docs/benchmarks.md), and the
#: one that keeps ONE connection per box: Paramiko. `openssh` (ssh -L pinned to the verified key)
#: moved 1 MB bodies faster in the same run; it falls back to Paramiko when ssh cannot start.
DEFAULT_TUNNEL: TunnelKind = "paramiko"
log = logging.getLogger(__name__)


class Tunnels:
    """The forwards of one box, created once per (host, port) and kept until `close()`."""

    def __init__(self, ssh: SSHHost, kind: TunnelKind = DEFAULT_TUNNEL) -> None:
        if kind not in ("paramiko", "openssh"):
            raise RemoteError(f"tunnel must be 'paramiko' or 'openssh', not {kind!r}")
        self.ssh = ssh
        self.kind: TunnelKind = kind
        self._openssh: dict[tuple[str, int], OpenSSHForward] = {}
        self._lock = threading.Lock()

    def local_port(self, remote_host: str, remote_port: int) -> int:
        """A local port reaching remote_host:remote_port as seen from the box (created once)."""
        if self.kind == "paramiko":
            return self.ssh.forward(remote_host, remote_port)
        key = (remote_host, remote_port)
        with self._lock:
            forward = self._openssh.get(key)
            if forward is None:
                try:
                    forward = OpenSSHForward(self.ssh.verified_keys(), remote_host, remote_port)
                except RemoteError as error:  # no ssh client, a key only Paramiko can unlock, ...
                    log.warning("openssh tunnel to %s unavailable (%s); using paramiko",
                                self.ssh.settings.display, error)
                    return self.ssh.forward(remote_host, remote_port)
                self._openssh[key] = forward
        forward.ensure()
        return forward.port

    def url(self, remote_url: str) -> str:
        """Map a URL on the box (a replica's `http://127.0.0.1:PORT/...`) to a local forwarded URL."""
        parts = urlsplit(remote_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.port is None:
            raise RemoteError(f"{remote_url!r} is not an http(s)://HOST:PORT URL")
        port = self.local_port(parts.hostname, parts.port)
        return urlunsplit((parts.scheme, f"127.0.0.1:{port}", parts.path, parts.query, parts.fragment))

    def reopen(self) -> None:
        """After a reconnect: restart `ssh -L` children that died with the old connection.
        (Paramiko's forwards open a channel on the current connection per accepted socket.)"""
        with self._lock:
            forwards = list(self._openssh.values())
        for forward in forwards:
            with contextlib.suppress(RemoteError):  # retried on the next reconnect or use
                forward.ensure()

    def close(self) -> None:
        """Stop the `ssh -L` children (Paramiko's forwards close with the connection)."""
        with self._lock:
            forwards, self._openssh = list(self._openssh.values()), {}
        for forward in forwards:
            forward.close()
