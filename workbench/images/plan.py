"""What goes into an API's build context, and the content hash that names the artifact.

A plan is made once per (API, runtime, offline) in a deploy: it reads every file's digest once,
and its `image_hash` and `artifact` are fixed from then on. The context builder writes exactly the
planned files (a file that changed since is an error, not a silent mismatch), and the controller
keeps the plan for hosts that join later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from workbench.images.certs import CA_ARCNAME, find_ca_bundle
from workbench.images.dockerfile import DockerfileInputs, check_context_path, render_dockerfile
from workbench.images.errors import ContextError
from workbench.images.files import Entry, file_entry, project_files, recipe_hash, walk_files
from workbench.images.runtime import runtime_files, runtime_pins, runtime_requirements_entry
from workbench.images.wheelhouse import WheelTarget
from workbench.spec.loader import LoadedSpec

Runtime = Literal["docker", "process"]
SCHEMA = 1
_NESTED = re.compile(r"^\s*(?:-r|-c|--requirement|--constraint)(?:\s*=\s*|\s+)(\S+)")


def _inside(project: Path, rel: str, what: str) -> Path:
    path = (project / rel).resolve()
    if not path.is_relative_to(project.resolve()):
        raise ContextError(f"{what} {rel!r} must be inside the project folder {project}")
    return path


def _requirement_files(project: Path, top: list[str]) -> list[str]:
    """`top` plus the files they include with -r/-c, all relative to the project."""
    seen: list[str] = []
    queue = list(top)
    while queue:
        rel = queue.pop(0)
        if rel in seen:
            continue
        path = _inside(project, rel, "requirements file")
        if not path.is_file():
            raise ContextError(f"requirements file {rel} not found in {project}")
        seen.append(path.relative_to(project.resolve()).as_posix())
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            match = _NESTED.match(line)
            if match and "://" not in match.group(1):
                nested = (path.parent / match.group(1)).resolve()
                queue.append(nested.relative_to(project.resolve()).as_posix()
                             if nested.is_relative_to(project.resolve()) else match.group(1))
    return seen


@dataclass
class BuildPlan:
    """Everything that decides an API's artifact, before any wheel is resolved.

    Made by `plan_build`; each file is read once then, and `digests` and `image_hash` are fixed."""

    api: str
    runtime: Runtime
    project_dir: Path
    offline: bool
    target: WheelTarget
    dockerfile_inputs: DockerfileInputs
    entries: list[Entry]
    requirement_files: list[Path]
    extra_pip: list[str]
    resolve_wheels: bool
    has_wheelhouse: bool
    has_ca: bool
    #: other content the artifact depends on, by name (e.g. a model manifest's hash). In the hash
    #: only when given, so the hashes of plans without any stay what they were.
    hash_inputs: dict[str, str] = field(default_factory=dict)
    #: sha256 of each entry's bytes when planned (archive name -> hex); the context builder checks
    #: the files against them as it writes them
    digests: dict[str, str] = field(init=False, default_factory=dict)
    #: the content hash of the recipe, fixed when the plan is made
    image_hash: str = field(init=False, default="")

    def __post_init__(self) -> None:
        self.digests = {entry.name: entry.digest() for entry in self.entries}
        self.image_hash = recipe_hash(self.recipe())

    def recipe(self) -> dict[str, Any]:
        """The hashed description: inputs plus every file's name, mode and digest."""
        inputs = self.dockerfile_inputs
        recipe: dict[str, Any] = {
            "schema": SCHEMA,
            "runtime": self.runtime,
            "base_image": inputs.base_image,
            "apt": inputs.apt,
            "pip": inputs.pip,
            "requirements": inputs.requirements,
            "build_commands": inputs.build_commands,
            "offline": self.offline,
            "resolve_wheels": [self.target.python_version, self.target.implementation,
                               self.target.arch, self.target.glibc] if self.resolve_wheels else None,
            "dockerfile": render_dockerfile(inputs),
            "files": [[e.name, e.mode, self.digests[e.name]]
                      for e in sorted(self.entries, key=lambda e: e.name)],
        }
        if self.hash_inputs:
            recipe["inputs"] = dict(sorted(self.hash_inputs.items()))
        return recipe

    @property
    def artifact(self) -> str:
        """The image tag (docker) or bundle name (process) the hash names."""
        short = self.image_hash[:16]
        return f"workbench/{self.api}:{short}" if self.runtime == "docker" else f"{self.api}-{short}"

    @property
    def action(self) -> str:
        """What producing the artifact is called in messages."""
        return "the build"

    def pip_download_requirements(self) -> list[str]:
        """What an offline wheelhouse must hold besides the requirement files."""
        return [*runtime_pins(), *self.extra_pip]

    def manifest(self) -> dict[str, Any]:
        """workbench-build.json."""
        inputs = self.dockerfile_inputs
        return {
            "image_hash": self.image_hash,
            "artifact": self.artifact,
            "runtime": self.runtime,
            "base_image": inputs.base_image,
            "apt": inputs.apt,
            "requirements": [f"project/{rel}" for rel in inputs.requirements],
            "pip": inputs.pip,
            "runtime_requirements": "runtime/requirements.txt",
            "wheelhouse": "wheelhouse" if self.has_wheelhouse else None,
            "offline": self.offline,
            "build_commands": inputs.build_commands,
            "ca_bundle": CA_ARCNAME if self.has_ca else None,
        }


