"""SSHHost: key auth (never a password), argv quoting, SFTP, forwards, reconnect after sshd restart."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from workbench.remote.connection import HostState, SSHHost
from workbench.remote.errors import AuthFailed
from workbench.remote.sshconfig import resolve

from tests.remote.conftest import trusted
from tests.support.real_parts import wait_until
from tests.support.sshd import Box

pytestmark = pytest.mark.sshd


def test_wrong_key_is_a_clear_auth_error(box: Box, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
    settings = resolve(box.target, identity=wrong, config_path=tmp_path / "none")
    started = time.monotonic()
    with pytest.raises(AuthFailed) as failed:
        SSHHost(settings, known_hosts=trusted(box, tmp_path)).connect()
    assert time.monotonic() - started < 30  # no prompt waiting for input
    assert box.user in str(failed.value) and str(wrong) in str(failed.value)
    assert "password" in str(failed.value)


def test_passphrase_key_uses_the_callback(box: Box, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "s3cret", "-f", str(locked)], check=True)
    settings = resolve(box.target, identity=locked, config_path=tmp_path / "none")
    with pytest.raises(AuthFailed, match="needs a passphrase"):  # no callback: skipped, no prompt
        SSHHost(settings, known_hosts=trusted(box, tmp_path)).connect()
    asked: list[Path] = []
    with pytest.raises(AuthFailed):  # decrypted, but not an authorized key on the box
        SSHHost(settings, known_hosts=trusted(box, tmp_path),
                passphrase=lambda p: asked.append(p) or "s3cret").connect()
    assert asked == [locked]


def test_the_link_uses_aes_gcm_when_the_box_offers_it(ssh: SSHHost) -> None:
    """AES-GCM costs Paramiko's packet thread far less per byte than AES-CTR + HMAC (model uploads)."""
    assert ssh.transport.local_cipher == "aes128-gcm@openssh.com"
    assert ssh.transport.remote_cipher == "aes128-gcm@openssh.com"


def test_run_quotes_arguments(ssh: SSHHost) -> None:
    status, out, _ = ssh.run(["printf", "%s|", "a b", "$HOME", "`id`", "; rm -rf /"])
    assert status == 0 and out == "a b|$HOME|`id`|; rm -rf /|"
    assert ssh.run(["sh", "-c", "exit 3"])[0] == 3


def test_put_reports_progress(ssh: SSHHost, box: Box, tmp_path: Path) -> None:
    payload = tmp_path / "blob"
    payload.write_bytes(b"x" * 300_000)
    seen: list[tuple[int, int]] = []
    ssh.put(payload, f"{box.home}/blob", lambda sent, total: seen.append((sent, total)))
    assert seen[-1] == (300_000, 300_000)
    assert ssh.run(["stat", "-c", "%s", f"{box.home}/blob"])[1].strip() == "300000"
    ssh.run(["rm", "-f", f"{box.home}/blob"])


def _echo_server() -> tuple[socket.socket, int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(65536):
                    conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


def test_forward_carries_bytes(ssh: SSHHost) -> None:
    server, port = _echo_server()
    try:
        local = ssh.forward("127.0.0.1", port)
        assert ssh.forward("127.0.0.1", port) == local  # cached
        with socket.create_connection(("127.0.0.1", local), timeout=10) as conn:
            blob = bytes(range(256)) * 4096
            conn.sendall(blob)
            got = b""
            while len(got) < len(blob):
                got += conn.recv(65536)
            assert got == blob
    finally:
        server.close()


def test_reconnects_after_sshd_restart(box: Box, tmp_path: Path) -> None:
    settings = resolve(box.target, identity=box.client_key, config_path=tmp_path / "none")
    states: list[HostState] = []
    host = SSHHost(settings, known_hosts=trusted(box, tmp_path), keepalive=1, max_backoff=1.0)
    host.on_state(states.append)
    host.connect()
    server, port = _echo_server()
    try:
        local = host.forward("127.0.0.1", port)
        seen = host.last_seen
        box.stop()
        wait_until(lambda: host.state == "unreachable", 20, what="unreachable")
        assert host.last_seen is not None and seen is not None and host.last_seen >= seen
        box.start()
        wait_until(lambda: host.state == "connected", 30, what="reconnect")
        assert [s.state for s in states][:2] == ["connected", "unreachable"]
        assert states[-1].state == "connected"
        assert host.run(["true"])[0] == 0
        with socket.create_connection(("127.0.0.1", local), timeout=10) as conn:  # same local port
            conn.sendall(b"again")
            assert conn.recv(16) == b"again"
    finally:
        server.close()
        host.close()
        if box.process is None:
            box.start()
