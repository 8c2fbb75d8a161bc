"""One SSH connection per box: verified host key, key auth, commands, SFTP, forwards, reconnect."""

from __future__ import annotations

import contextlib
import logging
import shlex
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import paramiko
from workbench.remote.auth import Passphrase, authenticate
from workbench.remote.errors import AuthFailed, HostKeyChanged, RemoteCommandError, RemoteError, Unreachable
from workbench.remote.forward import LocalForward
from workbench.remote.hostkeys import KnownHosts
from workbench.remote.sshconfig import HostSettings

log = logging.getLogger(__name__)
StateName = Literal["connecting", "connected", "unreachable", "closed"]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class HostState:
    """What on_state callbacks receive."""

    state: StateName
    last_seen: float | None
    error: str | None = None


#: AES-GCM first: one AEAD call per packet where AES-CTR takes a cipher call and an HMAC — about
#: 6x less CPU per byte in Paramiko's one packet thread, which bounds what a tunnel carries (a model
#: file sent to a box's agent); a server without them negotiates the rest of Paramiko's list
AEAD_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


def _open_transport(settings: HostSettings, sock: socket.socket | paramiko.Channel, known: KnownHosts,
                    trust: str | None, passphrase: Passphrase | None, timeout: float,
                    keepalive: int) -> paramiko.Transport:
    transport = paramiko.Transport(sock)
    try:
        options = transport.get_security_options()
        options.ciphers = AEAD_CIPHERS + tuple(c for c in options.ciphers if c not in AEAD_CIPHERS)
        name = settings.known_hosts_name
        preferred = known.key_types(name)
        if preferred:  # ask for a key type we know, as OpenSSH does
            options.key_types = preferred + [t for t in options.key_types if t not in preferred]
        transport.start_client(timeout=timeout)
        known.verify(name, transport.get_remote_server_key(), trust)
        authenticate(transport, settings, passphrase)
    except BaseException:
        transport.close()
        raise
    transport.set_keepalive(keepalive)
    return transport


