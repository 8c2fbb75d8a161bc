"""Remote hosts: add (connect → preflight → install → register), reconnect from the DB, drain and
remove, upgrade. The SSH work (workbench.remote.RemoteHost) is blocking and runs in threads; its
progress comes back to the event loop as HostEvents.

The agent's token is never stored in the DB: it is read over SSH (the agent's config.json on the
box) at every connect. Direct-mode hosts (LAN/VPN: the agent reached over TCP, TLS when a CA file is
given, nothing done over SSH) keep theirs in `$WORKBENCH_HOME/controller/hosts/NAME.token` (0600).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from workbench import __version__, paths
from workbench.clients.agent import AsyncAgentClient
from workbench.controller.events import Events
from workbench.controller.fleet import Fleet, Host
from workbench.controller.reconciler import Reconciler
from workbench.controller.state import RemoteRecord, Store
from workbench.controller.views import host_body
from workbench.remote import daemon
from workbench.remote.connection import HostState
from workbench.remote.errors import AuthFailed, HostKeyChanged, RemoteError, UnknownHostKey
from workbench.remote.install import AgentAccess, layout_of, read_config
from workbench.remote.preflight import ok
from workbench.remote.sshconfig import resolve
from workbench.remote.tunnel import RemoteHost
from workbench.wire.agent import HostInfo, ReplicaState
from workbench.wire.control import AddHostRequest, HostEvent
from workbench.wire.errors import BadRequest, Failed, WorkbenchError

log = logging.getLogger("workbench.controller.hosts")

RESTART_AGENT_EVERY = 10.0  # seconds between attempts to restart an agent that stopped answering
DRAIN_TIMEOUT = 120.0
Emit = Callable[[HostEvent], None]


class HostInputError(BadRequest):
    """The request is wrong (400); nothing was done."""


class HostFailed(Failed):
    """A step failed; the message says what to do (becomes the stream's error event)."""


# -- direct mode --------------------------------------------------------------------------------
def secrets_dir() -> Path:
    """Where direct hosts' tokens (and copies of their CA files) are kept, mode 0700."""
    path = paths.home() / "controller" / "hosts"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def token_path(name: str) -> Path:
    return secrets_dir() / f"{name}.token"


def ca_path(name: str) -> Path:
    return secrets_dir() / f"{name}.ca.pem"


def forget_secrets(name: str) -> None:
    for path in (token_path(name), ca_path(name)):
        path.unlink(missing_ok=True)


def direct_url(target: str, *, tls: bool, port: int | None = None) -> str:
    """`http(s)://HOST:PORT` or `HOST:PORT` (https when a CA file is given) as the agent's URL."""
    text = target.strip()
    if "://" not in text:
        text = ("https://" if tls else "http://") + text
    try:
        parts = urlsplit(text)
        given_port = parts.port
    except ValueError as error:
        raise HostInputError(f"bad target {target!r}: {error}") from None
    if parts.scheme not in ("http", "https"):
        raise HostInputError(f"bad target {target!r}: use HOST:PORT or http(s)://HOST:PORT")
    if not parts.hostname or parts.username or parts.password or parts.path.strip("/") \
            or parts.query or parts.fragment:
        raise HostInputError(f"bad target {target!r}: use HOST:PORT or http(s)://HOST:PORT")
    if tls and parts.scheme != "https":
        raise HostInputError(f"--ca-cert is for an https agent; {target!r} says http")
    if given_port is not None and port is not None and given_port != port:
        raise HostInputError(f"the target says port {given_port}, --port says {port}")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}:{given_port or port or paths.DEFAULT_AGENT_PORT}"


async def _check_direct_agent(url: str, token: str, ca_cert: str | None) -> HostInfo:
    """The agent's HostInfo, or a HostFailed that says what to fix."""
    try:
        async with AsyncAgentClient(url, token, timeout=10.0, verify=ca_cert or True) as client:
            return await client.host()
    except WorkbenchError as error:
        if error.status == 401:
            raise HostFailed(f"the agent at {url} refused the token: pass the `token` from the box's agent "
                             "config.json (`python -m workbench.agent init` prints its path) with "
                             "--token-file") from None
        hint = ""
        if "CERTIFICATE_VERIFY_FAILED" in str(error) or "certificate verify failed" in str(error):
            hint = " (TLS: pass --ca-cert with the certificate, or the CA, the agent serves)"
        elif "WRONG_VERSION_NUMBER" in str(error) or "wrong version number" in str(error):
            hint = " (TLS: the agent answers plain HTTP; use http://HOST:PORT without --ca-cert)"
        raise HostFailed(f"cannot reach the agent at {url}: {error}{hint}; on the box run "
                         "`python -m workbench.agent serve --direct --bind ADDRESS` (see docs/remote.md, "
                         "Direct mode)") from None


