"""Secrets the controller keeps on disk for direct-mode hosts: each agent's bearer token and a copy
of the CA file that verifies it, in `$WORKBENCH_HOME/controller/hosts/` (folder 0700, files 0600).

Never in the SQLite file, never logged. A write is all or nothing: a failure leaves no file (and
no temporary file) behind.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from workbench import paths


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` with mode 0600, atomically (a temporary file, then a rename)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class HostSecrets:
    """The secrets folder; `default()` is the one under the workstation's home."""

    root: Path

    @classmethod
    def default(cls) -> HostSecrets:
        return cls(paths.home() / "controller" / "hosts")

    def folder(self) -> Path:
        """The folder, created with mode 0700 when missing."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self.root

    def token_path(self, name: str) -> Path:
        return self.root / f"{name}.token"

    def ca_path(self, name: str) -> Path:
        return self.root / f"{name}.ca.pem"

    def save(self, name: str, token: str, ca_source: Path | None = None) -> None:
        """Keep a host's token (and a copy of its CA file, else remove an old copy). On failure
        nothing of this host is left, and the error says what could not be read or written."""
        try:
            ca = ca_source.read_bytes() if ca_source is not None else None
            folder = self.folder()
            write_private(folder / f"{name}.token", token.encode() + b"\n")
            if ca is not None:
                write_private(folder / f"{name}.ca.pem", ca)
            else:
                self.ca_path(name).unlink(missing_ok=True)
        except BaseException:
            self.forget(name)
            raise

    def token(self, name: str) -> str | None:
        """The host's token, or None when its file is missing, unreadable or empty."""
        try:
            return self.token_path(name).read_text().strip() or None
        except OSError:
            return None

    def ca_file(self, name: str) -> Path | None:
        """The copy of the host's CA file, when one was kept."""
        path = self.ca_path(name)
        return path if path.is_file() else None

    def forget(self, name: str) -> None:
        """Delete the host's files (what is not a file there is not ours, and stays)."""
        for path in (self.token_path(name), self.ca_path(name)):
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                path.unlink()
