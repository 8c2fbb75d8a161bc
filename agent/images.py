"""The API images (Docker) and bundles (process runtime) built on this host: listing and removal.

Only what this agent built (or was asked to build and found) for an API is listed: Docker images
tagged ``workbench/<api>:<hash>`` that carry the image-hash label and that the agent recorded in
its home (one Docker engine may serve other agents, whose images are theirs to prune; a
bootstrapped base image has no such label), and the process runtime's bundle folders. One a
replica of this agent runs (or restarts from) is never removed.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

from docker.errors import APIError, DockerException, ImageNotFound
from workbench.agent.runtimes.bundle import artifact_lock
from workbench.agent.runtimes.docker import DockerRuntime, docker_time
from workbench.agent.runtimes.process import ProcessRuntime
from workbench.agent.supervisor import Supervisor

from workbench.wire.agent import RemovedArtifact, StoredArtifact
from workbench.wire.errors import Conflict, NotFound, Unavailable
from workbench.wire.replica import LABEL_IMAGE_HASH, RuntimeKind

#: the repository of every API image: workbench/<api>:<hash>
REPOSITORY = "workbench/"


class BuiltImages:
    """The Docker images this agent built or found for a build: images.json in its home."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def names(self) -> set[str]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return set()
        return {str(name) for name in data} if isinstance(data, list) else set()

    def _write(self, names: set[str]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(sorted(names)))
        os.replace(tmp, self.path)

    def add(self, artifact: str) -> None:
        with self._lock:
            names = self.names()
            if artifact not in names:
                self._write(names | {artifact})

    def discard(self, artifact: str) -> None:
        with self._lock:
            names = self.names()
            if artifact in names:
                self._write(names - {artifact})


def _in_use(supervisor: Supervisor, runtime: RuntimeKind) -> set[str]:
    return {r.handle.request.artifact for r in supervisor.replicas.values()
            if r.handle.request.runtime == runtime}


def _folder_size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


def list_artifacts(supervisor: Supervisor, built: BuiltImages) -> list[StoredArtifact]:
    """Every API image and bundle here, oldest first."""
    found: list[StoredArtifact] = []
    ours = built.names()
    for kind, runtime in supervisor.runtimes.items():
        if isinstance(runtime, DockerRuntime) and runtime.unavailable_reason() is None:
            used = _in_use(supervisor, "docker")
            try:
                images = runtime.client.images.list(filters={"label": LABEL_IMAGE_HASH})
            except DockerException as error:
                raise Unavailable(f"docker is unavailable: {error}") from error
            for image in images:
                for tag in image.tags:
                    if not tag.startswith(REPOSITORY) or tag not in ours:
                        continue
                    found.append(StoredArtifact(
                        runtime="docker", artifact=tag, api=tag[len(REPOSITORY):].rsplit(":", 1)[0],
                        created_at=docker_time(image.attrs.get("Created")),
                        size_bytes=image.attrs.get("Size"), in_use=tag in used))
        elif isinstance(runtime, ProcessRuntime) and kind == "process":
            used = _in_use(supervisor, "process")
            folder = runtime.bundles.bundles_dir
            for path in sorted(folder.iterdir()) if folder.is_dir() else []:
                if path.name.endswith(".tmp") or not runtime.bundles.exists(path.name):
                    continue
                found.append(StoredArtifact(
                    runtime="process", artifact=path.name, api=path.name.rsplit("-", 1)[0],
                    created_at=path.stat().st_mtime, in_use=path.name in used))
    return sorted(found, key=lambda a: a.created_at or 0.0)


def remove_artifact(supervisor: Supervisor, built: BuiltImages, runtime: RuntimeKind,
                    artifact: str) -> RemovedArtifact:
    """Remove one; Conflict when a replica here uses it, NotFound when it is not here."""
    if artifact in _in_use(supervisor, runtime):
        raise Conflict(f"{artifact} is in use by a replica on this host")
    rt = supervisor.runtime(runtime)
    if isinstance(rt, DockerRuntime):
        if not artifact.startswith(REPOSITORY) or artifact not in built.names():
            raise NotFound(f"{artifact} is not an image this agent built for an API")
        with artifact_lock("docker:" + artifact):
            try:
                image = rt.client.images.get(artifact)
                if LABEL_IMAGE_HASH not in (image.labels or {}):
                    raise NotFound(f"{artifact} is not an image workbench built for an API")
                size = image.attrs.get("Size")
                rt.client.images.remove(artifact)  # never forced: Docker keeps one a container uses
            except ImageNotFound:
                built.discard(artifact)
                raise NotFound(f"no image {artifact} on this host") from None
            except APIError as error:
                if error.status_code == 409:
                    raise Conflict(f"{artifact} is used by a container: {error.explanation}") from None
                raise
        built.discard(artifact)
        return RemovedArtifact(runtime="docker", artifact=artifact, freed_bytes=size)
    assert isinstance(rt, ProcessRuntime)
    path = rt.bundles.path(artifact)
    with artifact_lock("process:" + artifact):
        if not path.is_dir() or path.parent != rt.bundles.bundles_dir:
            raise NotFound(f"no bundle {artifact} on this host")
        size = _folder_size(path)
        shutil.rmtree(path)
    return RemovedArtifact(runtime="process", artifact=artifact, freed_bytes=size)