def _remote_of(record: RemoteRecord, trust: str | None = None) -> RemoteHost:
    return RemoteHost(record.target, identity=record.identity, jump=record.jump, trust=trust)


def connect_remote(remote: RemoteHost, name: str, emit: Emit) -> None:
    """Connect with verified host keys; every refusal becomes a HostFailed with the fix."""
    emit(HostEvent(kind="step", host=name, step="connect",
                   message=f"connecting to {remote.settings.display}"))
    try:
        remote.connect()
    except UnknownHostKey as error:
        emit(HostEvent(kind="trust_required", host=name, message=str(error),
                       fingerprint=error.fingerprint, key_type=error.key_type))
        fingerprint = error.fingerprint
        raise HostFailed(f"the host key of {error.host} is not known; check its {error.key_type} "
                         f"fingerprint {fingerprint} and re-run with --trust {fingerprint}") from None
    except (HostKeyChanged, AuthFailed) as error:
        raise HostFailed(str(error)) from None
    except RemoteError as error:
        raise HostFailed(f"cannot connect to {remote.settings.display}: {error}") from None


def restart_agent(remote: RemoteHost) -> bool:
    """Start the agent through SSH when its daemon is gone (its replicas keep running and are
    re-adopted). True when it was started."""
    layout = layout_of(remote.ssh)
    config = read_config(remote.ssh, layout)
    if config is None or daemon.running_pid(remote.ssh, layout) is not None:
        return False
    daemon.start(remote.ssh, layout, int(str(config["port"])))
    return True


