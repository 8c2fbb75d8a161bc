"""Model weights in the hosts' caches: what one model version is (its manifest), what a replica
mounts, how much of a version a host holds, and the progress of getting it there.

A model version is named by its `id`: the sha256 of what makes it that version (a workstation
folder's files and their sha256, a hub repo's commit and files, a URL's checksum). Every host keeps
its files by sha256 and a manifest per version; a replica sees a version read-only at its mount.

Shared by the agent (on every box) and its clients on the workstation: pydantic only.
"""

from __future__ import annotations

import re
import time
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from workbench.wire.replica import Strict

#: The environment variable that tells a replica where its (first) model's files are.
MODEL_DIR_ENV = "WORKBENCH_MODEL_DIR"
#: The same for each model by name: WORKBENCH_MODEL_DIR_<NAME> (upper case, '-' as '_').
MODEL_DIR_PREFIX = MODEL_DIR_ENV + "_"
#: How an API's message starts while its replicas wait for their models to reach their hosts.
WAITING_FOR_WEIGHTS = "waiting for weights: "
SHA256 = re.compile(r"^[0-9a-f]{64}$")
ETAG = re.compile(r"^[0-9A-Za-z._:+/=-]{1,128}$")
#: hub repos ("org/name"), as the hub spells them
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")

ModelKind = Literal["files", "hf"]


def model_dir_env(name: str) -> str:
    """WORKBENCH_MODEL_DIR_<NAME> for the model `name`."""
    return MODEL_DIR_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def check_relative(path: str) -> str:
    """A file's path inside a model: relative, posix, no '..', '.' or empty parts."""
    parts = path.split("/")
    if (not path or path.startswith("/") or "\\" in path or "\x00" in path
            or any(part in ("", ".", "..") for part in parts)):
        raise ValueError(f"{path!r} is not a relative path inside a model")
    return path


class ModelFile(Strict):
    """One file of a model version."""

    path: str = Field(description="its path in the model (a repo's path for hub sources)")
    size: int | None = Field(None, ge=0, description="bytes; None when the source does not say")
    sha256: str | None = Field(None, description="known up front for workstation files and pinned URLs; "
                               "filled in by the host that fetches the rest")
    #: hub sources: the blob's name in the hub's cache layout (its git blob id, or its LFS sha256);
    #: URLs without a sha256: the server's ETag, which tells versions apart
    etag: str | None = None
    url: str | None = Field(None, description="where a host that can reach the source fetches it")

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return check_relative(value)

    @field_validator("sha256")
    @classmethod
    def _sha256(cls, value: str | None) -> str | None:
        if value is not None and not SHA256.match(value):
            raise ValueError(f"{value!r} is not a sha256 (64 lowercase hex digits)")
        return value

    @field_validator("etag")
    @classmethod
    def _etag(cls, value: str | None) -> str | None:
        if value is not None and not ETAG.match(value):
            raise ValueError(f"{value!r} is not a usable ETag")
        return value


