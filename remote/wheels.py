"""The agent's payload, built on the workstation: the running workbench as a wheel, plus a
wheelhouse of `workbench[agent]`'s dependencies for the box's Python and platform."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path

from packaging.requirements import Requirement
from workbench.remote.errors import RemoteError
from workbench.remote.facts import BoxFacts

import workbench
from workbench.images.wheelhouse import WheelTarget, cache_root, resolve_wheelhouse

Say = Callable[[str], None]
PACKAGES = ("workbench", "agent", "remote", "tui")
_TOP_FILES = ("pyproject.toml", "README.md", "setup.cfg", "setup.py", "MANIFEST.in")
_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".mypy_cache")


def source_root() -> Path:
    """The source tree of the running workbench (its pyproject.toml sits next to workbench/)."""
    root = Path(workbench.__file__).resolve().parents[1]
    if not (root / "pyproject.toml").is_file():
        raise RemoteError(f"cannot build the agent: no pyproject.toml at {root} (workbench is "
                          "not installed from a source tree; install it with `pip install -e`)")
    return root


def source_hash(root: Path) -> str:
    """sha256 over the files that go into the wheel (paths and contents)."""
    digest = hashlib.sha256()
    files = [root / name for name in _TOP_FILES if (root / name).is_file()]
    for package in PACKAGES:
        files += sorted(p for p in (root / package).rglob("*")
                        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def build_wheel(say: Say | None = None) -> tuple[Path, str]:
    """The running version's wheel (cached by version + source hash) and that build id."""
    root = source_root()
    build_id = source_hash(root)[:16]
    out = cache_root() / "agent-wheels" / f"{workbench.__version__}-{build_id}"
    found = sorted(out.glob("workbench-*.whl"))
    if found:
        return found[0], build_id
    with tempfile.TemporaryDirectory(prefix="wb-wheel-") as tmp:
        tree = Path(tmp) / "src"
        tree.mkdir()
        for name in _TOP_FILES:
            if (root / name).is_file():
                shutil.copy2(root / name, tree / name)
        for package in PACKAGES:
            if (root / package).is_dir():
                shutil.copytree(root / package, tree / package, ignore=_SKIP)
        staging = Path(tmp) / "out"
        argv = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check",
                "-q", "-w", str(staging), str(tree)]
        if find_spec("setuptools") and find_spec("wheel"):
            argv.insert(5, "--no-build-isolation")
        if say:
            say(f"building workbench {workbench.__version__} wheel")
        result = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise RemoteError(f"building the workbench wheel failed:\n{result.stderr[-3000:]}")
        out.mkdir(parents=True, exist_ok=True)
        for wheel in staging.glob("workbench-*.whl"):
            shutil.copy2(wheel, out / wheel.name)
    return sorted(out.glob("workbench-*.whl"))[0], build_id


def agent_requirements(wheel: Path, extra: str = "agent") -> list[str]:
    """Requires-Dist of the wheel for `workbench[extra]` (extra markers resolved, others kept)."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        text = archive.read(name).decode()
    wanted: list[str] = []
    for line in text.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        requirement = Requirement(line.split(":", 1)[1].strip())
        marker = requirement.marker
        if marker is not None and "extra" in str(marker):
            if not marker.evaluate({"extra": extra}):
                continue
            requirement.marker = None
        wanted.append(str(requirement))
    return wanted


def target_for(facts: BoxFacts) -> WheelTarget:
    major, minor = facts.python_tuple
    return WheelTarget(python_version=f"{major}.{minor}", arch=facts.machine,
                       glibc=facts.glibc if facts.glibc.startswith("2.") else "2.17")


def wheelhouse(wheel: Path, facts: BoxFacts, say: Say | None = None) -> Path:
    """A folder of wheels for the agent's dependencies on the box (cached by inputs)."""
    return resolve_wheelhouse(agent_requirements(wheel), target=target_for(facts), progress=say)
