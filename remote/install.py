"""Install, repair, upgrade and remove the agent on a box — no sudo, no internet needed there.

Steps (each reported to `progress(step, detail)`): build wheel, resolve wheelhouse, upload,
create venv, install, configure, start, wait. Running it again repairs: it reinstalls only when
the installed version/build differs from the workstation's, and restarts a stopped agent.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from workbench.agent.home import DEFAULT_PORT, AgentConfig
from workbench.remote import daemon, wheels
from workbench.remote.connection import SSHHost
from workbench.remote.errors import RemoteCommandError, RemoteError
from workbench.remote.facts import BoxFacts, probe
from workbench.remote.layout import Layout
from workbench.remote.preflight import required_python

import workbench
from workbench.clients.agent import AgentClient
from workbench.wire.errors import WorkbenchError

Progress = Callable[[str, str], None]
STEPS = ("build wheel", "resolve wheelhouse", "upload", "create venv", "install", "configure", "start",
         "wait")
#: Prints a free port on the box's 127.0.0.1, preferring argv[1].
_PORT_PROBE = """
import socket, sys
for port in (int(sys.argv[1]), 0):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    print(s.getsockname()[1])
    break
"""


@dataclass(frozen=True)
class AgentAccess:
    """How to talk to an installed agent: its port on the box's 127.0.0.1 and its token."""

    port: int
    token: str
    version: str
    started: str | None = None  # "systemd --user", "daemon", or None when it was running

    def __repr__(self) -> str:  # never show the token
        return f"AgentAccess(port={self.port}, version={self.version!r}, started={self.started!r})"


@dataclass(frozen=True)
class Installed:
    version: str
    build: str


def _noop(step: str, detail: str) -> None:
    pass


def layout_of(host: SSHHost, facts: BoxFacts | None = None) -> Layout:
    return Layout.for_home((facts or probe(host)).home)


def installed(host: SSHHost, layout: Layout | None = None) -> Installed | None:
    """What installed.json on the box says, or None (not installed, or the venv is gone)."""
    layout = layout or layout_of(host)
    status, out, _ = host.run(["cat", str(layout.marker)])
    if status != 0 or host.run(["test", "-x", str(layout.python)])[0] != 0:
        return None
    try:
        data = json.loads(out)
        return Installed(str(data["version"]), str(data.get("build", "")))
    except (ValueError, KeyError, TypeError):
        return None


def installed_version(host: SSHHost) -> str | None:
    found = installed(host)
    return found.version if found else None


def needs_upgrade(host: SSHHost) -> bool:
    """True when an agent is installed and its version differs from the workstation's."""
    version = installed_version(host)
    return version is not None and version != workbench.__version__


def read_config(host: SSHHost, layout: Layout) -> AgentConfig | None:
    """The box's agent config.json (read with the agent's own parser), or None when it is missing
    or unreadable."""
    status, out, _ = host.run(["cat", str(layout.config)])
    if status != 0:
        return None
    try:
        return AgentConfig.parse(out)
    except ValueError:
        return None


def _upload_dir(host: SSHHost, files: list[Path], remote_dir: str, say: Callable[[str], None]) -> None:
    """Upload files whose size differs or that are missing (the workbench wheel always)."""
    with host.sftp() as sftp:
        present = {entry.filename: entry.st_size for entry in sftp.listdir_attr(remote_dir)}
        for path in files:
            size = path.stat().st_size
            if present.get(path.name) == size and not path.name.startswith("workbench-"):
                continue
            say(f"{path.name} ({size / 1e6:.1f} MB)")
            sftp.put(str(path), f"{remote_dir}/{path.name}")


def _pick_port(host: SSHHost, layout: Layout, wanted: int | None) -> int:
    config = read_config(host, layout)
    if config is not None and wanted is None:
        return config.port
    _, out, _ = host.run(["python3", "-c", _PORT_PROBE, str(wanted or DEFAULT_PORT)], check=True)
    return int(out.strip())


def _wait(host: SSHHost, layout: Layout, port: int, token: str, timeout: float) -> str:
    """Wait until the agent answers through a forward; returns its version."""
    url = f"http://127.0.0.1:{host.forward('127.0.0.1', port)}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            response = httpx.get(url + "/healthz", timeout=3.0)
            if response.status_code == 200:
                with AgentClient(url, token, timeout=10) as client:
                    return client.host().agent_version
        time.sleep(0.3)
    _, tail, _ = host.run(["tail", "-n", "20", str(layout.log)])
    raise RemoteError(f"the agent on {host.settings.display} did not answer on 127.0.0.1:{port} within "
                      f"{timeout:.0f} s; last lines of {layout.log}:\n{tail}")


