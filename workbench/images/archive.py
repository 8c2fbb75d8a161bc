"""Deterministic tar.gz of context entries: sorted, fixed mtime, root-owned, no gzip name/time."""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Iterable
from pathlib import Path

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


def write_tar_gz(entries: Iterable[Entry], path: Path) -> int:
    """Write the entries (with their parent folders) to `path`; return the size in bytes."""
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
                with entry.source.open("rb") as handle:
                    size = entry.source.stat().st_size
                    tar.addfile(_info(name, size=size, mode=entry.mode), handle)
    return path.stat().st_size
