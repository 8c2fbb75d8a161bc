"""`model:` / `models:` in workbench.yaml: the weights an API's replicas see read-only.

A source is a file or folder on the workstation (`./weights`, `/data/ckpt`), a Hugging Face repo
(`hf://org/name` or `hf://org/name@revision`), or an `https://` URL (with an optional `sha256`).
The weights never go into the API's image: each host keeps them once in its cache.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from workbench.wire.model_cache import REPO_ID, SHA256

MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")
MOUNT_ROOT = "/models"
#: Paths inside a predictor's container that a model may not be mounted over.
RESERVED_MOUNTS = ("/", "/app", "/bin", "/dev", "/etc", "/lib", "/proc", "/sys", "/usr", "/tmp")

SourceKind = Literal["local", "hf", "url"]


@dataclass(frozen=True)
class ModelSource:
    """A parsed `source`: a workstation path, a hub repo (and revision), or a URL."""

    kind: SourceKind
    text: str
    path: str | None = None  # local: as written (relative to the project folder unless absolute)
    repo: str | None = None  # hf: org/name
    revision: str = "main"  # hf
    url: str | None = None  # url

    def local_path(self, project: Path) -> Path:
        """A local source's path on the workstation (relative ones are inside `project`)."""
        assert self.path is not None
        path = Path(self.path).expanduser()
        return (path if path.is_absolute() else Path(project) / path).resolve()

    @property
    def default_name(self) -> str:
        if self.kind == "hf":
            assert self.repo is not None
            raw = self.repo.split("/", 1)[1]
        elif self.kind == "url":
            assert self.url is not None
            raw = PurePosixPath(unquote(urlsplit(self.url).path)).name or "model"
        else:
            assert self.path is not None
            raw = PurePosixPath(self.path.rstrip("/")).name or "model"
        name = re.sub(r"[^a-z0-9._-]+", "-", raw.lower()).strip("-._")[:63]
        return name or "model"


def parse_source(text: str) -> ModelSource:
    """`hf://org/name[@revision]`, `https://…`, or a path; ValueError saying what is wrong."""
    text = text.strip()
    if not text:
        raise ValueError("source is empty: give a folder (./weights), hf://org/name or an https:// URL")
    if text.startswith("hf://"):
        rest = text[len("hf://"):]
        repo, _, revision = rest.partition("@")
        if not REPO_ID.match(repo):
            raise ValueError(f"{text!r}: {repo!r} is not a Hugging Face repo such as hf://org/name")
        if "@" in rest and not REVISION.match(revision):
            raise ValueError(f"{text!r}: {revision!r} is not a revision (a branch, tag or commit hash)")
        return ModelSource("hf", text, repo=repo, revision=revision or "main")
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme == "https":
        parts = urlsplit(text)
        if not parts.hostname:
            raise ValueError(f"{text!r} is not a URL with a host")
        if parts.username or parts.password:
            raise ValueError(f"{text!r}: put no credentials in the URL (they would be stored and shown)")
        if not PurePosixPath(unquote(parts.path)).name:
            raise ValueError(f"{text!r} names no file (the URL's path must end in one)")
        return ModelSource("url", text, url=text)
    if scheme == "http":
        raise ValueError(f"{text!r}: use an https:// URL (weights fetched over plain http could be "
                         "changed on the way)")
    if scheme:
        raise ValueError(f"{text!r}: unknown scheme {scheme}://; use a path, hf://org/name or https://")
    if "\x00" in text:
        raise ValueError("source contains a NUL character")
    return ModelSource("local", text, path=text)


def _patterns(value: Any) -> Any:
    if isinstance(value, str):
        return [value]
    return value


class ModelSpec(BaseModel):
    """One model: its source, which repo files to take, and where replicas see it."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, description="default: the repo's, file's or folder's name")
    source: str = Field(description="./weights, /data/ckpt, hf://org/name[@revision] or https://…")
    include: list[str] | None = Field(None, description="hub repos: only files matching these globs")
    exclude: list[str] | None = Field(None, description="hub repos: leave out files matching these globs")
    sha256: str | None = Field(None, description="https sources: the file's checksum, checked on arrival")
    mount: str | None = Field(None, description="where replicas see it (default /models/<name>)")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not MODEL_NAME.match(value):
            raise ValueError(f"{value!r} is not a model name: use lowercase letters, digits, '.', '_' and "
                             "'-', at most 63 characters")
        return value

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        parse_source(value)
        return value.strip()

    @field_validator("include", "exclude", mode="before")
    @classmethod
    def _globs(cls, value: Any) -> Any:
        value = _patterns(value)
        if isinstance(value, list):
            for item in value:
                if not isinstance(item, str) or not item.strip():
                    raise ValueError(f"{item!r}: each pattern must be a glob such as *.safetensors")
        return value

    @field_validator("sha256")
    @classmethod
    def _sha256(cls, value: str | None) -> str | None:
        if value is not None:
            value = value.lower().removeprefix("sha256:")
            if not SHA256.match(value):
                raise ValueError(f"{value!r} is not a sha256 (64 hex digits)")
        return value

    @field_validator("mount")
    @classmethod
    def _mount(cls, value: str | None) -> str | None:
        if value is None:
            return value
        path = PurePosixPath(value)
        if not path.is_absolute() or ".." in path.parts or "\x00" in value:
            raise ValueError(f"{value!r} must be an absolute path such as /models/llm")
        normal = str(path)
        if normal in RESERVED_MOUNTS:
            raise ValueError(f"{value!r} would hide the container's own {normal}; use e.g. /models/llm")
        return normal

    @model_validator(mode="after")
    def _fits_source(self) -> ModelSpec:
        kind = self.parsed.kind
        if kind != "hf" and (self.include is not None or self.exclude is not None):
            raise ValueError("include and exclude pick files of a hub repo (hf://org/name); this source "
                             "is not one")
        if kind != "url" and self.sha256 is not None:
            raise ValueError("sha256 checks an https:// download; a folder's and a repo's files are "
                             "checked by their own checksums")
        return self

    @property
    def parsed(self) -> ModelSource:
        return parse_source(self.source)

    @property
    def model_name(self) -> str:
        return self.name or self.parsed.default_name

    @property
    def mount_path(self) -> str:
        return self.mount or f"{MOUNT_ROOT}/{self.model_name}"


def check_models(models: list[ModelSpec]) -> list[ModelSpec]:
    """Names and mounts unique within an API."""
    names: set[str] = set()
    mounts: set[str] = set()
    for model in models:
        if model.model_name in names:
            raise ValueError(f"two models are named {model.model_name!r}; set `name` on one of them")
        if model.mount_path in mounts:
            raise ValueError(f"two models are mounted at {model.mount_path}; set `mount` on one of them")
        names.add(model.model_name)
        mounts.add(model.mount_path)
    return models
