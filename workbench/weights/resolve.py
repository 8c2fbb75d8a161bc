"""A spec's model source made into a manifest — the version every host's cache files it by:

- a workstation folder or file: every file's sha256 (read here; the files are sent from here);
- a hub repo (`hf://org/name@revision`, through huggingface_hub with HF_TOKEN): the commit the
  revision points at now, and its files (include/exclude applied) with sizes, git blob ids and
  LFS sha256 — a host that reaches the hub fetches them itself;
- an https URL: its sha256 when the spec gives one, else the server's ETag (HEAD), and its size.

The version id hashes what makes the version (files and checksums; a repo's commit), not the name
it goes by, so two APIs with the same weights share one copy on each host.
"""

from __future__ import annotations

import hashlib
import json
import os
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from workbench.spec.models import ApiSpec
from workbench.spec.weights import ModelSource, ModelSpec
from workbench.weights.digests import DIGESTS, Digests
from workbench.wire.errors import BadRequest, ConnectionFailed, Failed, NotFound, Unauthorized, WorkbenchError
from workbench.wire.model_cache import ModelFile, ModelManifest, ModelMount

DEFAULT_ENDPOINT = "https://huggingface.co"
#: folders of a workstation model that are never weights (a git clone's objects, tool caches)
SKIP_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", ".cache", ".ipynb_checkpoints"})
HEAD_TIMEOUT = 15.0


class ModelSourceError(BadRequest):
    """A model's source cannot be used (no such repo or revision, refused, gone); nothing was done."""


@dataclass(frozen=True)
class PlannedModel:
    """One model of an API version: its manifest, where replicas see it, and (workstation files)
    the folder its files are read from."""

    manifest: ModelManifest
    mount: str
    source_root: str | None = None  # workstation sources: the file or folder on this machine

    @property
    def id(self) -> str:
        return self.manifest.id

    def mount_spec(self) -> ModelMount:
        return ModelMount.of(self.manifest, self.mount)

    def local_file(self, item: ModelFile) -> Path:
        """Where a workstation source's file is on this machine."""
        assert self.source_root is not None
        root = Path(self.source_root)
        return root if root.is_file() else root / item.path

    def to_json(self) -> dict[str, Any]:
        return {"manifest": self.manifest.model_dump(mode="json"), "mount": self.mount,
                "source_root": self.source_root}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PlannedModel:
        manifest = ModelManifest.model_validate(data["manifest"])
        return cls(manifest, str(data["mount"]), data.get("source_root"))


def model_hash_inputs(models: list[PlannedModel]) -> dict[str, str]:
    """What an API's content hash takes from its models: each one's version."""
    return {f"model:{m.manifest.name}": m.id for m in models}


def project_exclusions(spec: ApiSpec, project: Path) -> frozenset[str]:
    """The project-relative paths of the API's workstation models inside its project folder: they
    stay out of its build context (and so out of its image)."""
    root = project.resolve()
    out = set()
    for model in spec.model_specs:
        source = model.parsed
        if source.kind == "local":
            path = source.local_path(project)
            if path.is_relative_to(root) and path != root:
                out.add(path.relative_to(root).as_posix())
    return frozenset(out)


def version_id(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def hub_token() -> str | None:
    """HF_TOKEN from the environment (else the token `hf auth login` stored); never kept by us."""
    from huggingface_hub import get_token

    return get_token()


def resolve(spec: ModelSpec, project: Path, *, digests: Digests = DIGESTS) -> PlannedModel:
    """The manifest of `spec`'s source as it is now (reads files, asks the hub or the server)."""
    source = spec.parsed
    name = spec.model_name
    if source.kind == "local":
        return _local(source, name, spec.mount_path, project, digests)
    if source.kind == "hf":
        return _hub(source, name, spec.mount_path, spec.include, spec.exclude)
    return _url(source, name, spec.mount_path, spec.sha256)


# -- workstation files -----------------------------------------------------------------------------
def local_files(root: Path) -> list[tuple[str, Path]]:
    """(relative path, file) of a folder's regular files, sorted; a file is itself."""
    if root.is_file():
        return [(root.name, root)]
    found = []
    for current, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not (Path(current) / d).is_symlink())
        for file in sorted(files):
            path = Path(current) / file
            if path.is_file():
                found.append((path.relative_to(root).as_posix(), path))
    return found


def _local(source: ModelSource, name: str, mount: str, project: Path, digests: Digests) -> PlannedModel:
    root = source.local_path(project)
    if not root.exists():
        raise ModelSourceError(f"model {name}: {source.path} not found (looked for {root})")
    found = local_files(root)
    if not found:
        raise ModelSourceError(f"model {name}: {root} holds no files")
    try:
        files = [ModelFile(path=rel, size=path.stat().st_size, sha256=digests.sha256(path))
                 for rel, path in found]
    except OSError as error:
        raise ModelSourceError(f"model {name}: cannot read {error.filename}: {error.strerror}") from None
    identity = {"kind": "files", "files": [[f.path, f.size, f.sha256] for f in files]}
    manifest = ModelManifest(id=version_id(identity), name=name, kind="files", source=source.text,
                             files=files)
    return PlannedModel(manifest, mount, str(root))


