"""Host keys: unknown refused with OpenSSH's fingerprint, trusted on request, changed refused."""

from __future__ import annotations

import subprocess
from pathlib import Path

import paramiko
import pytest
from workbench.remote.connection import SSHHost
from workbench.remote.errors import HostKeyChanged, UnknownHostKey
from workbench.remote.hostkeys import KnownHosts, fingerprint
from workbench.remote.sshconfig import resolve

from tests.remote.conftest import trusted
from tests.support.sshd import Box

pytestmark = pytest.mark.sshd


def _settings(box: Box, tmp_path: Path):  # type: ignore[no-untyped-def]
    return resolve(box.target, identity=box.client_key, config_path=tmp_path / "no-config")


def test_fingerprint_matches_ssh_keygen(box: Box) -> None:
    key = paramiko.PKey.from_path(box.host_key)
    assert fingerprint(key) == box.fingerprint()
    assert not fingerprint(key).endswith("=")


def test_unknown_host_refused_then_trusted_and_recorded(box: Box, known: KnownHosts, tmp_path: Path) -> None:
    with pytest.raises(UnknownHostKey) as refused:
        SSHHost(_settings(box, tmp_path), known_hosts=known).connect()
    assert refused.value.fingerprint == box.fingerprint()
    assert refused.value.key_type == "ssh-ed25519"
    assert box.fingerprint() in str(refused.value)
    assert not known.record_file.exists()
    with pytest.raises(UnknownHostKey):  # a wrong --trust is no trust
        SSHHost(_settings(box, tmp_path), known_hosts=known, trust="SHA256:" + "A" * 43).connect()
    with SSHHost(_settings(box, tmp_path), known_hosts=known, trust=box.fingerprint()).connect() as host:
        assert host.run(["true"])[0] == 0
    assert known.record_file.read_text().split() == box.known_hosts_line().split()
    with SSHHost(_settings(box, tmp_path), known_hosts=known).connect() as host:  # now known
        assert host.run(["true"])[0] == 0


def test_hashed_known_hosts_entry_is_honoured(box: Box, tmp_path: Path) -> None:
    user_file = tmp_path / "user_known_hosts"
    user_file.write_text(box.known_hosts_line() + "\n")
    subprocess.run(["ssh-keygen", "-H", "-f", str(user_file)], check=True, capture_output=True)
    assert user_file.read_text().startswith("|1|")
    known = KnownHosts([user_file], tmp_path / "wb")
    with SSHHost(_settings(box, tmp_path), known_hosts=known).connect() as host:
        assert host.run(["true"])[0] == 0


def test_changed_key_refused_and_nothing_runs(box: Box, tmp_path: Path) -> None:
    other = paramiko.Ed25519Key.from_private_key_file  # noqa: F841  (documenting the key type)
    fake = tmp_path / "fake"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(fake)], check=True)
    user_file = tmp_path / "user_known_hosts"
    kind, blob = fake.with_suffix(".pub").read_text().split()[:2]
    user_file.write_text(f"# first line\n{box.known_hosts_name} {kind} {blob}\n")
    before = box.home_listing()
    log_before = (box.root / "sshd.log").read_text().count("Accepted publickey")
    known = KnownHosts([user_file], tmp_path / "wb")
    with pytest.raises(HostKeyChanged) as refused:
        SSHHost(_settings(box, tmp_path), known_hosts=known, trust=box.fingerprint()).connect()
    message = str(refused.value)
    assert refused.value.fingerprint == box.fingerprint()
    assert f"{user_file} line 2" in message and "reinstalled" in message and "intercepting" in message
    assert box.home_listing() == before
    assert (box.root / "sshd.log").read_text().count("Accepted publickey") == log_before  # never logged in
    assert not (tmp_path / "wb").exists()


def test_trusted_fixture_connects(box: Box, tmp_path: Path) -> None:
    with SSHHost(_settings(box, tmp_path), known_hosts=trusted(box, tmp_path)).connect() as host:
        assert host.is_connected()
