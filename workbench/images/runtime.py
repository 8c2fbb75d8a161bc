"""The predictor runtime shipped into every context: its source and its dependency pins."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import workbench
from workbench.images.files import Entry, file_entry

#: Runtime dependencies pinned to the workstation's installed versions (when installed).
RUNTIME_PACKAGES = (
    "fastapi", "starlette", "uvicorn", "pydantic", "pydantic-core", "prometheus-client",
    "python-multipart", "anyio", "httptools", "uvloop",
)


#: The packages a replica imports: the contract wing and the predictor runtime.
RUNTIME_FOLDERS = ("wire", "serving")


def package_root() -> Path:
    """The folder of the imported `workbench` package."""
    return Path(workbench.__file__).resolve().parent


def runtime_files(root: Path | None = None) -> list[Entry]:
    """workbench/__init__.py, workbench/wire/**.py and workbench/serving/**.py as runtime/workbench/..."""
    root = root or package_root()
    entries = [file_entry("runtime/workbench/__init__.py", root / "__init__.py")]
    for folder in RUNTIME_FOLDERS:
        for path in (root / folder).rglob("*.py"):
            if "__pycache__" in path.parts:
                continue
            rel = path.relative_to(root).as_posix()
            entries.append(file_entry(f"runtime/workbench/{rel}", path))
    entries.sort(key=lambda entry: entry.name)
    return entries


def runtime_pins(packages: tuple[str, ...] = RUNTIME_PACKAGES) -> list[str]:
    """`name==version` for each runtime package installed on this machine."""
    pins = []
    for name in packages:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return pins


def runtime_requirements() -> bytes:
    """runtime/requirements.txt's content."""
    return "".join(pin + "\n" for pin in runtime_pins()).encode()


def runtime_requirements_entry() -> Entry:
    return Entry("runtime/requirements.txt", data=runtime_requirements())