def left_out(entries: list[Entry], prefix: str, exclude: frozenset[str]) -> list[Entry]:
    """`entries` less those at or under the project-relative paths in `exclude`."""
    if not exclude:
        return entries
    marks = tuple(f"{prefix}{rel}" for rel in exclude)
    return [e for e in entries if not any(e.name == m or e.name.startswith(m + "/") for m in marks)]


def plan_build(loaded: LoadedSpec, runtime: Runtime, offline: bool | None = None,
               target: WheelTarget | None = None, hash_inputs: dict[str, str] | None = None,
               exclude: frozenset[str] = frozenset()) -> BuildPlan:
    """Collect the files and settings of one API's context and hash them (reads files, runs
    nothing). `exclude` names project-relative files and folders that stay out (model weights,
    which reach hosts through their caches)."""
    if runtime not in ("docker", "process"):
        raise ContextError(f"runtime must be docker or process, not {runtime!r}")
    spec, project = loaded.spec, Path(loaded.project_dir)
    image = spec.image
    offline = image.offline if offline is None else offline
    target = target or WheelTarget()

    wheel_rel: str | None = None
    if image.wheelhouse:
        wheel_dir = _inside(project, image.wheelhouse, "image.wheelhouse")
        if not wheel_dir.is_dir():
            raise ContextError(f"image.wheelhouse folder {image.wheelhouse} not found in {project}")
        wheel_rel = wheel_dir.relative_to(project.resolve()).as_posix()
    skipped = (frozenset({wheel_rel}) if wheel_rel else frozenset()) | exclude
    entries = left_out(project_files(project, skipped), "project/", exclude)
    # the spec file carries settings that go to the replica at start, not into the artifact
    spec_file = Path(loaded.file).resolve()
    if spec_file.is_relative_to(project.resolve()):
        spec_name = "project/" + spec_file.relative_to(project.resolve()).as_posix()
        entries = [entry for entry in entries if entry.name != spec_name]
    names = {entry.name for entry in entries}

    named = spec.predictor.requirements if spec.predictor is not None else None
    top = [named] if named else (
        ["requirements.txt"] if (project / "requirements.txt").is_file() else [])
    all_requirements = _requirement_files(project, top)
    for rel in all_requirements:
        check_context_path(rel)
        if f"project/{rel}" not in names:
            raise ContextError(f"requirements file {rel} is excluded by .workbenchignore/.dockerignore")
    top = all_requirements[:len(top)]

    if wheel_rel:
        entries += [e for e in walk_files(project / wheel_rel, "wheelhouse")
                    if not e.name.rsplit("/", 1)[-1].startswith(".")]
    entries += runtime_files()
    entries.append(runtime_requirements_entry())
    ca = find_ca_bundle()
    if ca is not None:
        entries.append(file_entry(CA_ARCNAME, ca))

    resolve = offline and not wheel_rel
    inputs = DockerfileInputs(
        base_image=image.base,
        apt=list(image.apt),
        pip=list(image.pip),
        requirements=top,
        requirement_copies=all_requirements,
        build_commands=[list(command) for command in image.build_commands],
        ca_bundle=ca is not None,
        wheelhouse=bool(wheel_rel) or resolve,
        offline=offline,
    )
    render_dockerfile(inputs)  # validates the base image and paths early
    return BuildPlan(
        api=spec.name, runtime=runtime, project_dir=project, offline=offline, target=target,
        dockerfile_inputs=inputs, entries=entries,
        requirement_files=[project / rel for rel in top], extra_pip=list(image.pip),
        resolve_wheels=resolve, has_wheelhouse=bool(wheel_rel) or resolve, has_ca=ca is not None,
        hash_inputs=dict(hash_inputs or {}),
    )
