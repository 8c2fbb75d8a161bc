"""Image pulls for container APIs: found here, or pulled with progress as build events."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import docker
from docker.errors import DockerException, ImageNotFound
from docker.utils import parse_repository_tag
from workbench.agent.runtimes.bundle import artifact_lock

from workbench.wire.agent import BuildEvent

#: seconds between two download-progress lines of one pull
PROGRESS_EVERY = 1.0


def _mb(size: float) -> str:
    return f"{size / 1e6:.1f} MB"


class PullProgress:
    """Docker's per-layer pull stream as a few readable lines: status changes as they come,
    download progress summed over the layers, at most once per PROGRESS_EVERY."""

    def __init__(self, image: str, clock: Any = time.monotonic) -> None:
        self.image = image
        self.clock = clock
        self.sizes: dict[str, tuple[int, int]] = {}  # layer -> (bytes so far, total)
        self.done: set[str] = set()
        self._last = float("-inf")

    def lines(self, chunk: dict[str, Any]) -> list[str]:
        status = str(chunk.get("status") or "")
        layer = str(chunk.get("id") or "")
        detail = chunk.get("progressDetail") or {}
        if status in ("Downloading", "Extracting") and layer:
            current, total = int(detail.get("current") or 0), int(detail.get("total") or 0)
            if status == "Downloading" and total:
                self.sizes[layer] = (current, total)
            now = self.clock()
            if now - self._last < PROGRESS_EVERY:
                return []
            self._last = now
            got = sum(c for c, _ in self.sizes.values())
            want = sum(t for _, t in self.sizes.values())
            return [f"pulling {self.image}: {_mb(got)} of {_mb(want)}, "
                    f"{len(self.done)} layer(s) complete ({status.lower()} {layer})"]
        if status in ("Pull complete", "Already exists") and layer:
            self.done.add(layer)
            return []
        if status in ("Waiting", "Pulling fs layer", "Verifying Checksum", "Download complete") or not status:
            return []
        return [f"{status} {layer}".strip() if layer and layer not in status else status]


def image_id(client: docker.DockerClient, image: str) -> str | None:
    try:
        return str(client.images.get(image).id)
    except ImageNotFound:
        return None


def pull_image(client: docker.DockerClient, api: docker.APIClient, image: str) -> Iterator[BuildEvent]:
    """`image` found here (done, cached) or pulled (progress, then done); ends with exactly one
    done (with the image's id) or error."""
    with artifact_lock("docker-pull:" + image):
        try:
            found = image_id(client, image)
        except DockerException as error:
            yield BuildEvent(kind="error", message=f"cannot look up image {image}: {error}")
            return
        if found is not None:
            yield BuildEvent(kind="done", artifact=image, cached=True, image_id=found,
                             message="image is present")
            return
        yield BuildEvent(kind="log", message=f"{image} is not on this host: pulling it")
        progress = PullProgress(image)
        repository, tag = parse_repository_tag(image)
        try:
            for chunk in api.pull(repository, tag=tag or "latest", stream=True, decode=True):
                if "error" in chunk or "errorDetail" in chunk:
                    detail = chunk.get("errorDetail") or {}
                    yield _cannot_pull(image, str(detail.get("message") or chunk.get("error")))
                    return
                for line in progress.lines(chunk):
                    yield BuildEvent(kind="log", message=line)
            pulled = image_id(client, image)
        except DockerException as error:
            yield _cannot_pull(image, str(getattr(error, "explanation", None) or error))
            return
        if pulled is None:
            yield _cannot_pull(image, "the pull ended without the image")
            return
        yield BuildEvent(kind="done", artifact=image, image_id=pulled, message=f"pulled {image}")


def _cannot_pull(image: str, reason: str) -> BuildEvent:
    return BuildEvent(kind="error", message=(
        f"{image} is not on this host and cannot be pulled: {reason.strip()}. Pull or load it there "
        f"(`docker pull {image}`, `docker load`), or name an image the host has"))