class HostManager:
    """The registered remote hosts and their links."""

    def __init__(self, store: Store, fleet: Fleet, events: Events, reconciler: Reconciler) -> None:
        self.store = store
        self.fleet = fleet
        self.events = events
        self.reconciler = reconciler
        self.links: dict[str, RemoteHost] = {}
        self._busy: set[str] = set()
        self._restarting: dict[str, float] = {}
        self._retry: dict[str, asyncio.Task[None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._background: set[asyncio.Future[None]] = set()

    # -- validation ----------------------------------------------------------------------------
    def validate(self, request: AddHostRequest) -> None:
        name = request.name
        if name == "local" or name in self.fleet.hosts or name in self._busy or self.store.get_remote(name):
            raise HostInputError(f"a host named {name!r} already exists (`workbench host list`); "
                                 "pick another name or remove it first")
        if request.direct:
            self._validate_direct(request)
            return
        if request.token or request.ca_cert:
            raise HostInputError("--token-file and --ca-cert are for direct mode (add --direct)")
        if request.identity and not Path(request.identity).expanduser().is_file():
            raise HostInputError(f"identity file {request.identity} does not exist")
        try:
            resolve(request.target, identity=request.identity, jump=request.jump)
        except (RemoteError, ValueError) as error:
            raise HostInputError(f"bad target {request.target!r}: {error}") from None

    def _validate_direct(self, request: AddHostRequest) -> None:
        for flag, value in (("-i/--identity", request.identity), ("--jump", request.jump),
                            ("--trust", request.trust), ("--online", request.online or None)):
            if value is not None:
                raise HostInputError(f"{flag} is for SSH hosts; direct mode reaches the agent over TCP only")
        token = request.token or ""
        if not token or any(c.isspace() for c in token):
            raise HostInputError("direct mode needs the agent's token (--token-file FILE: the `token` "
                                 "of the box's agent config.json, on one line)")
        if request.ca_cert is not None:
            if not Path(request.ca_cert).expanduser().is_file():
                raise HostInputError(f"CA file {request.ca_cert} does not exist")
            try:
                ssl.create_default_context(cafile=str(Path(request.ca_cert).expanduser()))
            except (ssl.SSLError, OSError, ValueError) as error:
                raise HostInputError(f"CA file {request.ca_cert} is not a PEM certificate: {error}") from None
        direct_url(request.target, tls=request.ca_cert is not None, port=request.port)

    # -- streams -------------------------------------------------------------------------------
    async def _threaded(self, name: str, work: Callable[[Emit], Any]) -> AsyncIterator[HostEvent | Any]:
        """Run `work(emit)` in a thread; yield its events, then its result (or a HostFailed)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[HostEvent | None] = asyncio.Queue()

        def emit(event: HostEvent) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, event)

        def run() -> Any:
            try:
                return work(emit)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        task = asyncio.ensure_future(asyncio.to_thread(run))
        while (event := await queue.get()) is not None:
            yield event
        yield await task

    async def add(self, request: AddHostRequest) -> AsyncIterator[HostEvent]:
        if request.direct:
            async for event in self._add_direct(request):
                yield event
            return
        name = request.name
        self._busy.add(name)
        remote: RemoteHost | None = None
        try:
            remote = RemoteHost(request.target, identity=request.identity, jump=request.jump,
                                trust=request.trust)

            def work(emit: Emit) -> Any:
                assert remote is not None
                connect_remote(remote, name, emit)
                emit(HostEvent(kind="step", host=name, step="preflight", message="checking the box"))
                checks = remote.preflight()
                emit(HostEvent(kind="preflight", host=name, checks=[asdict(c) for c in checks],
                               message="preflight " + ("passed" if ok(checks) else "failed")))
                if not ok(checks):
                    fixes = "; ".join(f"{c.name}: {c.detail} — fix: {c.fix or 'see docs/remote.md'}"
                                      for c in checks if c.status == "fail")
                    raise HostFailed(f"preflight failed on {remote.settings.display}: {fixes}")
                return remote.install(online=request.online, port=request.port, progress=lambda step, detail:
                                      emit(HostEvent(kind="step", host=name, step=step, message=detail)))

            access: AgentAccess | None = None
            async for item in self._threaded(name, work):
                if isinstance(item, HostEvent):
                    yield item
                else:
                    access = item
            assert access is not None
            record = RemoteRecord(name=name, target=request.target, identity=request.identity,
                                  jump=request.jump, kind="ssh", agent_port=access.port,
                                  agent_version=access.version)
            self.store.put_remote(record)
            host = await self._register(record, remote)
            remote = None  # owned by the fleet now
            self.events.record("host", f"host {name} added ({record.target}, agent {access.version})")
            yield HostEvent(kind="done", host=name, message=f"{name} is part of the fleet",
                            result=host_body(host))
        except HostFailed as error:
            yield HostEvent(kind="error", host=name, message=str(error))
        except Exception as error:
            log.exception("adding host %s failed", name)
            yield HostEvent(kind="error", host=name, message=f"adding {name} failed: {error}")
        finally:
            self._busy.discard(name)
            if remote is not None:
                await asyncio.to_thread(remote.close)

    async def _add_direct(self, request: AddHostRequest) -> AsyncIterator[HostEvent]:
        """Direct mode: check the agent answers with this token (over TLS when a CA is given), keep
        the token in a 0600 file, register. Nothing is installed: the user runs the agent on the box."""
        name = request.name
        self._busy.add(name)
        stored = False
        try:
            assert request.token is not None
            url = direct_url(request.target, tls=request.ca_cert is not None, port=request.port)
            ca_source = str(Path(request.ca_cert).expanduser()) if request.ca_cert else None
            yield HostEvent(kind="step", host=name, step="connect", message=f"checking the agent at {url}")
            info = await _check_direct_agent(url, request.token, ca_source)
            stored = True
            _write_private(token_path(name), request.token.encode() + b"\n")
            if ca_source is not None:
                _write_private(ca_path(name), Path(ca_source).read_bytes())
            else:
                ca_path(name).unlink(missing_ok=True)
            record = RemoteRecord(name=name, target=url, kind="direct", agent_port=urlsplit(url).port,
                                  agent_version=info.agent_version)
            self.store.put_remote(record)
            host = await self._register_direct(record, request.token)
            if info.agent_version != __version__:
                self.events.record("host", f"host {name} runs agent {info.agent_version}, the workstation "
                                   f"{__version__}: install this version on the box and restart its agent",
                                   data={"host": name, "agent_version": info.agent_version},
                                   level=logging.WARNING)
            self.events.record("host", f"host {name} added (direct, {url}, agent {info.agent_version})")
            stored = False
            yield HostEvent(kind="done", host=name, message=f"{name} is part of the fleet (direct mode)",
                            result=host_body(host))
        except (HostFailed, HostInputError) as error:
            yield HostEvent(kind="error", host=name, message=str(error))
        except Exception as error:
            log.exception("adding direct host %s failed", name)
            yield HostEvent(kind="error", host=name, message=f"adding {name} failed: {error}")
        finally:
            self._busy.discard(name)
            if stored:  # failed after writing the files: leave nothing behind
                forget_secrets(name)
                if self.store.get_remote(name) is not None and name not in self.fleet.hosts:
                    self.store.delete_remote(name)

    async def _register_direct(self, record: RemoteRecord, token: str) -> Host:
        ca = ca_path(record.name)
        host = Host(record.name, record.target, token, kind="direct", address=record.target,
                    ca_cert=str(ca) if ca.is_file() else None)
        self.fleet.add(host)
        await self.fleet.poll_now(host)
        return host

    async def _restore_direct(self, record: RemoteRecord) -> None:
        try:
            token = token_path(record.name).read_text().strip()
        except OSError:
            token = ""
        if not token:
            message = (f"the token file {token_path(record.name)} is missing: `workbench host remove "
                       f"{record.name}` and add it again")
            self.fleet.hosts[record.name] = Host(record.name, record.target, "", kind="direct",
                                                 address=record.target, state="unreachable", message=message,
                                                 unreachable_since=time.time())
            self.events.record("host", f"host {record.name} is unreachable: {message}", level=logging.WARNING)
            return
        await self._register_direct(record, token)  # the poll marks it unreachable until it answers

    async def upgrade(self, name: str) -> AsyncIterator[HostEvent]:
        host_now = self.fleet.hosts.get(name)
        if host_now is not None and host_now.direct:
            yield HostEvent(kind="error", host=name,
                            message=f"{name} is a direct host: install workbench {__version__} on the box "
                                    "and restart its agent there (`host upgrade` works over SSH)")
            return
        remote = self.links.get(name)
        if remote is None:
            yield HostEvent(kind="error", host=name,
                            message=f"{name} is not connected; wait until it is ready")
            return
        try:
            def work(emit: Emit) -> Any:
                before = remote.installed_version()
                emit(HostEvent(kind="step", host=name, step="check",
                               message=f"installed {before or 'nothing'}, workstation {__version__}"))
                return remote.upgrade(progress=lambda step, detail:
                                      emit(HostEvent(kind="step", host=name, step=step, message=detail)))

            access = None
            async for item in self._threaded(name, work):
                if isinstance(item, HostEvent):
                    yield item
                else:
                    access = item
            record = self.store.get_remote(name)
            if record is not None and access is not None:
                self.store.put_remote(RemoteRecord(**{**asdict(record), "agent_version": access.version}))
            host = self.fleet.hosts.get(name)
            if host is not None:
                host.info = None  # re-read the agent's version at the next poll
                await self.fleet.poll_now(host)
            self.events.record("host", f"host {name} upgraded to agent {__version__}")
            yield HostEvent(kind="done", host=name, message=f"{name} runs agent {__version__}",
                            result=host_body(host) if host else None)
        except Exception as error:
            yield HostEvent(kind="error", host=name, message=f"upgrading {name} failed: {error}")

    # -- connecting ----------------------------------------------------------------------------
    async def _register(self, record: RemoteRecord, remote: RemoteHost) -> Host:
        self._loop = asyncio.get_running_loop()
        self.links[record.name] = remote
        host = Host(record.name, remote.agent_url, remote.agent_token, kind=record.kind,
                    address=record.target, link=remote, on_agent_down=self._agent_down)
        remote.on_state(lambda state: self._state_changed(record.name, state))
        self.fleet.add(host)
        await self.fleet.poll_now(host)
        self._offer_upgrade(record.name, remote)
        return host

    def _offer_upgrade(self, name: str, remote: RemoteHost) -> None:
        with contextlib.suppress(RemoteError):
            version = remote.installed_version()
            if version is not None and version != __version__:
                self.events.record("host", f"host {name} runs agent {version}, the workstation "
                                   f"{__version__}: run `workbench host upgrade {name}`",
                                   data={"host": name, "agent_version": version, "upgrade": True},
                                   level=logging.WARNING)

    async def restore(self) -> None:
        """Reconnect every registered host (in parallel); one that does not answer is retried."""
        records = self.store.remote_hosts()
        await asyncio.gather(*(self._reconnect(record) for record in records))

    async def _reconnect(self, record: RemoteRecord) -> None:
        if record.kind == "direct":
            await self._restore_direct(record)
            return
        remote = _remote_of(record)
        try:
            await asyncio.to_thread(connect_remote, remote, record.name, lambda event: None)
            await asyncio.to_thread(getattr, remote, "agent_url")  # the agent is installed
        except (HostFailed, RemoteError) as error:
            await asyncio.to_thread(remote.close)
            placeholder = Host(record.name, "http://127.0.0.1:9", "", kind=record.kind, address=record.target,
                               state="unreachable", message=str(error), unreachable_since=time.time())
            self.fleet.hosts[record.name] = placeholder
            self.events.record("host", f"host {record.name} is unreachable: {error}", level=logging.WARNING)
            self._retry[record.name] = asyncio.create_task(self._retry_later(record))
            return
        await self._register(record, remote)

    async def _retry_later(self, record: RemoteRecord) -> None:
        delay = 2.0
        while record.name in self.fleet.hosts and self.fleet.hosts[record.name].link is None:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
            if self.store.get_remote(record.name) is None:
                return
            remote = _remote_of(record)
            try:
                await asyncio.to_thread(connect_remote, remote, record.name, lambda event: None)
                await asyncio.to_thread(getattr, remote, "agent_url")
            except (HostFailed, RemoteError):
                await asyncio.to_thread(remote.close)
                continue
            self.fleet.hosts.pop(record.name, None)
            await self._register(record, remote)
            return

    def _state_changed(self, name: str, state: HostState) -> None:
        """From the SSH monitor thread: the link went down or came back."""
        if self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._apply_state, name, state)

    def _apply_state(self, name: str, state: HostState) -> None:
        host = self.fleet.hosts.get(name)
        if host is None or host.link is None:
            return
        if state.state in ("unreachable", "closed"):
            self.fleet.mark_unreachable(host, state.error or f"SSH link to {host.address} lost")
            if state.last_seen:
                host.last_seen = state.last_seen
        elif state.state == "connected":
            self._spawn(self.fleet.poll_now(host))

    def _agent_down(self, host: Host) -> None:
        """The agent stopped answering while SSH is up: nothing on the box restarts a daemon-mode
        agent, so start it again through SSH (at most every RESTART_AGENT_EVERY seconds)."""
        remote = self.links.get(host.name)
        now = time.monotonic()
        if remote is None or now - self._restarting.get(host.name, 0.0) < RESTART_AGENT_EVERY:
            return
        self._restarting[host.name] = now

        async def restart() -> None:
            try:
                if await asyncio.to_thread(restart_agent, remote):
                    self.events.record("host", f"the agent on {host.name} stopped answering; restarted it "
                                       "over SSH (its replicas are re-adopted)", level=logging.WARNING)
            except RemoteError as error:
                log.warning("cannot restart the agent on %s: %s", host.name, error)

        self._spawn(restart())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

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
        moved, deleted = await self.drain(name)
        remote = self.links.pop(name, None)
        task = self._retry.pop(name, None)
        if task is not None:
            task.cancel()
        self.fleet.remove(name)
        self.store.delete_remote(name)
        self.store.delete_host(name)
        forget_secrets(name)
        if remote is not None:
            try:
                if remote.state == "connected":
                    await asyncio.to_thread(remote.remove, purge=purge)
            finally:
                await asyncio.to_thread(remote.close)
        self.events.record("host", f"host {name} removed ({moved} replica(s) moved, {deleted} deleted"
                           + (", purged" if purge else "") + ")")
        return moved, deleted

    async def close(self) -> None:
        for task in self._retry.values():
            task.cancel()
        links, self.links = list(self.links.values()), {}
        for remote in links:
            await asyncio.to_thread(remote.close)
