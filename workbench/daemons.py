"""Background daemons of this machine (the controller, the local agent): start one, find it, stop it.

One launcher for both: `python -m MODULE ARGS` in a new session (so it outlives the terminal that
started it) with its output appended to a log; started means it answers with our token (a daemon
that merely listens might be someone else's); a daemon that exits while starting is reported with
the tail of its log; stopping is SIGTERM (it drains), then SIGKILL after a timeout.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from workbench.wire.errors import Failed

T = TypeVar("T")
TAIL_LINES = 20


class LaunchFailed(Failed):
    """A background daemon could not be found or started; the message says why and what to do."""


@dataclass(frozen=True)
class Daemon(Generic[T]):
    """How to start one daemon and how to tell that it answers."""

    what: str  #: in messages: "the controller", "the local agent"
    module: str  #: run as `python -m MODULE ARGS`
    args: tuple[str, ...]
    port: int  #: the port on 127.0.0.1 it listens on
    port_variable: str  #: the environment variable that chooses another port
    log: Path  #: the log a user reads (named in messages)
    output: Path  #: where its stdout and stderr go (appended; its folder exists)
    #: what the caller needs of the daemon once it answers with our token, else None
    answers: Callable[[], T | None]
    #: a daemon that did not answer in time is stopped (else it is left to finish starting)
    stop_when_late: bool = True


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def tail(paths: tuple[Path, ...], lines: int = TAIL_LINES) -> str:
    """The last lines of these files, read one after the other."""
    text = ""
    for path in paths:
        with contextlib.suppress(OSError):
            text += path.read_text(errors="replace")
    return "\n".join(text.splitlines()[-lines:]) or "(no output)"


def start(daemon: Daemon[T], *, timeout: float, on_start: Callable[[str], None] | None = None,
          poll: float = 0.1) -> T:
    """Start the daemon in the background and wait until it answers; LaunchFailed says why not."""
    if port_in_use(daemon.port):
        raise LaunchFailed(
            f"port {daemon.port} on 127.0.0.1 is taken by another program, so {daemon.what} cannot "
            f"start there; free it or choose another port with {daemon.port_variable}=NNNN")
    if on_start:
        on_start(f"starting {daemon.what} on 127.0.0.1:{daemon.port} (log: {daemon.log})")
    with daemon.output.open("ab") as out:
        process = subprocess.Popen([sys.executable, "-m", daemon.module, *daemon.args],
                                   stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    logs = tuple(dict.fromkeys((daemon.output, daemon.log)))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LaunchFailed(f"{daemon.what} exited with code {process.returncode}; last lines of "
                               f"{', '.join(map(str, logs))}:\n{tail(logs)}")
        found = daemon.answers()
        if found is not None:
            return found
        time.sleep(poll)
    if daemon.stop_when_late:
        process.terminate()
    raise LaunchFailed(f"{daemon.what} did not answer within {timeout:.0f} s; see {daemon.log}")


def alive(pid: int) -> bool:
    """True while the process runs (a child of ours that exited is reaped, not counted)."""
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def stop(pid: int, timeout: float) -> None:
    """SIGTERM the daemon and wait for it to exit; SIGKILL when it is still there after `timeout`."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if _wait_gone(pid, timeout):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _wait_gone(pid, 5.0)
