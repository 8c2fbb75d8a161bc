"""Build a Python base image from Debian packages (debootstrap + docker import), for machines
that cannot pull from a registry."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from workbench.images.errors import ImageError
from workbench.wire.replica import BOOTSTRAP_BASE_IMAGE as BOOTSTRAP_TAG

Progress = Callable[[str], None]
DEFAULT_MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates")
SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
_SUITE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_TAG = re.compile(r"^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?$")
_MIRROR = re.compile(r"^(https?|file):/\S+$")
_TAIL = 20


class BootstrapError(ImageError):
    """The base image could not be bootstrapped; str() says why and what to do."""


def _source_uris(paths: Iterable[Path]) -> list[str]:
    """URIs of `deb` entries in one-line (.list) and deb822 (.sources) files, in order."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".list", ".sources"))
        elif path.is_file():
            files.append(path)
    uris: list[str] = []
    for file in files:
        try:
            text = file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if file.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.MULTILINE))
                if "deb" in fields.get("Types", "").split() and \
                        fields.get("Enabled", "yes").lower() != "no":
                    uris += fields.get("URIs", "").split()
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] == "deb":
                    uris.append(words[1])
    return uris


def find_debian_mirror(paths: Iterable[Path] = SOURCES) -> str:
    """The first Debian archive URI (path ending in /debian) apt uses here, else deb.debian.org."""
    for uri in _source_uris(paths):
        if uri.rstrip("/").endswith("/debian") and _MIRROR.match(uri):
            return uri.rstrip("/")
    return DEFAULT_MIRROR


def _check_tools() -> str:
    """The debootstrap executable; raises when it, root or Docker is missing."""
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise BootstrapError("debootstrap is not installed; run: apt-get install debootstrap")
    if os.geteuid() != 0:
        raise BootstrapError("debootstrap needs root; run with sudo")
    docker = shutil.which("docker")
    if docker is None:
        raise BootstrapError("the docker command is not installed; install Docker (docker.io)")
    try:
        answer = subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"],
                                capture_output=True, text=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        raise BootstrapError("Docker is not reachable: `docker info` did not answer") from None
    if answer.returncode != 0:
        raise BootstrapError(f"Docker is not reachable: {answer.stderr.strip()}")
    return debootstrap


def _stream(argv: list[str], progress: Progress | None) -> tuple[int, list[str]]:
    tail: list[str] = []
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, text=True, errors="replace")
    assert process.stdout is not None
    for raw in process.stdout:
        line = raw.rstrip()
        if line:
            tail = [*tail[-(_TAIL - 1):], line]
            if progress:
                progress(line)
    return process.wait(), tail


def _unmount_below(root: Path) -> None:
    """Lazily unmount what a failed debootstrap may have left mounted (proc, sys) in the tree."""
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return
    prefix = str(root.resolve()) + "/"
    points = [line.split()[1].encode().decode("unicode_escape") for line in lines if len(line.split()) > 1]
    for point in sorted((p for p in points if p.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _import(rootfs: Path, tag: str, suite: str) -> None:
    changes = [
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "ENV LANG=C.UTF-8",
        f"LABEL workbench.bootstrap={suite}",
        'CMD ["python3"]',
    ]
    docker_argv = ["docker", "import"]
    for change in changes:
        docker_argv += ["--change", change]
    docker_argv += ["--message", f"workbench bootstrap of Debian {suite}", "-", tag]
    tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", "-", "."],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert tar.stdout is not None
    try:
        imported = subprocess.run(docker_argv, stdin=tar.stdout, capture_output=True, text=True,
                                  check=False)
    finally:
        tar.stdout.close()
        tar_error = tar.stderr.read().decode(errors="replace") if tar.stderr else ""
        tar.wait()
    if tar.returncode != 0:
        raise BootstrapError(f"tar of the Debian tree failed: {tar_error.strip()}")
    if imported.returncode != 0:
        raise BootstrapError(f"docker import failed: {imported.stderr.strip()}")


def bootstrap_base_image(*, tag: str = BOOTSTRAP_TAG, suite: str = "bookworm",
                         mirror: str | None = None, progress: Progress | None = None,
                         workdir: Path | None = None) -> str:
    """Debootstrap SUITE (minbase + python3, venv, pip, CA certificates), import it as `tag`
    and return the tag; the temporary tree is removed even on failure (takes about a minute)."""
    if not _SUITE.match(suite):
        raise BootstrapError(f"{suite!r} is not a Debian suite name such as bookworm")
    if not _TAG.match(tag):
        raise BootstrapError(f"{tag!r} is not a Docker image tag such as {BOOTSTRAP_TAG}")
    mirror = mirror or find_debian_mirror()
    if not _MIRROR.match(mirror):
        raise BootstrapError(f"{mirror!r} is not a mirror URL such as {DEFAULT_MIRROR}")
    debootstrap = _check_tools()
    say = progress or (lambda line: None)
    workspace = Path(tempfile.mkdtemp(prefix="workbench-bootstrap-", dir=workdir))
    rootfs = workspace / "rootfs"
    try:
        say(f"debootstrap {suite} from {mirror} (about a minute)")
        code, tail = _stream([debootstrap, "--variant=minbase", f"--include={','.join(PACKAGES)}",
                              suite, str(rootfs), mirror], progress)
        if code != 0:
            log = rootfs / "debootstrap" / "debootstrap.log"
            detail = log.read_text(errors="replace").splitlines()[-_TAIL:] if log.is_file() else []
            raise BootstrapError(f"debootstrap {suite} from {mirror} failed (exit {code}):\n"
                                 + "\n".join(tail + detail))
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (rootfs / leftover).glob("*"):
                if path.is_file():
                    path.unlink()
        say(f"importing the Debian tree into Docker as {tag}")
        _import(rootfs, tag, suite)
        say(f"base image {tag} ready")
        return tag
    finally:
        _unmount_below(workspace)
        shutil.rmtree(workspace, ignore_errors=True)


def image_exists(tag: str) -> bool:
    """Whether the local Docker engine has `tag` (False when Docker is not reachable)."""
    docker = shutil.which("docker")
    if docker is None:
        return False
    result = subprocess.run([docker, "image", "inspect", "--format", "{{.Id}}", "--", tag],
                            capture_output=True, check=False)
    return result.returncode == 0


def ensure_base_image(*, tag: str = BOOTSTRAP_TAG, suite: str = "bookworm",
                      mirror: str | None = None, progress: Progress | None = None) -> str:
    """`tag` when the engine already has it, else bootstrap it."""
    if image_exists(tag):
        return tag
    return bootstrap_base_image(tag=tag, suite=suite, mirror=mirror, progress=progress)
