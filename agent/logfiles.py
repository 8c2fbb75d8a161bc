"""Reading replica log files: the last lines, and following new output.

A process replica's log lines each start with the time they were written (agent/logstamp.py):
``2026-01-02T13:23:37.123456Z text``. Readers drop that stamp unless asked for timestamps, and
select lines by it for `since`; a line without one (a log written before stamps) is shown as it is.
"""

from __future__ import annotations

import collections
import os
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from workbench.agent.runtimes.base import LogFollower, LogQuery

#: RFC 3339 in UTC with microseconds: sorts as text in time order
_STAMP = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z ")
STAMP_LENGTH = 27


def stamp_at(at: float) -> bytes:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()


def stamp_now() -> bytes:
    return stamp_at(time.time())


def shown(line: bytes, query: LogQuery, since: bytes | None) -> bytes | None:
    """`line` (with its newline) as the query wants it, or None when it is older than `since`."""
    if not _STAMP.match(line):
        return line
    if since is not None and line[:STAMP_LENGTH] < since:
        return None
    return line if query.timestamps else line[STAMP_LENGTH + 1:]


def _since(query: LogQuery) -> bytes | None:
    return stamp_at(query.since) if query.since is not None else None


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


def _tail(path: Path, lines: int, query: LogQuery) -> list[bytes]:
    """The last `lines` lines the query selects (each with its newline)."""
    if lines <= 0:
        return []
    since = _since(query)
    if since is None:
        raw = tail_bytes(path, lines).splitlines(keepends=True)
    else:  # the last `lines` of those since then: read the file through
        kept: collections.deque[bytes] = collections.deque(maxlen=lines)
        try:
            with open(path, "rb") as f:
                kept.extend(line for line in f if not _STAMP.match(line) or line[:STAMP_LENGTH] >= since)
        except OSError:
            return []
        raw = list(kept)
    return [text for line in raw if (text := shown(line, query, since)) is not None]


def tail_lines(path: Path, lines: int, query: LogQuery | None = None) -> list[str]:
    return [line.decode(errors="replace").rstrip("\r\n")
            for line in _tail(path, lines, query or LogQuery())]


class FileFollower(LogFollower):
    """Yields the last `tail` lines, then new lines as they are appended, until closed
    or until the file is removed."""

    def __init__(self, path: Path, tail: int, poll: float = 0.25, query: LogQuery | None = None) -> None:
        self.path = path
        self.tail = tail
        self.poll = poll
        self.query = query or LogQuery()
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        first = b"".join(_tail(self.path, self.tail, self.query))
        if first:
            yield first
        since = _since(self.query)
        try:
            f = open(self.path, "rb")  # noqa: SIM115 - closed by the with below
        except OSError:
            return
        with f:
            f.seek(0, os.SEEK_END)
            partial = b""
            while not self._closed.is_set():
                data = f.read(64 * 1024)
                if data:
                    lines = (partial + data).splitlines(keepends=True)
                    partial = lines.pop() if not lines[-1].endswith(b"\n") else b""
                    out = b"".join(text for line in lines if (text := shown(line, self.query, since)))
                    if out:
                        yield out
                    continue
                if not self.path.exists():
                    return
                self._closed.wait(self.poll)

    def close(self) -> None:
        self._closed.set()
