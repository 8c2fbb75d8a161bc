"""sha256 of workstation files, remembered by (path, size, mtime, inode) so a redeploy of the same
weights does not read them again."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

CHUNK = 1 << 20
_Key = tuple[str, int, int, int]


class Digests:
    """A process-wide memo of file digests (the controller is long-lived: it reads a file once)."""

    def __init__(self, limit: int = 100_000) -> None:
        self._known: dict[_Key, str] = {}
        self._lock = threading.Lock()
        self._limit = limit

    def sha256(self, path: Path) -> str:
        info = path.stat()
        key = (str(path), info.st_size, info.st_mtime_ns, info.st_ino)
        with self._lock:
            known = self._known.get(key)
        if known is not None:
            return known
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while block := handle.read(CHUNK):
                digest.update(block)
        value = digest.hexdigest()
        with self._lock:
            if len(self._known) >= self._limit:
                self._known.clear()
            self._known[key] = value
        return value

    def unchanged(self, path: Path, sha256: str) -> bool:
        """Whether `path` still holds `sha256` (by the memo when its stat is the same)."""
        try:
            return self.sha256(path) == sha256
        except OSError:
            return False


DIGESTS = Digests()


def same_file_system(a: Path, b: Path) -> bool:
    return os.stat(a).st_dev == os.stat(b).st_dev
