"""The host's model cache, content-addressed, under the agent's home (`<home>/models`):

    blobs/<sha256>          every file once, by content (read-only)
    partial/<key>.part      files on their way in (kept across a dropped link, so a transfer resumes)
    manifests/<id>.json     one per model version that is complete
    pending/<id>.json       versions on their way in (their files are kept until they are complete)
    trees/<id>/…            what replicas mount: hard links to the blobs at the files' paths (a hub
                            repo: huggingface_hub's cache layout, see layout.py)
    usage.json              when each version was last used;  limit.json: the size limit

Every API and replica on the host shares it. A blob whose only link is its own (no tree holds it)
belongs to no version and is removed. Versions no replica uses are evicted, least recently used
first, when a new one needs the room; one that cannot fit is refused before anything is fetched.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import secrets
import shutil
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from workbench.agent.models.layout import hub_folder

from workbench.wire.errors import BadRequest, Conflict, NotFound, TooLarge
from workbench.wire.model_cache import (
    SHA256,
    BlobState,
    CachedModel,
    CacheReport,
    ModelManifest,
    PrepareAnswer,
)

log = logging.getLogger("workbench.agent.models")

CHUNK = 1 << 20
#: room kept free on the cache's disk besides what the cache holds
DISK_MARGIN = 64 << 20
#: a partial file nobody wrote to for this long is removed when room is made
STALE_PARTIAL_SECONDS = 24 * 3600.0


class DiskFull(TooLarge):
    """The disk under the cache filled up while a file was written; the partial file is gone."""


class NoRoom(TooLarge):
    """A model version does not fit in the cache (its limit, or the disk), even after evicting
    every version no replica uses; nothing was fetched."""


class ChecksumMismatch(BadRequest):
    """What arrived is not the file the manifest names; it was discarded."""


def _sha256_of(path: Path, limit: int | None = None) -> hashlib._Hash:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        left = limit
        while left is None or left > 0:
            block = handle.read(CHUNK if left is None else min(CHUNK, left))
            if not block:
                break
            digest.update(block)
            if left is not None:
                left -= len(block)
    return digest


def _size(count: int) -> str:
    """Bytes for messages: "1.25 GB", "2.1 MB"."""
    return f"{count / 1e9:.2f} GB" if abs(count) >= 10**9 else f"{count / 1e6:.1f} MB"


def _disk_full(error: OSError) -> bool:
    return error.errno in (errno.ENOSPC, errno.EDQUOT)


def _writable_tree(path: Path) -> None:
    """Give a tree's folders their write bit back (they are read-only) so it can be removed."""
    for current, dirs, _ in os.walk(path):
        for name in dirs:
            full = Path(current) / name
            if not full.is_symlink():
                with contextlib.suppress(OSError):
                    full.chmod(0o755)
    with contextlib.suppress(OSError):
        path.chmod(0o755)


def _remove_tree(path: Path) -> None:
    if path.exists() or path.is_symlink():
        _writable_tree(path)
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class BlobWriter:
    """Appends to one partial file, hashing as it goes; `finish` checks and files it as a blob.

    A disk that fills up removes the partial file (DiskFull); a write that stops half-way (a
    dropped link) leaves it for the next writer to continue from its size."""

    store: ModelStore
    sha256: str
    size: int | None
    path: Path
    offset: int
    handle: object
    digest: hashlib._Hash
    lock: threading.Lock

    def write(self, data: bytes) -> None:
        if self.size is not None and self.offset + len(data) > self.size:
            self.abort()
            raise BadRequest(f"more bytes than {self.sha256[:12]}'s {self.size}: the upload is not that file")
        try:
            self.handle.write(data)  # type: ignore[attr-defined]
        except OSError as error:
            self.abort()
            if _disk_full(error):
                raise DiskFull(f"the disk under {self.store.root} filled up while receiving "
                               f"{self.sha256[:12]} ({self.offset} of {self.size} bytes); the partial "
                               "file was removed. Free disk space (or lower the cache's limit) and try again"
                               ) from None
            raise
        self.digest.update(data)
        self.offset += len(data)

    def close(self) -> None:
        """Keep what arrived (a transfer that stopped resumes from here)."""
        with contextlib.suppress(OSError):
            self.handle.close()  # type: ignore[attr-defined]
        if self.lock.locked():
            self.lock.release()

    def abort(self) -> None:
        """Drop what arrived."""
        self.close()
        self.path.unlink(missing_ok=True)

    def finish(self) -> BlobState:
        """Check the bytes against the sha256 (a mismatch discards them) and file them as a blob."""
        try:
            try:
                self.handle.flush()  # type: ignore[attr-defined]
                os.fsync(self.handle.fileno())  # type: ignore[attr-defined]
            except OSError as error:
                self.abort()
                if _disk_full(error):
                    raise DiskFull(f"the disk under {self.store.root} filled up while receiving "
                                   f"{self.sha256[:12]}; the partial file was removed") from None
                raise
            got = self.digest.hexdigest()
            if got != self.sha256:
                self.abort()
                raise ChecksumMismatch(f"the file that arrived as {self.sha256[:12]} has sha256 {got[:12]} "
                                       f"({self.offset} bytes); it was discarded")
            self.handle.close()  # type: ignore[attr-defined]
            return self.store.file_blob(self.path, self.sha256)
        finally:
            self.close()


