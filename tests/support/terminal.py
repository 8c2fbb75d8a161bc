"""Running a command on a real pseudo-terminal of a given size (what a user's terminal is)."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import termios
import time
from collections.abc import Mapping, Sequence

#: ANSI escape sequences (CSI, OSC) a terminal program writes around its text
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[()][A-Z0-9]|\x1b[=>]")


def run_on_terminal(argv: Sequence[str], env: Mapping[str, str], *, columns: int = 80, rows: int = 24,
                    timeout: float = 120) -> tuple[int, str]:
    """Run `argv` with stdin, stdout and stderr on a new pty of `columns` x `rows`; its exit code and
    what it wrote, escape sequences removed and line ends as "\\n"."""
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    clean = {k: v for k, v in env.items() if k not in ("COLUMNS", "LINES")}
    process = subprocess.Popen(list(argv), stdin=follower, stdout=follower, stderr=follower,
                               env=dict(clean, TERM="xterm-256color"), start_new_session=True)
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"{' '.join(argv)} did not finish within {timeout:.0f} s")
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                try:
                    data = os.read(leader, 65536)
                except OSError:  # EIO: every writer closed the pty
                    data = b""
                if not data:
                    break
                chunks.append(data)
            elif process.poll() is not None:
                break
        code = process.wait(timeout=10)
    finally:
        os.close(leader)
    text = ANSI.sub("", b"".join(chunks).decode(errors="replace"))
    return code, text.replace("\r\n", "\n").replace("\r", "")
