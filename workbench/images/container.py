"""The artifacts of a container API on the Docker runtime: the project's own Dockerfile (planned,
hashed and built on each host like a predictor image), or an image each host has or pulls.

A `DockerfilePlan` is made once per deploy, as a `BuildPlan` is: the project's files (the ignore
rules applied, workbench.yaml left out) with their digests, at the root of the context as
`docker build .` would send them; the tag is the content hash. The workstation's CA bundle
(PIP_CERT, SSL_CERT_FILE) goes in as certs/ca.pem unless the project has one, for a Dockerfile that
wants it (`COPY certs/ca.pe[m] ...` copies it when it is there, and nothing when it is not). An
`ImagePlan` names the image; its id, known once the first host has found or pulled it, goes into
the API's spec hash.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from workbench.images.certs import CA_ARCNAME, find_ca_bundle
from workbench.images.errors import ContextError
from workbench.images.files import Entry, file_entry, recipe_hash, walk_files
from workbench.images.ignore import IgnoreRules
from workbench.spec.loader import LoadedSpec

SCHEMA = 1
MANIFEST = "workbench-build.json"


@dataclass
class DockerfilePlan:
    """A project's own Dockerfile and the files `docker build` gets, hashed once."""

    api: str
    project_dir: Path
    dockerfile: str  # its path in the project (and the context)
    offline: bool
    entries: list[Entry]
    runtime: Literal["docker"] = "docker"
    #: other content the image depends on, by name; in the hash only when given
    hash_inputs: dict[str, str] = field(default_factory=dict)
    digests: dict[str, str] = field(init=False, default_factory=dict)
    image_hash: str = field(init=False, default="")

    def __post_init__(self) -> None:
        self.digests = {entry.name: entry.digest() for entry in self.entries}
        self.image_hash = recipe_hash(self.recipe())

    def recipe(self) -> dict[str, Any]:
        recipe: dict[str, Any] = {
            "schema": SCHEMA,
            "kind": "dockerfile",
            "dockerfile": self.dockerfile,
            "offline": self.offline,
            "files": [[e.name, e.mode, self.digests[e.name]]
                      for e in sorted(self.entries, key=lambda e: e.name)],
        }
        if self.hash_inputs:
            recipe["inputs"] = dict(sorted(self.hash_inputs.items()))
        return recipe

    @property
    def artifact(self) -> str:
        return f"workbench/{self.api}:{self.image_hash[:16]}"

    @property
    def action(self) -> str:
        return "the build"

    def manifest(self) -> dict[str, Any]:
        """workbench-build.json: what the agent needs besides the files."""
        return {"kind": "dockerfile", "image_hash": self.image_hash, "artifact": self.artifact,
                "dockerfile": self.dockerfile, "offline": self.offline}


@dataclass
class ImagePlan:
    """An image a host has or pulls; `image_id` is the first host's id of it."""

    api: str
    image: str
    runtime: Literal["docker"] = "docker"
    image_id: str | None = None

    @property
    def artifact(self) -> str:
        return self.image

    @property
    def image_hash(self) -> str:
        """The image's id once a host has it ("" before)."""
        return self.image_id or ""

    @property
    def action(self) -> str:
        return f"the pull of image {self.image}"


def plan_dockerfile(loaded: LoadedSpec, offline: bool | None = None,
                    hash_inputs: dict[str, str] | None = None,
                    exclude: frozenset[str] = frozenset()) -> DockerfilePlan:
    """The files of a `container.build` API's context and their hash (reads files, runs nothing);
    the project-relative paths in `exclude` (model weights) stay out."""
    spec, project = loaded.spec, Path(loaded.project_dir).resolve()
    container = spec.container
    if container is None or container.build is None:
        raise ContextError(f"API {spec.name} has no container.build to plan")
    dockerfile = (project / container.build).resolve()
    if not dockerfile.is_relative_to(project) or not dockerfile.is_file():
        raise ContextError(f"Dockerfile {container.build} not found in {project}")
    rel = dockerfile.relative_to(project).as_posix()
    spec_file = Path(loaded.file).resolve()
    skip = {spec_file.relative_to(project).as_posix()} if spec_file.is_relative_to(project) else set()
    # walk_files names them "./<path>"; the context has them at its root
    walked = walk_files(project, ".", IgnoreRules.for_project(project), skip=exclude)
    entries = [Entry(entry.name.removeprefix("./"), source=entry.source, executable=entry.executable)
               for entry in walked]
    entries = [entry for entry in entries if entry.name not in skip and entry.name not in exclude
               and not any(entry.name.startswith(rel + "/") for rel in exclude)]
    names = {entry.name for entry in entries}
    if MANIFEST in names:
        raise ContextError(f"{project / MANIFEST}: workbench writes a file of that name into the build "
                           "context; rename yours or list it in .dockerignore")
    if rel not in names:  # docker sends the Dockerfile even when .dockerignore names it
        entries.append(file_entry(rel, dockerfile))
    ca = find_ca_bundle()
    if ca is not None and CA_ARCNAME not in names and not (project / CA_ARCNAME).exists():
        entries.append(file_entry(CA_ARCNAME, ca))
    offline = spec.image.offline if offline is None else offline
    return DockerfilePlan(api=spec.name, project_dir=project, dockerfile=rel, offline=offline,
                          entries=sorted(entries, key=lambda e: e.name), hash_inputs=dict(hash_inputs or {}))


def plan_image(loaded: LoadedSpec) -> ImagePlan:
    container = loaded.spec.container
    if container is None or container.image is None:
        raise ContextError(f"API {loaded.spec.name} has no container.image")
    return ImagePlan(api=loaded.spec.name, image=container.image)
