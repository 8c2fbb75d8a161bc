"""Fixtures: real sshd boxes (session), verified connections, one agent install per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from workbench.remote.box import SSHBox
from workbench.remote.connection import SSHHost
from workbench.remote.errors import RemoteError
from workbench.remote.hostkeys import KnownHosts
from workbench.remote.sshconfig import resolve

from tests.support.sshd import Box, require_sshd, sshd_boxes


@pytest.fixture(scope="session")
def boxes() -> Iterator[list[Box]]:
    require_sshd()
    with sshd_boxes(2) as started:
        yield started


@pytest.fixture
def box(boxes: list[Box]) -> Box:
    return boxes[0]


@pytest.fixture
def known(tmp_path: Path) -> KnownHosts:
    """Empty known-hosts files of the test's own (never the user's ~/.ssh)."""
    return KnownHosts([tmp_path / "user_known_hosts"], tmp_path / "workbench_known_hosts")


def trusted(box: Box, tmp_path: Path) -> KnownHosts:
    known = KnownHosts([tmp_path / "user_known_hosts"], tmp_path / "workbench_known_hosts")
    (tmp_path / "user_known_hosts").write_text(box.known_hosts_line() + "\n")
    return known


@pytest.fixture
def ssh(box: Box, tmp_path: Path) -> Iterator[SSHHost]:
    settings = resolve(box.target, identity=box.client_key, config_path=tmp_path / "no-config")
    host = SSHHost(settings, known_hosts=trusted(box, tmp_path)).connect()
    yield host
    host.close()


@pytest.fixture(scope="session")
def remote_box() -> Iterator[Box]:
    """A box of the installed-agent tests' own: no other test restarts its sshd or installs on it."""
    require_sshd()
    with sshd_boxes(1) as started:
        yield started[0]


@pytest.fixture(scope="session")
def installed_remote(remote_box: Box, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHBox]:
    """The remote box with the agent installed once per session (the expensive part)."""
    folder = tmp_path_factory.mktemp("remote")
    host = SSHBox(remote_box.target, identity=remote_box.client_key,
                  known_hosts=trusted(remote_box, folder), ssh_config=folder / "no-config",
                  tunnel="openssh").connect()
    host.install()
    yield host
    try:
        if host.state == "connected" and host.installed_version() is not None:
            host.remove(purge=True)
    finally:
        host.close()


@pytest.fixture
def remote(installed_remote: SSHBox) -> SSHBox:
    """The installed agent, running: whatever a test before this one did to it (stopped it,
    purged it), `install()` repairs it first; a healthy agent costs one marker read and one
    health check."""
    host = installed_remote
    healthy = False
    if host.installed_version() is not None:
        try:
            with host.agent_client(timeout=5) as client:
                healthy = client.healthy()
        except RemoteError:  # no access recorded (purged), a tunnel that cannot open
            healthy = False
    if not healthy:
        host.install()
    return host
