"""Files of a build context: one `Entry` per archive member, and the project walk."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.images.errors import ContextError
from workbench.images.ignore import IgnoreRules


@dataclass(frozen=True)
class Entry:
    """One file of the context: its archive name, and either a source file or inline bytes."""

    name: str
    source: Path | None = None
    data: bytes | None = None
    executable: bool = False

    @property
    def mode(self) -> int:
        return 0o755 if self.executable else 0o644

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.source is not None
        return self.source.read_bytes()

    def digest(self) -> str:
        """sha256 of the bytes, streamed for source files."""
        if self.data is not None:
            return hashlib.sha256(self.data).hexdigest()
        assert self.source is not None
        sha = hashlib.sha256()
        with self.source.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                sha.update(chunk)
        return sha.hexdigest()


def file_entry(name: str, path: Path) -> Entry:
    return Entry(name, source=path, executable=bool(path.stat().st_mode & stat.S_IXUSR))


def walk_files(root: Path, prefix: str, rules: IgnoreRules | None = None,
               skip: frozenset[str] = frozenset()) -> list[Entry]:
    """Regular files under `root` (symlinked files by content, symlinked folders skipped),
    named `prefix/relative/path`, sorted; `skip` holds relative folders to leave out."""
    if not root.is_dir():
        raise ContextError(f"{root} is not a folder")
    rules = rules or IgnoreRules()
    entries: list[Entry] = []
    for current, dirs, files in os.walk(root):
        base = Path(current).relative_to(root).as_posix()
        base = "" if base == "." else base + "/"
        dirs[:] = sorted(
            d for d in dirs
            if not rules.ignored(base + d, True) and (base + d) not in skip
            and not (Path(current) / d).is_symlink()
        )
        for name in sorted(files):
            rel = base + name
            path = Path(current) / name
            if rules.ignored(rel, False) or not path.is_file():
                continue  # ignored, broken symlink, socket, fifo...
            entries.append(file_entry(f"{prefix}/{rel}", path))
    entries.sort(key=lambda entry: entry.name)
    return entries


def project_files(project_dir: Path, skip: frozenset[str] = frozenset()) -> list[Entry]:
    """The user's project under `project/`, honouring the ignore rules."""
    return walk_files(project_dir, "project", IgnoreRules.for_project(project_dir), skip)


def recipe_hash(recipe: dict[str, Any]) -> str:
    """The content hash of a build recipe (its canonical JSON): what names an artifact."""
    text = json.dumps(recipe, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
