from importlib import metadata
from pathlib import Path

import workbench
from workbench.images.runtime import runtime_files, runtime_pins, runtime_requirements


def test_runtime_files_are_the_runtime_only() -> None:
    names = [e.name for e in runtime_files()]
    assert "runtime/workbench/__init__.py" in names
    assert "runtime/workbench/wire/replica.py" in names
    assert "runtime/workbench/serving/__init__.py" in names
    allowed = ("runtime/workbench/__init__.py",)
    assert all(n in allowed or n.startswith(("runtime/workbench/serving/", "runtime/workbench/wire/"))
               for n in names)
    assert all(n.endswith(".py") and "__pycache__" not in n for n in names)
    assert names == sorted(names)
    first = next(e for e in runtime_files() if e.name == "runtime/workbench/__init__.py")
    assert first.read() == Path(workbench.__file__).read_bytes()


def test_pins_are_the_installed_versions() -> None:
    pins = runtime_pins()
    assert f"fastapi=={metadata.version('fastapi')}" in pins
    assert f"pydantic=={metadata.version('pydantic')}" in pins
    assert runtime_pins(("no-such-package-workbench",)) == []
    assert runtime_requirements().decode().splitlines() == pins
