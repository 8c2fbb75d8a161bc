"""Real OpenSSH servers on loopback addresses for the remote tests and the tunnel benchmark.

Each box: `sshd -D -e -f <config>` on 127.0.0.N:<free port>, fresh ed25519 host key, its own
non-root user (own HOME under a temp dir, in the `docker` group, no sudo), key-only login with a
generated client key. The authorized key lives outside the HOME (AuthorizedKeysFile), so a test
can check that the HOME is untouched.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from tests.support.real_parts import IN_CI

SSHD = "/usr/sbin/sshd"
BASE = Path("/var/lib/workbench-test-sshd")


def sshd_missing() -> str | None:
    """Why sshd boxes cannot run here, or None."""
    if os.geteuid() != 0:
        return "not root (useradd and sshd need root)"
    for tool in (SSHD, "/usr/bin/ssh-keygen", "/usr/sbin/useradd", "/usr/sbin/userdel"):
        if not os.path.exists(tool):
            return f"{tool} is missing (apt-get install openssh-server openssh-client passwd)"
    return None


def require_sshd() -> None:
    """Skip without sshd/root on a laptop; under CI=true that is a failure."""
    reason = sshd_missing()
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true but sshd boxes cannot start: {reason}")
    pytest.skip(f"sshd boxes cannot start: {reason}")


def _free_port(address: str) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, capture_output=True)


@dataclass
class Box:
    """One sshd and its user."""

    address: str
    root: Path
    allow_forwarding: bool = True
    sftp: bool = True  # False: an sshd with no SFTP subsystem (some providers' images)
    port: int = 0
    user: str = ""
    uid: int = -1
    home: Path = field(default_factory=Path)
    process: subprocess.Popen[bytes] | None = None

    @property
    def host_key(self) -> Path:
        return self.root / "ssh_host_ed25519_key"

    @property
    def client_key(self) -> Path:
        return self.root / "client_key"

    @property
    def target(self) -> str:
        return f"{self.user}@{self.address}:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        return f"[{self.address}]:{self.port}"

    def fingerprint(self) -> str:
        """The host key's fingerprint as `ssh-keygen -lf` prints it."""
        out = subprocess.run(["ssh-keygen", "-lf", f"{self.host_key}.pub"], check=True,
                             capture_output=True, text=True).stdout
        return out.split()[1]

    def known_hosts_line(self) -> str:
        kind, blob = (self.host_key.with_suffix(".pub").read_text().split()[:2])
        return f"{self.known_hosts_name} {kind} {blob}"

    def create(self) -> Box:
        self.root.mkdir(parents=True)
        os.chmod(self.root, 0o755)
        self.port = _free_port(self.address)
        self.user = "wb" + secrets.token_hex(4)
        self.home = self.root / "home"
        subprocess.run(["useradd", "--create-home", "--home-dir", str(self.home), "--shell", "/bin/bash",
                        "--groups", "docker", self.user], check=True, capture_output=True)
        subprocess.run(["usermod", "-p", "*", self.user], check=True, capture_output=True)  # unlock
        self.uid = int(subprocess.run(["id", "-u", self.user], check=True, capture_output=True,
                                      text=True).stdout)
        _keygen(self.host_key, "host")
        _keygen(self.client_key, "client")
        keys = self.root / "authorized"
        keys.mkdir(mode=0o755)
        shutil.copy(self.client_key.with_suffix(".pub"), keys / self.user)
        os.chmod(keys / self.user, 0o644)
        (self.root / "sshd_config").write_text("\n".join([
            f"Port {self.port}",
            f"ListenAddress {self.address}",
            f"HostKey {self.host_key}",
            "PidFile none",
            f"AuthorizedKeysFile {keys}/%u",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "PermitRootLogin no",
            "StrictModes yes",
            f"AllowUsers {self.user}",
            f"AllowTcpForwarding {'yes' if self.allow_forwarding else 'no'}",
            "UseDNS no",
            "PrintMotd no",
            "LogLevel VERBOSE",
            *(["Subsystem sftp internal-sftp"] if self.sftp else []),
            "",
        ]))
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        return self

    def start(self) -> None:
        log = (self.root / "sshd.log").open("ab")
        self.process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.root / "sshd_config")],
                                        stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.root / 'sshd.log').read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection((self.address, self.port), 1) as s:
                if s.recv(8).startswith(b"SSH-"):
                    return
            time.sleep(0.1)
        raise RuntimeError(f"sshd on {self.address}:{self.port} did not answer")

    def stop(self) -> None:
        """Kill sshd and every connection it serves (the link drops as if the box went away)."""
        if self.process is None:
            return
        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.Error:
            children = []
        self.process.kill()
        self.process.wait()
        for child in children:
            with contextlib.suppress(psutil.Error):
                if child.name().startswith("sshd"):
                    child.kill()
        # a connection's privilege-separated child runs as the box user and may have been
        # re-parented already: kill those too, or the client never sees the link drop
        config = str(self.root / "sshd_config")
        for proc in psutil.process_iter(["name", "uids", "cmdline"]):
            with contextlib.suppress(psutil.Error):
                name = proc.info["name"] or ""
                uids = proc.info["uids"]
                mine = (uids is not None and uids.real == self.uid) or config in (proc.info["cmdline"] or [])
                if name.startswith("sshd") and mine:
                    proc.kill()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill_user_processes(self) -> None:
        for proc in psutil.process_iter(["uids"]):
            uids = proc.info.get("uids")
            if uids is not None and uids.real == self.uid:
                with contextlib.suppress(psutil.Error):
                    os.killpg(proc.pid, signal.SIGKILL) if proc.pid == os.getpgid(proc.pid) else proc.kill()

    def home_listing(self) -> set[str]:
        return {str(p.relative_to(self.home)) for p in self.home.rglob("*")}

    def destroy(self) -> None:
        self.stop()
        self.kill_user_processes()
        time.sleep(0.2)
        self.kill_user_processes()
        subprocess.run(["userdel", "-r", "-f", self.user], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def sshd_boxes(count: int = 2, *, forwarding: tuple[bool, ...] | None = None,
               sftp: tuple[bool, ...] | None = None) -> Iterator[list[Box]]:
    """Start `count` boxes on 127.0.0.2, 127.0.0.3, …; remove everything afterwards."""
    BASE.mkdir(mode=0o755, parents=True, exist_ok=True)  # sshd's StrictModes rejects /tmp (1777)
    base = Path(tempfile.mkdtemp(prefix="run-", dir=BASE))
    os.chmod(base, 0o755)
    boxes: list[Box] = []
    try:
        for index in range(count):
            allow = forwarding[index] if forwarding else True
            box = Box(f"127.0.0.{index + 2}", base / f"box{index}", allow,
                      sftp=sftp[index] if sftp else True).create()
            boxes.append(box)
            box.start()
        yield boxes
    finally:
        for box in boxes:
            box.destroy()
        shutil.rmtree(base, ignore_errors=True)