def install(host: SSHHost, *, port: int | None = None, online: bool = False,
            progress: Progress | None = None, force: bool = False, timeout: float = 60.0) -> AgentAccess:
    """Install or repair the agent on a connected box and return how to reach it: (re)installs
    when it is missing or its version differs (or `force`), restarts it when it is not running."""
    say = progress or _noop
    facts = probe(host)
    need = required_python()
    if facts.python is None or facts.python_tuple < need:
        raise RemoteError(f"{host.settings.display} has python3 {facts.python or '(none)'}; the agent needs "
                          f">= {need[0]}.{need[1]} with venv (run preflight for how to get it)")
    layout = Layout.for_home(facts.home)
    current = installed(host, layout)
    if force or current is None or current.version != workbench.__version__:
        say("build wheel", f"workbench {workbench.__version__}")
        wheel, build = wheels.build_wheel(lambda line: say("build wheel", line))
        files = [wheel]
        if not online:
            say("resolve wheelhouse", f"Python {facts.python} {facts.machine}")
            house = wheels.wheelhouse(wheel, facts, lambda line: say("resolve wheelhouse", line))
            files += sorted(house.glob("*.whl"))
        say("upload", f"{len(files)} files to {layout.dist}")
        host.run(["mkdir", "-p", str(layout.dist)], check=True)
        host.run(["chmod", "700", str(layout.workbench)], check=True)
        _upload_dir(host, files, str(layout.dist), lambda line: say("upload", line))
        if current is not None:
            daemon.stop(host, layout)  # replace a running older agent (its replicas keep running)
        say("create venv", str(layout.venv))
        host.run(["rm", "-rf", "--", str(layout.venv)], check=True)
        host.run(["python3", "-m", "venv", str(layout.venv)], timeout=300, check=True)
        say("install", f"workbench {workbench.__version__}")
        remote_wheel = f"{layout.dist}/{wheel.name}"
        pip = [str(layout.python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "-q"]
        links = [] if online else ["--no-index", "--find-links", str(layout.dist)]
        host.run([*pip, *links, f"{remote_wheel}[agent]"], timeout=900, check=True)
        host.run([*pip, "--no-deps", "--force-reinstall", remote_wheel], timeout=300, check=True)
        marker = json.dumps({"version": workbench.__version__, "build": build, "wheel": wheel.name})
        with host.sftp() as sftp, sftp.open(str(layout.marker), "w") as handle:
            handle.write(marker)
    say("configure", "")
    chosen = _pick_port(host, layout, port)
    host.run([str(layout.python), "-m", "workbench.agent", "init", "--home", str(layout.root),
              "--port", str(chosen)], check=True)
    config = read_config(host, layout)
    if config is None:
        raise RemoteError(f"the agent's config {layout.config} is missing or unreadable after init")
    chosen = config.port
    started: str | None = None
    if daemon.running_pid(host, layout) is None:
        say("start", f"127.0.0.1:{chosen} on the box")
        started = daemon.start(host, layout, chosen)
    say("wait", f"127.0.0.1:{chosen}")
    version = _wait(host, layout, chosen, config.token, timeout)
    return AgentAccess(chosen, config.token, version, started)


def upgrade(host: SSHHost, *, online: bool = False, progress: Progress | None = None) -> AgentAccess:
    """Replace an agent whose version (or, for the same version, source build) differs from the
    workstation's; install() alone keeps a same-version agent."""
    current = installed(host)
    build = wheels.source_hash(wheels.source_root())[:16]
    force = current is not None and current.build != build
    return install(host, online=online, progress=progress, force=force)


def access(host: SSHHost) -> AgentAccess | None:
    """Port and token of the installed agent (no start); None when not installed."""
    layout = layout_of(host)
    found, config = installed(host, layout), read_config(host, layout)
    if found is None or config is None:
        return None
    return AgentAccess(config.port, config.token, found.version)


def remove(host: SSHHost, *, purge: bool = False, progress: Progress | None = None) -> None:
    """Delete every replica through the agent, stop it, remove the unit, venv and wheels;
    with purge, delete ~/.workbench entirely."""
    say = progress or _noop
    layout = layout_of(host)
    config = read_config(host, layout)
    if config is not None and daemon.running_pid(host, layout) is not None:
        url = f"http://127.0.0.1:{host.forward('127.0.0.1', config.port)}"
        with AgentClient(url, config.token, timeout=60) as client:
            try:
                for replica in client.replicas():
                    say("stop replicas", replica.id)
                    client.delete_replica(replica.id, grace=10)
            except WorkbenchError as error:
                raise RemoteError(f"cannot stop the replicas on {host.settings.display}: {error}; "
                                  "nothing was removed") from error
    say("stop agent", "")
    daemon.stop(host, layout)
    daemon.remove_unit(host, layout)
    targets = [layout.workbench] if purge else [layout.venv, layout.dist, layout.marker]
    say("remove files", ", ".join(str(t) for t in targets))
    if purge:  # the model cache keeps its trees read-only (replicas must not write to them)
        host.run(["chmod", "-R", "u+w", "--", str(layout.workbench)], timeout=300)
    try:
        host.run(["rm", "-rf", "--", *map(str, targets)], timeout=300, check=True)
    except RemoteCommandError as error:
        raise RemoteError(f"could not remove {targets} on {host.settings.display}: {error}") from error