# -- hub repos -------------------------------------------------------------------------------------
def _hub(source: ModelSource, name: str, mount: str, include: list[str] | None,
         exclude: list[str] | None) -> PlannedModel:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    from huggingface_hub.utils import filter_repo_objects

    assert source.repo is not None
    endpoint = hub_endpoint()
    token = hub_token()
    what = f"model {name} ({source.text})"
    try:
        info = HfApi(endpoint=endpoint, token=token or False).model_info(
            source.repo, revision=source.revision, files_metadata=True, timeout=30)
    except RevisionNotFoundError:
        raise ModelSourceError(f"{what}: {endpoint} has no revision {source.revision!r} in {source.repo}; "
                               "use a branch, tag or commit of the repo") from None
    except GatedRepoError:
        raise Unauthorized(f"{what}: {source.repo} is gated on {endpoint}: accept its terms there and set "
                           "HF_TOKEN to a token of that account") from None
    except RepositoryNotFoundError as error:
        status = error.response.status_code if error.response is not None else None
        hint = ("HF_TOKEN is set, but the token may not read it" if token else
                "if it is private or gated, set HF_TOKEN to a token that may read it")
        raise ModelSourceError(f"{what}: {endpoint} has no repo {source.repo} ({status}); check the name — "
                               f"{hint}") from None
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else None
        if status in (401, 403):
            raise Unauthorized(f"{what}: {endpoint} refused access ({status}); set HF_TOKEN to a token that "
                               f"may read {source.repo}" + (" (the one set was refused)" if token else ""),
                               status=status) from None
        raise Failed(f"{what}: {endpoint} answered {status}: {str(error).splitlines()[0]}") from None
    except OSError as error:  # httpx's connect errors are OSErrors underneath, and a timeout is one
        raise ConnectionFailed(f"{what}: cannot reach {endpoint}: {error}") from None
    except WorkbenchError:
        raise
    except Exception as error:  # huggingface_hub's own transport errors
        if type(error).__name__ in ("ConnectError", "ConnectTimeout", "ReadTimeout", "TimeoutException"):
            raise ConnectionFailed(f"{what}: cannot reach {endpoint}: {error}") from None
        raise
    commit = info.sha
    if not commit:
        raise Failed(f"{what}: {endpoint} named no commit for revision {source.revision!r}")
    siblings = {s.rfilename: s for s in info.siblings or []}
    chosen = sorted(filter_repo_objects(siblings, allow_patterns=include, ignore_patterns=exclude))
    if not chosen:
        picked = f" (include {include}, exclude {exclude})" if include or exclude else ""
        raise ModelSourceError(f"{what}: no files{picked} in {source.repo} at {commit[:12]}")
    files = []
    for path in chosen:
        sibling = siblings[path]
        lfs = sibling.lfs
        size = lfs.size if lfs is not None else sibling.size
        etag = lfs.sha256 if lfs is not None else sibling.blob_id
        url = f"{endpoint}/{source.repo}/resolve/{commit}/{quote(path)}"
        files.append(ModelFile(path=path, size=size, sha256=lfs.sha256 if lfs is not None else None,
                               etag=etag, url=url))
    identity = {"kind": "hf", "repo": source.repo, "commit": commit,
                "files": [[f.path, f.size, f.etag] for f in files]}
    manifest = ModelManifest(id=version_id(identity), name=name, kind="hf", source=source.text,
                             repo=source.repo, revision=source.revision, commit=commit, files=files)
    return PlannedModel(manifest, mount)


def probe_url(manifest: ModelManifest) -> str | None:
    """What a host asks to tell whether it reaches the source itself."""
    if manifest.kind == "hf" and manifest.files and manifest.files[0].url:
        parts = urlsplit(manifest.files[0].url)
        return f"{parts.scheme}://{parts.netloc}/api/models/{manifest.repo}/revision/{manifest.commit}"
    urls = [f.url for f in manifest.files if f.url]
    return urls[0] if urls else None


# -- URLs ------------------------------------------------------------------------------------------
def _url(source: ModelSource, name: str, mount: str, sha256: str | None) -> PlannedModel:
    assert source.url is not None
    file_name = PurePosixPath(unquote(urlsplit(source.url).path)).name
    what = f"model {name} ({source.url})"
    size, etag = _head(source.url, what)
    if sha256 is None and etag is None:
        raise ModelSourceError(f"{what}: the server gives no ETag to tell versions of the file apart; add "
                               "its sha256 to the spec (model.sha256)")
    item = ModelFile(path=file_name, size=size, sha256=sha256, etag=None if sha256 else etag, url=source.url)
    identity: dict[str, Any] = {"kind": "files", "files": [[item.path, item.size, sha256]]} if sha256 else {
        "kind": "url", "url": source.url, "size": size, "etag": etag}
    manifest = ModelManifest(id=version_id(identity), name=name, kind="files", source=source.text,
                             files=[item])
    return PlannedModel(manifest, mount)


def _head(url: str, what: str) -> tuple[int | None, str | None]:
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "workbench"})
    try:
        with urllib.request.urlopen(request, timeout=HEAD_TIMEOUT) as response:
            length = response.headers.get("Content-Length")
            etag = (response.headers.get("ETag") or "").removeprefix("W/").strip('"') or None
            if etag is not None:
                etag = "".join(ch if ch.isalnum() or ch in "._:+/=-" else "-" for ch in etag)[:128]
            return (int(length) if length and length.isdigit() else None), etag
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            raise Unauthorized(f"{what}: the server refused access ({error.code})",
                               status=error.code) from None
        if error.code == 404:
            raise NotFound(f"{what}: the server has no such file (404)") from None
        raise Failed(f"{what}: the server answered {error.code}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        hint = ("; if its certificate is signed by a private CA, point SSL_CERT_FILE at that CA's "
                "certificate" if isinstance(reason, ssl.SSLCertVerificationError) else "")
        raise ConnectionFailed(f"{what}: cannot reach {urlsplit(url).netloc}: {reason}{hint}") from None
