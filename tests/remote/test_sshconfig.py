"""Targets, validation, ~/.ssh/config aliases (HostName/User/Port/IdentityFile/ProxyJump)."""

from __future__ import annotations

from pathlib import Path

import pytest
from workbench.remote.connection import SSHHost
from workbench.remote.errors import InvalidTarget
from workbench.remote.sshconfig import Target, parse_target, resolve

from tests.remote.conftest import trusted
from tests.support.sshd import Box


@pytest.mark.parametrize(("text", "expected"), [
    ("box", Target("box")),
    ("ubuntu@203.0.113.7", Target("203.0.113.7", "ubuntu")),
    ("ubuntu@203.0.113.7:2222", Target("203.0.113.7", "ubuntu", 2222)),
    ("[::1]:2200", Target("::1", None, 2200)),
    ("u@gpu-1.example.com", Target("gpu-1.example.com", "u")),
])
def test_parse_target(text: str, expected: Target) -> None:
    assert parse_target(text) == expected


@pytest.mark.parametrize("bad", ["", "-oProxyCommand=x", "a b", "u@", "-u@host", "host:0", "host:99999",
                                 "host:22x", "ho;st", "u$(id)@host", "host\nx", "@host"])
def test_bad_targets_are_refused(bad: str) -> None:
    with pytest.raises(InvalidTarget):
        parse_target(bad)


def test_config_alias_and_explicit_values(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("Host gpu\n  HostName 10.0.0.5\n  User ubuntu\n  Port 2222\n"
                      "  IdentityFile /keys/gpu\n  ProxyJump bastion\n"
                      "Host bastion\n  HostName 10.0.0.1\n  User jump\n")
    settings = resolve("gpu", config_path=config)
    assert (settings.hostname, settings.user, settings.port) == ("10.0.0.5", "ubuntu", 2222)
    assert settings.identity_files == (Path("/keys/gpu"),)
    assert settings.jump is not None and (settings.jump.hostname, settings.jump.user) == ("10.0.0.1", "jump")
    explicit = resolve("root2@gpu:22", identity="/k", jump="none", config_path=config)
    assert (explicit.user, explicit.port, explicit.jump) == ("root2", 22, None)
    assert explicit.identity_files[0] == Path("/k") and explicit.identities_only


def test_config_with_a_bad_hostname_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("Host evil\n  HostName -oProxyCommand=touch\n")
    with pytest.raises(InvalidTarget):
        resolve("evil", config_path=config)


@pytest.mark.sshd
def test_alias_from_ssh_config_connects(box: Box, tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text(f"Host gpubox\n  HostName {box.address}\n  User {box.user}\n  Port {box.port}\n"
                      f"  IdentityFile {box.client_key}\n  IdentitiesOnly yes\n")
    with SSHHost(resolve("gpubox", config_path=config), known_hosts=trusted(box, tmp_path)).connect() as host:
        assert host.run(["id", "-un"])[1].strip() == box.user


@pytest.mark.sshd
def test_proxyjump_through_the_other_box(boxes: list[Box], tmp_path: Path) -> None:
    jump, target = boxes
    config = tmp_path / "config"
    # the target is addressed as the jump box sees it; both host keys are verified
    config.write_text(f"Host jumpbox\n  HostName {jump.address}\n  User {jump.user}\n  Port {jump.port}\n"
                      f"  IdentityFile {jump.client_key}\n"
                      f"Host inner\n  HostName {target.address}\n  User {target.user}\n"
                      f"  Port {target.port}\n  IdentityFile {target.client_key}\n  ProxyJump jumpbox\n")
    known = trusted(jump, tmp_path)
    with (tmp_path / "user_known_hosts").open("a") as handle:
        handle.write(target.known_hosts_line() + "\n")
    with SSHHost(resolve("inner", config_path=config), known_hosts=known).connect() as host:
        assert host.run(["id", "-un"])[1].strip() == target.user
        assert len(host.verified_keys()) == 2
    log = (jump.root / "sshd.log").read_text()
    assert "direct-tcpip" in log or "Accepted publickey" in log
