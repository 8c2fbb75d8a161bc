"""Deterministic tar.gz of context entries: sorted, fixed mtime, root-owned, no gzip name/time."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import BinaryIO

from workbench.images.errors import ContextChanged
from workbench.images.files import Entry

#: 2020-01-01T00:00:00Z: fixed so that equal contents give equal archives.
FIXED_MTIME = 1577836800


def _info(name: str, *, size: int = 0, mode: int = 0o644, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = mode
    info.mtime = FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    return info


class _Hashing:
    """A reader that hashes what passes through it (tarfile copies a member with read())."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.sha = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.sha.update(data)
        return data


def write_tar_gz(entries: Iterable[Entry], path: Path, expected: Mapping[str, str] | None = None) -> int:
    """Write the entries (with their parent folders) to `path`; return the size in bytes.

    `expected` maps entry names to the sha256 they had when planned: a source file that differs
    now, or is gone, raises ContextChanged (the caller removes the partial file)."""
    expected = expected or {}
    items = sorted(entries, key=lambda entry: entry.name)
    folders = sorted({"/".join(e.name.split("/")[:i])
                      for e in items for i in range(1, e.name.count("/") + 1)})
    members = sorted([(name, None) for name in folders] + [(e.name, e) for e in items],
                     key=lambda pair: pair[0])
    with path.open("wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, entry in members:
            if entry is None:
                tar.addfile(_info(name, mode=0o755, directory=True))
            elif entry.data is not None:
                tar.addfile(_info(name, size=len(entry.data), mode=entry.mode),
                            io.BytesIO(entry.data))
            else:
                assert entry.source is not None
                try:
                    with entry.source.open("rb") as handle:
                        size = entry.source.stat().st_size
                        reader = _Hashing(handle)
                        tar.addfile(_info(name, size=size, mode=entry.mode), reader)
                except OSError as error:
                    if name in expected:
                        raise ContextChanged(f"{entry.source} changed or is gone since the build was "
                                             f"planned ({error.strerror or error})") from None
                    raise
                want = expected.get(name)
                if want is not None and reader.sha.hexdigest() != want:
                    raise ContextChanged(f"{entry.source} changed since the build was planned")
    return path.stat().st_size