class ModelStore:
    """The cache under `root`; safe to use from several threads."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.partial = root / "partial"
        self.manifests = root / "manifests"
        self.trees = root / "trees"
        self.pending = root / "pending"
        self._usage_path = root / "usage.json"
        self._limit_path = root / "limit.json"
        self._lock = threading.RLock()
        self._writers: dict[str, threading.Lock] = {}
        self._writers_guard = threading.Lock()

    def ensure_dirs(self) -> None:
        for folder in (self.root, self.blobs, self.partial, self.manifests, self.trees, self.pending):
            folder.mkdir(parents=True, exist_ok=True)

    # -- blobs -----------------------------------------------------------------------------------
    def blob_path(self, sha256: str) -> Path:
        if not SHA256.match(sha256):
            raise BadRequest(f"{sha256!r} is not a sha256 (64 lowercase hex digits)")
        return self.blobs / sha256

    def partial_path(self, key: str) -> Path:
        return self.partial / f"{key}.part"

    def has_blob(self, sha256: str) -> bool:
        return self.blob_path(sha256).is_file()

    def blob_state(self, sha256: str) -> BlobState:
        blob = self.blob_path(sha256)
        if blob.is_file():
            return BlobState(sha256=sha256, size=blob.stat().st_size, complete=True)
        partial = self.partial_path(sha256)
        size = partial.stat().st_size if partial.is_file() else 0
        return BlobState(sha256=sha256, size=size, complete=False)

    def open_writer(self, sha256: str, size: int | None, offset: int) -> BlobWriter:
        """A writer that continues the partial file of `sha256` at `offset` (which must be its size:
        Conflict otherwise, naming the size to resume from)."""
        path = self.partial_path(self.blob_path(sha256).name)
        with self._writers_guard:
            lock = self._writers.setdefault(sha256, threading.Lock())
        if not lock.acquire(blocking=False):
            raise Conflict(f"{sha256[:12]} is being received already")
        try:
            if self.has_blob(sha256):
                raise Conflict(f"{sha256[:12]} is complete already")
            have = path.stat().st_size if path.is_file() else 0
            if offset != have:
                raise Conflict(f"the host has {have} bytes of {sha256[:12]}, not {offset}: "
                               f"resume from {have}")
            if size is not None and offset > size:
                raise BadRequest(f"offset {offset} is past the end of {sha256[:12]} ({size} bytes)")
            self.partial.mkdir(parents=True, exist_ok=True)
            digest = _sha256_of(path) if have else hashlib.sha256()
            handle = path.open("ab")
        except BaseException:
            lock.release()
            raise
        return BlobWriter(self, sha256, size, path, offset, handle, digest, lock)

    def finish_partial(self, sha256: str, size: int | None) -> BlobState:
        """A partial file written from outside (SFTP): check it and file it as a blob."""
        writer = self.open_writer(sha256, size, self.blob_state(sha256).size)
        if size is not None and writer.offset != size:
            have = writer.offset
            writer.close()
            raise Conflict(f"the host has {have} of {size} bytes of {sha256[:12]}: send the rest first")
        return writer.finish()

    def file_blob(self, path: Path, sha256: str) -> BlobState:
        """Move a checked file into blobs/ (read-only)."""
        target = self.blob_path(sha256)
        path.chmod(0o444)
        os.replace(path, target)
        return BlobState(sha256=sha256, size=target.stat().st_size, complete=True)

    def open_blob(self, sha256: str) -> Path:
        path = self.blob_path(sha256)
        if not path.is_file():
            raise NotFound(f"no file {sha256[:12]} in this host's cache")
        return path

    # -- versions ----------------------------------------------------------------------------------
    @staticmethod
    def check_id(model_id: str) -> str:
        if not SHA256.match(model_id):
            raise BadRequest(f"{model_id!r} is not a model version id (64 lowercase hex digits)")
        return model_id

    def manifest(self, model_id: str) -> ModelManifest | None:
        """A complete version's manifest (every file's sha256 known and filed), or None."""
        path = self.manifests / f"{self.check_id(model_id)}.json"
        try:
            manifest = ModelManifest.model_validate_json(path.read_bytes())
        except (OSError, ValueError):
            return None
        return manifest if (self.trees / model_id).is_dir() else None

    def tree(self, model_id: str) -> Path:
        return self.trees / self.check_id(model_id)

    def complete(self, model_id: str) -> bool:
        self.check_id(model_id)
        return (self.manifests / f"{model_id}.json").is_file() and (self.trees / model_id).is_dir()

    def manifests_all(self) -> list[ModelManifest]:
        found = []
        for path in sorted(self.manifests.glob("*.json")):
            if not SHA256.match(path.stem):
                continue
            manifest = self.manifest(path.stem)
            if manifest is not None:
                found.append(manifest)
        return found

    def prepare(self, manifest: ModelManifest, in_use: set[str]) -> PrepareAnswer:
        """What of `manifest` the cache lacks, after making room for it (evicting versions no
        replica uses, least recently used first). NoRoom when it cannot fit."""
        self.ensure_dirs()
        with self._lock:
            if self.complete(manifest.id):
                self.touch(manifest.id)
                return PrepareAnswer(id=manifest.id, complete=True, partial_dir=str(self.partial))
            missing: dict[str, int] = {}
            unknown = 0
            for item in manifest.files:
                if item.sha256 is None:
                    unknown += item.size or 0
                elif item.sha256 not in missing and not self.has_blob(item.sha256):
                    missing[item.sha256] = item.size or 0
            partial = {sha: self.blob_state(sha).size for sha in missing}
            partial = {sha: size for sha, size in partial.items() if size}
            need = sum(missing.values()) - sum(partial.values()) + unknown
            evicted = self.make_room(need, keep=in_use | {manifest.id}, label=manifest.label)
            self._write_json(self.pending / f"{manifest.id}.json",
                             sorted({f.sha256 for f in manifest.files if f.sha256}))
            return PrepareAnswer(id=manifest.id, complete=False, missing=sorted(missing),
                                 missing_bytes=max(0, need), partial=partial, partial_dir=str(self.partial),
                                 evicted=evicted)

    def commit(self, manifest: ModelManifest) -> CachedModel:
        """File a version whose blobs are all here: its tree, then its manifest."""
        self.ensure_dirs()
        with self._lock:
            if self.complete(manifest.id):
                self.touch(manifest.id)
                return self._entry(self.manifest(manifest.id) or manifest, {}, {})
            unknown = [f.path for f in manifest.files if f.sha256 is None]
            if unknown:
                raise BadRequest(f"{manifest.label}: no sha256 for {', '.join(unknown[:3])}"
                                 + (f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""))
            lacking = sorted({f.sha256 for f in manifest.files if f.sha256 and not self.has_blob(f.sha256)})
            if lacking:
                raise Conflict(f"{manifest.label}: the host lacks {len(lacking)} of its files "
                               f"({', '.join(s[:12] for s in lacking[:3])}); send them first")
            staging = self.trees / f".{manifest.id}-{secrets.token_hex(4)}"
            try:
                self._build_tree(manifest, staging)
                os.replace(staging, self.tree(manifest.id))
            except BaseException:
                _remove_tree(staging)
                raise
            path = self.manifests / f"{manifest.id}.json"
            temporary = path.with_suffix(".tmp")
            temporary.write_text(manifest.model_dump_json(indent=1))
            os.replace(temporary, path)
            (self.pending / f"{manifest.id}.json").unlink(missing_ok=True)
            self.touch(manifest.id)
            log.info("model %s is in the cache (%d files, %d bytes)", manifest.label, len(manifest.files),
                     manifest.size)
            return self._entry(manifest, {}, {})

    def _build_tree(self, manifest: ModelManifest, root: Path) -> None:
        root.mkdir()
        if manifest.kind == "hf":
            self._build_hub_tree(manifest, root)
        else:
            for item in manifest.files:
                assert item.sha256 is not None
                target = root / item.path
                target.parent.mkdir(parents=True, exist_ok=True)
                os.link(self.blob_path(item.sha256), target)
        for current, dirs, _ in os.walk(root, topdown=False):
            for name in dirs:
                (Path(current) / name).chmod(0o555)
        root.chmod(0o555)

    def _build_hub_tree(self, manifest: ModelManifest, root: Path) -> None:
        """huggingface_hub's layout: blobs by ETag, the snapshot's files as relative symlinks, refs."""
        assert manifest.repo is not None and manifest.commit is not None
        folder = root / hub_folder(manifest.repo)
        blobs, snapshot = folder / "blobs", folder / "snapshots" / manifest.commit
        blobs.mkdir(parents=True)
        snapshot.mkdir(parents=True)
        for item in manifest.files:
            assert item.sha256 is not None
            name = item.etag or item.sha256
            blob = blobs / name
            if not blob.exists():
                os.link(self.blob_path(item.sha256), blob)
            link = snapshot / item.path
            link.parent.mkdir(parents=True, exist_ok=True)
            depth = len(PurePosixPath(item.path).parts) - 1
            link.symlink_to(PurePosixPath(*([".."] * (depth + 2)), "blobs", name))
        (folder / "refs").mkdir()
        refs = {manifest.revision or "main", "main"} - {manifest.commit}
        for ref in refs:
            ref_path = folder / "refs" / ref
            ref_path.parent.mkdir(parents=True, exist_ok=True)
            ref_path.write_text(manifest.commit)

    def remove(self, model_id: str, in_use: set[str]) -> None:
        """Remove a version (Conflict while a replica uses it) and the files only it held."""
        self.check_id(model_id)
        with self._lock:
            if model_id in in_use:
                raise Conflict(f"model {model_id[:12]} is used by a replica on this host; delete the API "
                               "(or scale it to 0) first")
            if not (self.manifests / f"{model_id}.json").exists() and not self.tree(model_id).exists():
                raise NotFound(f"no model {model_id[:12]} in this host's cache")
            (self.manifests / f"{model_id}.json").unlink(missing_ok=True)
            _remove_tree(self.tree(model_id))
            usage = self._usage()
            usage.pop(model_id, None)
            self._write_json(self._usage_path, usage)
            self.collect()

    def _pending_blobs(self) -> set[str]:
        """The files of versions on their way in (a stale one, untouched for a day, is dropped)."""
        kept: set[str] = set()
        now = time.time()
        for path in self.pending.glob("*.json") if self.pending.is_dir() else []:
            with contextlib.suppress(OSError, ValueError):
                if now - path.stat().st_mtime > STALE_PARTIAL_SECONDS:
                    path.unlink()
                    continue
                kept.update(str(sha) for sha in json.loads(path.read_text()))
        return kept

    def collect(self) -> int:
        """Remove blobs no tree links to (unless a version on its way in needs them), and stale
        partial files; the bytes freed."""
        freed = 0
        with self._lock:
            pending = self._pending_blobs()
            for blob in self.blobs.iterdir() if self.blobs.is_dir() else []:
                with contextlib.suppress(OSError):
                    info = blob.stat()
                    if info.st_nlink <= 1 and blob.name not in pending:
                        blob.unlink()
                        freed += info.st_size
            now = time.time()
            for part in self.partial.glob("*.part") if self.partial.is_dir() else []:
                with contextlib.suppress(OSError):
                    info = part.stat()
                    if now - info.st_mtime > STALE_PARTIAL_SECONDS:
                        part.unlink()
                        freed += info.st_size
            for stray in self.trees.glob(".*") if self.trees.is_dir() else []:
                _remove_tree(stray)
        return freed

    # -- room ----------------------------------------------------------------------------------
    def used_bytes(self) -> tuple[int, int]:
        """(bytes in blobs, bytes in partial files)."""
        return (sum(p.stat().st_size for p in self._files(self.blobs)),
                sum(p.stat().st_size for p in self._files(self.partial)))

    @staticmethod
    def _files(folder: Path) -> Iterable[Path]:
        if not folder.is_dir():
            return []
        return [p for p in folder.iterdir() if p.is_file()]

    def room(self) -> tuple[int, str]:
        """Bytes a new version may take now, and what limits it (for messages)."""
        free = shutil.disk_usage(self.root).free - DISK_MARGIN
        limit = self.limit()
        if limit is None:
            return max(0, free), f"{_size(free)} free on the disk under {self.root}"
        blobs, partial = self.used_bytes()
        under_limit = limit - blobs - partial
        if under_limit <= free:
            return max(0, under_limit), (f"{_size(max(0, under_limit))} left under the cache limit of "
                                         f"{_size(limit)}")
        return max(0, free), f"{_size(free)} free on the disk under {self.root}"

    def make_room(self, need: int, *, keep: set[str], label: str) -> list[str]:
        """Evict versions not in `keep`, least recently used first, until `need` bytes fit; NoRoom
        (nothing evicted) when even that would not do."""
        with self._lock:
            room, why = self.room()
            if need <= room:
                return []
            usage = self._usage()
            candidates = sorted((m for m in self.manifests_all() if m.id not in keep),
                                key=lambda m: usage.get(m.id, 0.0))
            keep_blobs: set[str | None] = {f.sha256 for m in self.manifests_all() if m.id in keep
                                           for f in m.files}
            keep_blobs |= self._pending_blobs()
            freeable = sum(self._only_in(m, keep_blobs) for m in candidates)
            if need > room + freeable:
                raise NoRoom(
                    f"{label} needs {_size(need)} more in this host's model cache, which has {why}"
                    + (f" even after evicting {len(candidates)} unused model(s)" if candidates else "")
                    + ". Free disk space, raise the limit (`workbench host set HOST --cache-limit 500Gi`), "
                    "or remove models (`workbench model rm`); nothing was fetched")
            evicted = []
            for manifest in candidates:
                if need <= room:
                    break
                log.info("evicting model %s (last used %s) to make room for %s", manifest.label,
                         time.ctime(usage.get(manifest.id, 0.0)), label)
                self.remove(manifest.id, in_use=set())
                evicted.append(manifest.id)
                room, why = self.room()
            return evicted

    def _only_in(self, manifest: ModelManifest, keep_blobs: set[str | None]) -> int:
        """Bytes evicting `manifest` frees at most (its blobs no kept version shares)."""
        seen: set[str] = set()
        total = 0
        for item in manifest.files:
            if item.sha256 and item.sha256 not in keep_blobs and item.sha256 not in seen:
                seen.add(item.sha256)
                total += item.size or 0
        return total

    # -- limit and usage -----------------------------------------------------------------------
    def limit(self) -> int | None:
        try:
            value = json.loads(self._limit_path.read_text()).get("limit_bytes")
        except (OSError, ValueError, AttributeError):
            return None
        return int(value) if isinstance(value, int) and value > 0 else None

    def set_limit(self, limit_bytes: int | None) -> None:
        self.ensure_dirs()
        self._write_json(self._limit_path, {"limit_bytes": limit_bytes})

    def _usage(self) -> dict[str, float]:
        try:
            data = json.loads(self._usage_path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {k: float(v) for k, v in data.items() if isinstance(v, int | float)}

    def touch(self, model_id: str) -> None:
        with self._lock:
            usage = self._usage()
            usage[model_id] = time.time()
            self._write_json(self._usage_path, usage)

    def _write_json(self, path: Path, data: object) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(3)}")
        temporary.write_text(json.dumps(data))
        os.replace(temporary, path)

    # -- reports -------------------------------------------------------------------------------
    def _entry(self, manifest: ModelManifest, used_by: dict[str, set[str]],
               replicas: dict[str, list[str]]) -> CachedModel:
        sizes: dict[str, int] = {}
        for item in manifest.files:
            sizes[item.sha256 or item.path] = item.size or 0
        return CachedModel(id=manifest.id, name=manifest.name, kind=manifest.kind, source=manifest.source,
                           repo=manifest.repo, revision=manifest.revision, commit=manifest.commit,
                           size_bytes=sum(sizes.values()), files=len(manifest.files),
                           last_used=(time.time() if manifest.id in used_by
                                      else self._usage().get(manifest.id)),
                           used_by=sorted(used_by.get(manifest.id, set())),
                           replicas=replicas.get(manifest.id, []), path=str(self.tree(manifest.id)))

    def report(self, used_by: dict[str, set[str]], replicas: dict[str, list[str]]) -> CacheReport:
        """The cache: its versions (who uses each), its size, limit and the disk's free bytes."""
        self.ensure_dirs()
        blobs, partial = self.used_bytes()
        return CacheReport(root=str(self.root), used_bytes=blobs, partial_bytes=partial,
                           limit_bytes=self.limit(),
                           free_bytes=shutil.disk_usage(self.root).free,
                           models=[self._entry(m, used_by, replicas) for m in self.manifests_all()])


def file_sha256(path: Path) -> str:
    return _sha256_of(path).hexdigest()
