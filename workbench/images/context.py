"""Write a planned API build context (a gzip'd tar) for an agent to build."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from workbench.images.archive import write_tar_gz
from workbench.images.container import DockerfilePlan
from workbench.images.dockerfile import render_dockerfile
from workbench.images.files import Entry, walk_files
from workbench.images.plan import BuildPlan
from workbench.images.wheelhouse import resolve_wheelhouse

MANIFEST = "workbench-build.json"


@dataclass
class BuildContext:
    """A written context: its hash, artifact name and the tar.gz on disk (remove with cleanup)."""

    image_hash: str
    artifact: str
    path: Path
    size_bytes: int
    manifest: dict[str, Any] = field(default_factory=dict)
    dockerfile: str = ""

    def open(self) -> Any:
        """The tar.gz opened for reading (binary)."""
        return self.path.open("rb")

    def cleanup(self) -> None:
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> BuildContext:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.cleanup()


def _wheel_entries(plan: BuildPlan, progress: Callable[[str], None] | None) -> list[Entry]:
    folder = resolve_wheelhouse(plan.pip_download_requirements(), plan.requirement_files,
                                target=plan.target, progress=progress)
    return [e for e in walk_files(folder, "wheelhouse")
            if not e.name.rsplit("/", 1)[-1].startswith(".")]


def make_context(
    plan: BuildPlan,
    *,
    progress: Callable[[str], None] | None = None,
    directory: Path | None = None,
) -> BuildContext:
    """Write the planned context to a temp tar.gz (in `directory` when given). The files are the
    plan's, checked against its digests (ContextChanged when one differs now), so the artifact is
    what `plan.image_hash` says.

    Layout: Dockerfile, workbench-build.json, project/, runtime/workbench/,
    runtime/requirements.txt, wheelhouse/ (offline or image.wheelhouse), certs/ca.pem (when the
    workstation names a CA bundle)."""
    say = progress or (lambda line: None)
    image_hash = plan.image_hash
    entries = list(plan.entries)
    if plan.resolve_wheels:
        if plan.dockerfile_inputs.apt:
            say("note: image.apt still needs the network at build time (offline covers pip only)")
        entries += _wheel_entries(plan, progress)
    manifest = plan.manifest()
    dockerfile = render_dockerfile(plan.dockerfile_inputs, image_hash)
    entries += [
        Entry("Dockerfile", data=dockerfile.encode()),
        Entry(MANIFEST, data=(json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()),
    ]
    handle, name = tempfile.mkstemp(prefix=f"workbench-{plan.api}-", suffix=".tar.gz",
                                    dir=directory)
    os.close(handle)
    path = Path(name)
    try:
        size = write_tar_gz(entries, path, plan.digests)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    say(f"context for {plan.api}: {len(entries)} files, {size / 1e6:.1f} MB, hash {image_hash[:16]}")
    return BuildContext(image_hash, plan.artifact, path, size, manifest, dockerfile)


def make_dockerfile_context(plan: DockerfilePlan, *, progress: Callable[[str], None] | None = None,
                            directory: Path | None = None) -> BuildContext:
    """The project's files as `docker build .` sends them, plus workbench-build.json (its hash, the
    Dockerfile's path, offline), checked against the plan's digests."""
    say = progress or (lambda line: None)
    manifest = plan.manifest()
    entries = [*plan.entries,
               Entry(MANIFEST, data=(json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())]
    handle, name = tempfile.mkstemp(prefix=f"workbench-{plan.api}-", suffix=".tar.gz", dir=directory)
    os.close(handle)
    path = Path(name)
    try:
        size = write_tar_gz(entries, path, plan.digests)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    say(f"context for {plan.api}: {len(entries)} files, {size / 1e6:.1f} MB, hash {plan.image_hash[:16]}")
    dockerfile = next((e.read().decode(errors="replace") for e in plan.entries
                       if e.name == plan.dockerfile), "")
    return BuildContext(plan.image_hash, plan.artifact, path, size, manifest, dockerfile)
