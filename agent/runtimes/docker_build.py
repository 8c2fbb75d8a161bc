"""Docker image builds from a context tar: base-image resolution and build-stream events."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
from docker.errors import DockerException, ImageNotFound
from workbench.agent.buildctx import BadContext, dockerfile_base_default, inspect_context, read_member
from workbench.agent.runtimes.base_image import BaseImageError, resolve_base_image
from workbench.agent.runtimes.bundle import artifact_lock

from workbench.wire.agent import BuildEvent
from workbench.wire.replica import LABEL_IMAGE_HASH

_STEP_RE = re.compile(r"^Step (\d+)/(\d+) : (.*)$")


def image_exists(client: docker.DockerClient, name: str) -> bool:
    try:
        client.images.get(name)
        return True
    except ImageNotFound:
        return False


def events_from_stream(stream: Iterator[dict[str, Any]]) -> Iterator[BuildEvent]:
    """Docker's decoded build stream as step/log/error events."""
    for chunk in stream:
        if "errorDetail" in chunk or "error" in chunk:
            detail = chunk.get("errorDetail") or {}
            yield BuildEvent(kind="error", message=str(detail.get("message") or chunk.get("error")))
            return
        text = chunk.get("stream")
        if not isinstance(text, str):
            continue
        for line in text.splitlines():
            line = line.rstrip()
            if not line:
                continue
            m = _STEP_RE.match(line)
            if m:
                yield BuildEvent(
                    kind="step", step=int(m.group(1)), total_steps=int(m.group(2)), message=m.group(3)
                )
            else:
                yield BuildEvent(kind="log", message=line)


def build_image(
    client: docker.DockerClient,
    pull_client: docker.DockerClient,
    build_client: docker.APIClient,
    context_path: str,
    artifact: str,
) -> Iterator[BuildEvent]:
    """Build `artifact` from the context; ends with exactly one done/error event."""
    with artifact_lock("docker:" + artifact):
        if image_exists(client, artifact):
            yield BuildEvent(kind="done", artifact=artifact, cached=True, message="image exists")
            return
        path = Path(context_path)
        try:
            spec, names = inspect_context(path)
            dockerfile_name = spec.dockerfile or "Dockerfile"
            if dockerfile_name not in names:
                where = "at its root" if spec.dockerfile is None else f"at {dockerfile_name}"
                raise BadContext(f"build context has no Dockerfile {where}")
            dockerfile = (read_member(path, dockerfile_name) or b"").decode(errors="replace")
            base = spec.base_image or dockerfile_base_default(dockerfile)
            buildargs = {}
            if base:
                fix = None if spec.dockerfile is None else (
                    f"pull or load it on this host, or change the default of ARG BASE_IMAGE in "
                    f"{dockerfile_name} (python:3.11-slim falls back to `workbench image bootstrap`'s image)")
                resolved, note = resolve_base_image(pull_client, base, fix=fix)
                if note:
                    yield BuildEvent(kind="log", message=note)
                buildargs["BASE_IMAGE"] = resolved
        except (BadContext, BaseImageError) as e:
            yield BuildEvent(kind="error", message=str(e))
            return
        # workbench's own Dockerfile sets the label already: a second one would be a second step
        labels = ({LABEL_IMAGE_HASH: spec.image_hash}
                  if spec.image_hash and f"LABEL {LABEL_IMAGE_HASH}=" not in dockerfile else {})
        extra: dict[str, Any] = {}
        if spec.dockerfile is not None:
            # a project's own Dockerfile: offline means no network for its RUN steps
            extra["dockerfile"] = spec.dockerfile
            if spec.offline:
                extra["network_mode"] = "none"
        try:
            with open(path, "rb") as f:
                stream = build_client.build(
                    fileobj=f,
                    custom_context=True,
                    encoding="gzip",
                    tag=artifact,
                    buildargs=buildargs,
                    decode=True,
                    rm=True,
                    forcerm=True,
                    labels=labels,
                    pull=False,
                    **extra,
                )
                for event in events_from_stream(stream):
                    yield event
                    if event.kind == "error":
                        return
        except (DockerException, OSError) as e:
            yield BuildEvent(kind="error", message=f"docker build failed: {e}")
            return
        if not image_exists(client, artifact):
            yield BuildEvent(kind="error", message="docker build ended without an image")
            return
        yield BuildEvent(kind="done", artifact=artifact)