def _tcp_keepalive(sock: socket.socket, interval: int) -> None:
    """Let the kernel drop a link whose peer went silent (paramiko's keepalive expects no answer)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", interval), ("TCP_KEEPINTVL", interval), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class SSHHost:
    """One paramiko Transport to one box (through its ProxyJump hops), re-established on loss."""

    def __init__(self, settings: HostSettings, *, known_hosts: KnownHosts | None = None,
                 trust: str | None = None, passphrase: Passphrase | None = None,
                 connect_timeout: float = 10.0, keepalive: int = 5, reconnect: bool = True,
                 max_backoff: float = 30.0) -> None:
        self.settings = settings
        self.known = known_hosts or KnownHosts()
        self._trust = trust
        self._passphrase = passphrase
        self._timeout = connect_timeout
        self._keepalive = keepalive
        self._reconnect = reconnect
        self._max_backoff = max_backoff
        self._lock = threading.RLock()
        self._transports: list[paramiko.Transport] = []  # jump hops first, the box last
        self._forwards: dict[tuple[str, int], LocalForward] = {}
        self._listeners: list[Callable[[HostState], None]] = []
        self._closed = threading.Event()
        self._monitor: threading.Thread | None = None
        self.state: StateName = "connecting"
        self.last_seen: float | None = None
        self.error: str | None = None

    # -- connecting ----------------------------------------------------------------------------
    def _dial(self) -> list[paramiko.Transport]:
        hops: list[HostSettings] = []
        hop: HostSettings | None = self.settings
        while hop is not None:
            hops.insert(0, hop)
            hop = hop.jump
        opened: list[paramiko.Transport] = []
        try:
            for step in hops:
                sock: socket.socket | paramiko.Channel
                if opened:
                    try:
                        sock = opened[-1].open_channel("direct-tcpip", (step.hostname, step.port),
                                                       ("127.0.0.1", 0), timeout=self._timeout)
                    except paramiko.ChannelException as error:
                        raise Unreachable(f"jump host {opened[-1].getpeername()} cannot reach "
                                          f"{step.hostname}:{step.port}: {error}") from None
                else:
                    try:
                        sock = socket.create_connection((step.hostname, step.port), timeout=self._timeout)
                        _tcp_keepalive(sock, self._keepalive)
                    except OSError as error:
                        raise Unreachable(f"cannot reach {step.display}: {error}") from None
                try:
                    opened.append(_open_transport(step, sock, self.known, self._trust, self._passphrase,
                                                  self._timeout, self._keepalive))
                except (paramiko.SSHException, EOFError, OSError) as error:
                    raise Unreachable(f"SSH handshake with {step.display} failed: {error}") from None
        except BaseException:
            for transport in reversed(opened):
                transport.close()
            raise
        return opened

    def connect(self) -> SSHHost:
        """Open the connection (raises UnknownHostKey, HostKeyChanged, AuthFailed, Unreachable)."""
        transports = self._dial()
        with self._lock:
            self._transports = transports
        self._set_state("connected")
        if self._monitor is None:
            self._monitor = threading.Thread(target=self._watch, name=f"ssh:{self.settings.alias}",
                                             daemon=True)
            self._monitor.start()
        return self

    @property
    def transport(self) -> paramiko.Transport:
        with self._lock:
            if not self._transports or not self._transports[-1].is_active():
                raise Unreachable(f"{self.settings.display} is not connected ({self.error or self.state})")
            return self._transports[-1]

    def verified_keys(self) -> list[tuple[HostSettings, paramiko.PKey]]:
        """Each hop's settings (jump hosts first) with the host key that was verified for it."""
        hops: list[HostSettings] = []
        hop: HostSettings | None = self.settings
        while hop is not None:
            hops.insert(0, hop)
            hop = hop.jump
        with self._lock:
            return [(s, t.get_remote_server_key()) for s, t in zip(hops, self._transports, strict=False)]

    def is_connected(self) -> bool:
        with self._lock:
            return bool(self._transports) and self._transports[-1].is_active()

    # -- state ---------------------------------------------------------------------------------
    def on_state(self, callback: Callable[[HostState], None]) -> None:
        """Call `callback(HostState)` on every change (connected / unreachable / closed)."""
        self._listeners.append(callback)

    def _set_state(self, state: StateName, error: str | None = None) -> None:
        if state == "connected":
            self.last_seen = time.time()
        changed = state != self.state
        self.state, self.error = state, error
        if changed:
            snapshot = HostState(state, self.last_seen, error)
            for callback in list(self._listeners):
                try:
                    callback(snapshot)
                except Exception:
                    log.exception("on_state callback failed")

    def _watch(self) -> None:
        """Notice a dropped link (EOF, or TCP keepalive giving up on a silent peer) and redial."""
        while not self._closed.wait(0.25):
            if self.is_connected():
                self.last_seen = time.time()
                continue
            if self._closed.is_set():
                return
            self._set_state("unreachable", f"connection to {self.settings.display} lost")
            if not self._reconnect:
                return
            self._redial()

    def _redial(self) -> None:
        delay = 0.5
        while not self._closed.is_set():
            with self._lock:
                for transport in self._transports:
                    transport.close()
            try:
                transports = self._dial()
            except (Unreachable, AuthFailed, HostKeyChanged, RemoteError) as error:
                self.error = str(error)
                if self._closed.wait(delay):
                    return
                delay = min(delay * 2, self._max_backoff)
                continue
            with self._lock:
                self._transports = transports
            self._set_state("connected")
            return

    # -- commands and files --------------------------------------------------------------------
    def run(self, argv: Sequence[str], timeout: float = 60.0, *, stdin: bytes | None = None,
            check: bool = False) -> tuple[int, str, str]:
        """Run argv on the box (quoted with shlex.join); returns (exit status, stdout, stderr)."""
        argv = [str(a) for a in argv]
        channel = self.transport.open_session(timeout=self._timeout)
        try:
            channel.exec_command(shlex.join(argv))
            if stdin is not None:
                channel.sendall(stdin)
            channel.shutdown_write()
            out, err = bytearray(), bytearray()
            deadline = time.monotonic() + timeout
            while True:
                busy = False
                if channel.recv_ready():
                    out += channel.recv(1 << 16)
                    busy = True
                if channel.recv_stderr_ready():
                    err += channel.recv_stderr(1 << 16)
                    busy = True
                pending = channel.recv_ready() or channel.recv_stderr_ready()
                if channel.exit_status_ready() and not pending:
                    break
                if time.monotonic() > deadline:
                    raise RemoteError(f"`{argv[0]}` did not finish on {self.settings.display} within "
                                      f"{timeout:.0f} s")
                if channel.closed and not channel.exit_status_ready():
                    raise Unreachable(f"the connection to {self.settings.display} dropped while running "
                                      f"{argv[0]}")
                if not busy:
                    time.sleep(0.005)
            status = channel.recv_exit_status()
        finally:
            channel.close()
        result = (status, out.decode(errors="replace"), err.decode(errors="replace"))
        if check and status != 0:
            raise RemoteCommandError(argv, *result)
        return result

    def sftp(self) -> paramiko.SFTPClient:
        client = paramiko.SFTPClient.from_transport(self.transport)
        if client is None:
            raise Unreachable(f"cannot open SFTP on {self.settings.display}")
        return client

    def put(self, local: Path, remote: str, progress: Progress | None = None) -> None:
        """Upload a file over SFTP; `progress(sent, total)` as it goes."""
        with self.sftp() as sftp:
            sftp.put(str(local), remote, callback=progress)

    # -- forwards ------------------------------------------------------------------------------
    def open_channel(self, host: str, port: int,
                     origin: tuple[str, int] = ("127.0.0.1", 0)) -> paramiko.Channel:
        """A direct-tcpip channel to host:port as seen from the box."""
        return self.transport.open_channel("direct-tcpip", (host, port), origin, timeout=self._timeout)

    def forward(self, remote_host: str, remote_port: int) -> int:
        """A local port on 127.0.0.1 that reaches remote_host:remote_port from the box (cached)."""
        key = (remote_host, remote_port)
        with self._lock:
            existing = self._forwards.get(key)
            if existing is None:
                existing = LocalForward(lambda origin: self.open_channel(remote_host, remote_port, origin),
                                        name=f"fwd:{self.settings.alias}:{remote_port}")
                self._forwards[key] = existing
            return existing.port

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            for forward in self._forwards.values():
                forward.close()
            self._forwards.clear()
            for transport in reversed(self._transports):
                transport.close()
            self._transports = []
        self._set_state("closed")

    def __enter__(self) -> SSHHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
