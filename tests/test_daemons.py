"""workbench.daemons, the one launcher of the controller and the local agent, against a tiny real
daemon (`python -m tinyd`, an HTTP server that answers 200 only with its token): start, find, stop
(SIGTERM, then SIGKILL), a daemon that exits at once, one that never answers, a port taken."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.real_parts import free_port
from workbench import daemons
from workbench.daemons import Daemon, LaunchFailed

TINYD = '''
import os, signal, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

port, token, pidfile = int(sys.argv[1]), sys.argv[2], sys.argv[3]
print("tinyd: starting", flush=True)
if os.environ.get("TINYD_FAIL"):
    print("tinyd: cannot start: told to fail", file=sys.stderr, flush=True)
    sys.exit(3)
if os.environ.get("TINYD_STUBBORN"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
open(pidfile, "w").write(str(os.getpid()))

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.headers.get("Authorization") == f"Bearer {token}" else 401)
        self.end_headers()

    def log_message(self, *args):
        pass

HTTPServer(("127.0.0.1", port), Handler).serve_forever()
'''


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / "tinyd.py").write_text(TINYD)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    yield tmp_path
    with contextlib.suppress(OSError, ValueError):  # whatever a failed test left running
        os.kill(int((tmp_path / "tinyd.pid").read_text()), signal.SIGKILL)


def tinyd(folder: Path, port: int, token: str = "t0ken", asked: str = "t0ken") -> Daemon[int]:
    def answers() -> int | None:
        try:
            ok = httpx.get(f"http://127.0.0.1:{port}/", headers={"Authorization": f"Bearer {asked}"},
                           timeout=1).status_code == 200
        except httpx.HTTPError:
            return None
        return int((folder / "tinyd.pid").read_text()) if ok else None

    log = folder / "tinyd.log"
    return Daemon(what="the tiny daemon", module="tinyd", args=(str(port), token, str(folder / "tinyd.pid")),
                  port=port, port_variable="TINYD_PORT", log=log, output=log, answers=answers)


def test_start_find_stop(folder: Path) -> None:
    port = free_port()
    daemon = tinyd(folder, port)
    said: list[str] = []
    pid = daemons.start(daemon, timeout=30, on_start=said.append)
    try:
        assert said == [f"starting the tiny daemon on 127.0.0.1:{port} (log: {folder / 'tinyd.log'})"]
        assert daemon.answers() == pid and daemons.alive(pid)  # found again
        assert os.getsid(pid) == pid  # its own session: it outlives the terminal that started it
        assert "tinyd: starting" in (folder / "tinyd.log").read_text()
    finally:
        daemons.stop(pid, timeout=10)
    assert not daemons.alive(pid) and daemon.answers() is None and not daemons.port_in_use(port)
    daemons.stop(pid, timeout=1)  # stopping what is gone is fine


def test_a_daemon_that_exits_at_once_is_reported_with_its_log(folder: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINYD_FAIL", "1")
    with pytest.raises(LaunchFailed) as failed:
        daemons.start(tinyd(folder, free_port()), timeout=30)
    message = str(failed.value)
    assert message.startswith(f"the tiny daemon exited with code 3; last lines of {folder / 'tinyd.log'}:\n")
    assert "tinyd: cannot start: told to fail" in message and failed.value.status == 500


def test_a_port_taken_by_another_program_is_refused_before_starting(folder: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        said: list[str] = []
        with pytest.raises(LaunchFailed) as taken:
            daemons.start(tinyd(folder, port), timeout=30, on_start=said.append)
    assert str(taken.value) == (f"port {port} on 127.0.0.1 is taken by another program, so the tiny daemon "
                                "cannot start there; free it or choose another port with TINYD_PORT=NNNN")
    assert said == [] and not (folder / "tinyd.log").exists()


def test_a_daemon_that_never_answers_with_our_token_is_stopped(folder: Path) -> None:
    port = free_port()
    with pytest.raises(LaunchFailed, match=r"the tiny daemon did not answer within 2 s; see .*tinyd.log"):
        daemons.start(tinyd(folder, port, asked="someone-else's"), timeout=2)
    pid = int((folder / "tinyd.pid").read_text())
    deadline = time.monotonic() + 10
    while daemons.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not daemons.alive(pid)


def test_stop_kills_a_daemon_that_ignores_sigterm(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINYD_STUBBORN", "1")
    pid = daemons.start(tinyd(folder, free_port()), timeout=30)
    daemons.stop(pid, timeout=0.5)
    assert not daemons.alive(pid)
