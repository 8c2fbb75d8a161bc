"""The alternative tunnel: the user's OpenSSH client (`ssh -N -L`), pinned to the verified host keys.

ssh gets a generated config (one Host block per hop) whose UserKnownHostsFile holds ONLY the keys
workbench verified, with StrictHostKeyChecking=yes and BatchMode=yes: no prompt, no other key.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import paramiko
from workbench.remote.errors import RemoteError
from workbench.remote.hostkeys import known_hosts_line
from workbench.remote.sshconfig import HostSettings, check_host


def _quote(value: str) -> str:
    if '"' in value or "\n" in value:
        raise RemoteError(f"unusable path for ssh's config: {value!r}")
    return f'"{value}"'


def write_config(folder: Path, hops: list[tuple[HostSettings, paramiko.PKey]]) -> tuple[Path, str]:
    """ssh_config + known_hosts for the chain (jump hosts first); returns (config, target alias)."""
    known = folder / "known_hosts"
    known.write_text("".join(known_hosts_line(s.known_hosts_name, key) + "\n" for s, key in hops))
    blocks: list[str] = []
    previous: str | None = None
    for index, (settings, _) in enumerate(hops):
        alias = f"wb-hop{index}"
        lines = [f"Host {alias}", f"  HostName {check_host(settings.hostname)}", f"  Port {settings.port}",
                 f"  User {settings.user}", f"  UserKnownHostsFile {_quote(str(known))}",
                 "  GlobalKnownHostsFile /dev/null", "  StrictHostKeyChecking yes", "  BatchMode yes",
                 "  PasswordAuthentication no", "  KbdInteractiveAuthentication no",
                 "  ServerAliveInterval 5", "  ServerAliveCountMax 3", "  CheckHostIP no"]
        lines += [f"  IdentityFile {_quote(str(p))}" for p in settings.identity_files]
        if settings.identities_only:
            lines.append("  IdentitiesOnly yes")
        if previous:
            lines.append(f"  ProxyJump {previous}")
        blocks.append("\n".join(lines))
        previous = alias
    config = folder / "ssh_config"
    config.write_text("\n\n".join(blocks) + "\n")
    assert previous is not None
    return config, previous


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class OpenSSHForward:
    """`ssh -N -L 127.0.0.1:LOCAL:remote_host:remote_port` as a child process; restarted by ensure()."""

    def __init__(self, hops: list[tuple[HostSettings, paramiko.PKey]], remote_host: str, remote_port: int,
                 *, ssh: str | None = None, timeout: float = 15.0) -> None:
        found = ssh or shutil.which("ssh")
        if found is None:
            raise RemoteError("the openssh tunnel needs the `ssh` client (apt install openssh-client); "
                              "or use tunnel='paramiko'")
        self._ssh = found
        self._folder = Path(tempfile.mkdtemp(prefix="wb-ssh-"))
        self._config, self._alias = write_config(self._folder, hops)
        self.remote = (check_host(remote_host), remote_port)
        self.port = _free_port()
        self._timeout = timeout
        self._process: subprocess.Popen[bytes] | None = None
        self.ensure()

    def argv(self) -> list[str]:
        forward = f"127.0.0.1:{self.port}:{self.remote[0]}:{self.remote[1]}"
        return [self._ssh, "-F", str(self._config), "-N", "-L", forward, "-o", "ExitOnForwardFailure=yes",
                "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", self._alias]

    def ensure(self) -> None:
        """Start ssh when it is not running; wait until the local port accepts."""
        if self._process is not None and self._process.poll() is None:
            return
        log = (self._folder / "ssh.log").open("ab")
        self._process = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         env={**os.environ, "SSH_ASKPASS_REQUIRE": "never"})
        log.close()
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                message = (self._folder / "ssh.log").read_text(errors="replace").strip()[-1500:]
                raise RemoteError(f"ssh -L exited with {self._process.returncode}: {message}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.5):
                return
            time.sleep(0.05)
        self.close()
        raise RemoteError(f"ssh -L did not open 127.0.0.1:{self.port} within {self._timeout:.0f} s")

    def close(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        shutil.rmtree(self._folder, ignore_errors=True)
