"""Build contexts: receiving the uploaded tar.gz, checking it, reading workbench-build.json."""

from __future__ import annotations

import json
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.wire.errors import BadRequest

SPEC_NAME = "workbench-build.json"


class BadContext(BadRequest):
    """The upload is not a usable build context."""


@dataclass
class BuildSpec:
    """The parts of workbench-build.json the agent acts on (all optional)."""

    artifact: str | None = None
    image_hash: str | None = None
    base_image: str | None = None
    requirements: list[str] = field(default_factory=list)
    pip: list[str] = field(default_factory=list)
    wheelhouse: str | None = None
    offline: bool = False
    build_commands: list[list[str]] = field(default_factory=list)
    ca_bundle: str | None = None
    #: a container API's own Dockerfile (its path in the context); None: the generated one at the root
    dockerfile: str | None = None


def _str_list(data: dict[str, Any], key: str) -> list[str]:
    value = data.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadContext(f"{SPEC_NAME}: {key} must be a list of strings")
    return value


def _opt_str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise BadContext(f"{SPEC_NAME}: {key} must be a string or null")
    return value


def parse_spec(raw: bytes | None) -> BuildSpec:
    """Parse workbench-build.json; a missing file means an all-default spec."""
    if raw is None:
        return BuildSpec()
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise BadContext(f"{SPEC_NAME} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise BadContext(f"{SPEC_NAME} must be a JSON object")
    commands = data.get("build_commands") or []
    if not isinstance(commands, list) or not all(
        isinstance(c, list) and c and all(isinstance(a, str) for a in c) for c in commands
    ):
        raise BadContext(f"{SPEC_NAME}: build_commands must be a list of argv lists")
    return BuildSpec(
        artifact=_opt_str(data, "artifact"),
        image_hash=_opt_str(data, "image_hash"),
        base_image=_opt_str(data, "base_image"),
        requirements=_str_list(data, "requirements"),
        pip=_str_list(data, "pip"),
        wheelhouse=_opt_str(data, "wheelhouse"),
        offline=data.get("offline") is True,
        build_commands=commands,
        ca_bundle=_opt_str(data, "ca_bundle"),
        dockerfile=_dockerfile(data),
    )


def _dockerfile(data: dict[str, Any]) -> str | None:
    value = _opt_str(data, "dockerfile")
    if value is not None and (not value or value.startswith("/") or ".." in value.split("/")):
        raise BadContext(f"{SPEC_NAME}: dockerfile must be a relative path inside the context")
    return value


def inspect_context(path: Path) -> tuple[BuildSpec, list[str]]:
    """Check `path` is a gzip'd tar with safe member names; return its spec and file names."""
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            names = []
            raw = None
            for member in tar:
                name = member.name.removeprefix("./")
                if name.startswith("/") or ".." in Path(name).parts:
                    raise BadContext(f"unsafe path in build context: {member.name!r}")
                if not (member.isfile() or member.isdir()):
                    raise BadContext(f"build context may hold only files and folders: {member.name!r}")
                names.append(name)
                if name == SPEC_NAME and member.isfile():
                    f = tar.extractfile(member)
                    raw = f.read() if f else None
    except (tarfile.TarError, OSError, EOFError) as e:
        raise BadContext(f"build context must be a gzip'd tar archive: {e}") from e
    return parse_spec(raw), names


_ARG_RE = re.compile(r"^\s*ARG\s+BASE_IMAGE\s*=\s*(\S+)", re.MULTILINE | re.IGNORECASE)


def dockerfile_base_default(dockerfile: str) -> str | None:
    """The default of `ARG BASE_IMAGE=...` in a Dockerfile, if any."""
    m = _ARG_RE.search(dockerfile)
    return m.group(1).strip("\"'") if m else None


def extract_context(path: Path, root: Path) -> None:
    """Unpack a context that inspect_context accepted (regular files and folders only).

    Python's "data" extraction filter arrived in 3.11.4; boxes with an older 3.11 (Debian 12
    ships 3.11.2) get the same guarantees from inspect_context plus dropped special mode bits."""
    with tarfile.open(path, mode="r:gz") as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(root, filter="data")
            return
        members = []
        for member in tar.getmembers():
            if not (member.isfile() or member.isdir()):
                raise BadContext(f"build context may hold only files and folders: {member.name!r}")
            member.mode &= 0o755
            members.append(member)
        tar.extractall(root, members=members)


def read_member(path: Path, name: str) -> bytes | None:
    """One file's bytes from the context, or None."""
    with tarfile.open(path, mode="r:gz") as tar:
        for member in tar:
            if member.name in (name, "./" + name) and member.isfile():
                f = tar.extractfile(member)
                return f.read() if f else None
    return None
