"""One controller per home: an fcntl lock on controller.lock, held for the process lifetime."""

from __future__ import annotations

import fcntl
import os
from typing import IO

from workbench.controller.home import ControllerHome
from workbench.wire.errors import Conflict


class AlreadyRunning(Conflict):
    """Another controller holds the lock; the message names its pid and port."""


class ControllerLock:
    def __init__(self, home: ControllerHome):
        self.home = home
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        self.home.create()
        handle = self.home.lock.open("a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid = handle.read().strip() or "?"
            handle.close()
            info = self.home.read_info() or {}
            port = info.get("port", "?")
            raise AlreadyRunning(
                f"another controller is running (pid {pid} on port {port}) with home {self.home.root}; "
                "stop it first (`workbench serve` runs one per home)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
