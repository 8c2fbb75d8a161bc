"""Resolve wheels on the workstation (`pip download`) so a build needs no network."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from workbench.images.errors import WheelhouseError

Progress = Callable[[str], None]

_ARCH_ALIASES = {"amd64": "x86_64", "x86_64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64"}
_NOT_FOUND = re.compile(
    r"(?:No matching distribution found for|Could not find a version that satisfies the requirement)"
    r"\s+(\S+)"
)
_TAIL = 20


@dataclass(frozen=True)
class WheelTarget:
    """The interpreter and platform the wheels are for (default: CPython 3.11, x86_64 Linux)."""

    python_version: str = "3.11"
    implementation: str = "cp"
    arch: str = "x86_64"
    glibc: str = "2.28"

    def __post_init__(self) -> None:
        if self.arch not in _ARCH_ALIASES:
            raise WheelhouseError(f"unsupported architecture {self.arch!r}; use x86_64 or aarch64")
        object.__setattr__(self, "arch", _ARCH_ALIASES[self.arch])
        if not re.fullmatch(r"3\.\d{1,2}", self.python_version):
            raise WheelhouseError(f"python version {self.python_version!r} must look like 3.11")
        if not re.fullmatch(r"2\.\d{1,2}", self.glibc) or int(self.glibc.split(".")[1]) < 17:
            raise WheelhouseError(f"glibc {self.glibc!r} must look like 2.28 (2.17 or newer)")

    @property
    def abi(self) -> str:
        return f"{self.implementation}{self.python_version.replace('.', '')}"

    def platforms(self) -> list[str]:
        """manylinux tags from the target glibc down to 2.17, plus manylinux2014 (pip expands
        it to 2010 and 1 on x86_64)."""
        newest = int(self.glibc.split(".")[1])
        tags = [f"manylinux_2_{minor}_{self.arch}" for minor in range(newest, 16, -1)]
        return [*tags, f"manylinux2014_{self.arch}"]

    def pip_args(self) -> list[str]:
        args = ["--only-binary=:all:", "--python-version", self.python_version,
                "--implementation", self.implementation]
        for abi in (self.abi, "abi3", "none"):
            args += ["--abi", abi]
        for platform in self.platforms():
            args += ["--platform", platform]
        return args


def cache_root() -> Path:
    """$WORKBENCH_HOME/cache when set, else the user's cache dir for workbench."""
    home = os.environ.get("WORKBENCH_HOME")
    if home:
        return Path(home) / "cache"
    import platformdirs

    return Path(platformdirs.user_cache_dir("workbench"))


def cache_key(requirements: Sequence[str], requirement_files: Sequence[Path],
              target: WheelTarget) -> str:
    """sha256 of everything pip download is asked (the files by content)."""
    data = {
        "target": [target.python_version, target.implementation, target.arch, target.glibc],
        "requirements": list(requirements),
        "files": [hashlib.sha256(path.read_bytes()).hexdigest() for path in requirement_files],
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _run_pip(argv: list[str], progress: Progress | None) -> None:
    tail: list[str] = []
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, text=True, errors="replace")
    assert process.stdout is not None
    for raw in process.stdout:
        line = raw.rstrip()
        if not line:
            continue
        tail = [*tail[-(_TAIL - 1):], line]
        if progress:
            progress(line)
    if process.wait() != 0:
        output = "\n".join(tail)
        missing = _NOT_FOUND.findall(output)
        if missing:
            name = missing[-1]
            raise WheelhouseError(
                f"pip could not get {name} as a wheel for the build target; pin a version that "
                f"has one, or put its wheel in image.wheelhouse\n{output}"
            )
        raise WheelhouseError(f"pip download failed (exit {process.returncode}):\n{output}")


def resolve_wheelhouse(
    requirements: Sequence[str],
    requirement_files: Sequence[Path] = (),
    *,
    target: WheelTarget | None = None,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
) -> Path:
    """A folder holding wheels for `requirements` (strings) and `requirement_files` (-r),
    cached by a hash of the inputs; pip runs with the workstation's own pip config."""
    target = target or WheelTarget()
    files = [Path(path).resolve() for path in requirement_files]
    root = (cache_dir or cache_root()) / "wheelhouses"
    final = root / cache_key(requirements, files, target)
    if (final / ".complete").is_file():
        if progress:
            progress(f"wheelhouse cache hit: {final}")
        return final
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".resolving-", dir=root))
    try:
        argv = [sys.executable, "-m", "pip", "download", "--progress-bar", "off",
                "--dest", str(staging), *target.pip_args()]
        for path in files:
            argv += ["-r", str(path)]
        argv += ["--", *requirements] if requirements else []
        if progress:
            progress(f"resolving wheels for {target.abi} manylinux {target.arch}")
        _run_pip(argv, progress)
        (staging / ".complete").write_text(json.dumps(sorted(p.name for p in staging.iterdir())))
        try:
            staging.rename(final)
        except OSError:
            if not (final / ".complete").is_file():  # another resolver won the race otherwise
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final