class ModelManifest(Strict):
    """One model version: where it comes from and its files. `id` is what every cache files it by."""

    id: str
    name: str
    kind: ModelKind = "files"
    source: str = Field(description="as the spec wrote it: ./weights, hf://org/name@rev, https://…")
    repo: str | None = None  # hub: org/name
    revision: str | None = None  # hub: what was asked for (main, a tag, a commit)
    commit: str | None = None  # hub: the commit it resolved to
    files: list[ModelFile] = Field(default_factory=list)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not SHA256.match(value):
            raise ValueError(f"{value!r} is not a model version id (64 lowercase hex digits)")
        return value

    @field_validator("repo")
    @classmethod
    def _repo(cls, value: str | None) -> str | None:
        if value is not None and not REPO_ID.match(value):
            raise ValueError(f"{value!r} is not a hub repo such as org/name")
        return value

    @field_validator("commit")
    @classmethod
    def _commit(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[0-9a-f]{40}", value):
            raise ValueError(f"{value!r} is not a commit hash (40 lowercase hex digits)")
        return value

    @field_validator("files")
    @classmethod
    def _files(cls, value: list[ModelFile]) -> list[ModelFile]:
        seen: set[str] = set()
        for item in value:
            if item.path in seen:
                raise ValueError(f"{item.path} is listed twice")
            seen.add(item.path)
        return value

    @property
    def size(self) -> int:
        """The bytes of its files (those whose size is known)."""
        return sum(f.size or 0 for f in self.files)

    @property
    def short(self) -> str:
        return self.id[:12]

    @property
    def label(self) -> str:
        """How messages name it: the model's name and its revision (or short id)."""
        version = self.commit[:12] if self.commit else self.short
        return f"{self.name} ({version})"


class ModelMount(Strict):
    """One model a replica sees, read-only: at `mount` in its container (the process runtime: at the
    host's cache path, in the environment)."""

    id: str
    name: str
    mount: str
    kind: ModelKind = "files"
    repo: str | None = None
    commit: str | None = None

    @classmethod
    def of(cls, manifest: ModelManifest, mount: str) -> ModelMount:
        return cls(id=manifest.id, name=manifest.name, mount=mount, kind=manifest.kind, repo=manifest.repo,
                   commit=manifest.commit)


class PrepareAnswer(BaseModel):
    """POST /v1/models/{id}/prepare: what of a version the host lacks, after making room for it."""

    id: str
    complete: bool = Field(description="the version is in the cache: nothing to send")
    missing: list[str] = Field(default_factory=list, description="sha256 of the files it lacks")
    missing_bytes: int = 0
    partial: dict[str, int] = Field(default_factory=dict, description="sha256 -> bytes already there")
    partial_dir: str = Field("", description="where a file being received is written (SFTP uploads)")
    evicted: list[str] = Field(default_factory=list, description="versions removed to make room")


class BlobState(BaseModel):
    """How much of one file (by sha256) the host has."""

    sha256: str
    size: int  # the bytes it has (all of them when complete)
    complete: bool


class CachedModel(BaseModel):
    """One version in a host's cache."""

    id: str
    name: str
    kind: ModelKind
    source: str
    repo: str | None = None
    revision: str | None = None
    commit: str | None = None
    size_bytes: int
    files: int
    last_used: float | None = None
    used_by: list[str] = Field(default_factory=list, description="APIs whose replicas mount it")
    replicas: list[str] = Field(default_factory=list)
    path: str = ""


class CacheReport(BaseModel):
    """GET /v1/models on an agent: its cache."""

    root: str
    used_bytes: int
    partial_bytes: int = 0
    limit_bytes: int | None = None
    free_bytes: int  # on the cache's filesystem
    models: list[CachedModel] = Field(default_factory=list)


class CacheLimitRequest(Strict):
    """PUT /v1/models/limit: the most the cache may hold (None: the disk's size)."""

    limit_bytes: int | None = Field(None, gt=0)


class FetchRequest(Strict):
    """POST /v1/models/{id}/fetch: the host gets the version from its source itself."""

    manifest: ModelManifest
    #: the hub's token (HF_TOKEN on the workstation); used for this fetch, never stored or logged
    token: str | None = Field(None, repr=False)


class ProbeRequest(Strict):
    """POST /v1/models/probe: can the host reach `url` (the source) itself?"""

    url: str
    token: str | None = Field(None, repr=False)
    timeout: float = Field(5.0, gt=0, le=60)


class ProbeAnswer(BaseModel):
    reachable: bool
    status: int | None = None
    detail: str = ""


class ModelEvent(BaseModel):
    """One NDJSON line of getting a version onto a host; the stream ends with one done or error."""

    kind: Literal["progress", "log", "done", "error"]
    id: str | None = None
    host: str | None = None
    message: str = ""
    bytes_done: int = 0
    bytes_total: int | None = None
    rate: float | None = Field(None, description="bytes per second, recently")
    via: str | None = Field(None, description="fetch (the host itself), agent API, sftp, local")


class Meter:
    """Bytes done against a total, with a recent rate and an ETA (for progress lines)."""

    def __init__(self, total: int | None, done: int = 0) -> None:
        self.total = total
        self.done = done
        self.started = time.monotonic()
        self._mark = (self.started, done)
        self.rate: float | None = None

    def add(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        at, then = self._mark
        if now - at >= 0.5:
            recent = (self.done - then) / (now - at)
            self.rate = recent if self.rate is None else 0.5 * self.rate + 0.5 * recent
            self._mark = (now, self.done)

    @property
    def eta(self) -> float | None:
        if not self.rate or self.total is None:
            return None
        return max(0.0, (self.total - self.done) / self.rate)

    def text(self) -> str:
        """"120/200 MB, 85 MB/s, ETA 1 s"."""
        done = f"{self.done / 1e6:.0f}" + (f"/{self.total / 1e6:.0f}" if self.total is not None else "")
        parts = [f"{done} MB"]
        if self.rate:
            parts.append(f"{self.rate / 1e6:.0f} MB/s")
        eta = self.eta
        if eta is not None:
            parts.append(f"ETA {eta:.0f} s")
        return ", ".join(parts)
