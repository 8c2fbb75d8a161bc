"""Reading replica log files: the last lines, and following new output."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

from workbench.agent.runtimes.base import LogFollower


def tail_bytes(path: Path, lines: int, chunk: int = 64 * 1024) -> bytes:
    """The last `lines` lines of a file (at most the last few MiB are read)."""
    if lines <= 0:
        return b""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            end = f.tell()
            pos, data = end, b""
            while pos > 0 and data.count(b"\n") <= lines and end - pos < 4 * 1024 * 1024:
                pos = max(0, pos - chunk)
                f.seek(pos)
                data = f.read(end - pos)
    except OSError:
        return b""
    parts = data.splitlines(keepends=True)
    return b"".join(parts[-lines:])


def tail_lines(path: Path, lines: int) -> list[str]:
    return tail_bytes(path, lines).decode(errors="replace").splitlines()


class FileFollower(LogFollower):
    """Yields the last `tail` lines, then new bytes as they are appended, until closed
    or until the file is removed."""

    def __init__(self, path: Path, tail: int, poll: float = 0.25) -> None:
        self.path = path
        self.tail = tail
        self.poll = poll
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        first = tail_bytes(self.path, self.tail)
        if first:
            yield first
        try:
            f = open(self.path, "rb")  # noqa: SIM115 - closed by the with below
        except OSError:
            return
        with f:
            f.seek(0, os.SEEK_END)
            while not self._closed.is_set():
                data = f.read(64 * 1024)
                if data:
                    yield data
                    continue
                if not self.path.exists():
                    return
                self._closed.wait(self.poll)

    def close(self) -> None:
        self._closed.set()
