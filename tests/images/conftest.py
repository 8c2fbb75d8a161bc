"""Fixtures for image tests: small projects on disk, loaded through the real spec loader."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from workbench.spec.loader import LoadedSpec, load_specs

PREDICTOR = "class Predictor:\n    def predict(self, payload):\n        return payload\n"
MakeProject = Callable[..., LoadedSpec]


def write_project(root: Path, spec: dict | None = None, files: dict[str, str] | None = None) -> LoadedSpec:
    """Write workbench.yaml + predictor.py (+ files) under `root` and load it."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "workbench.yaml").write_text(yaml.safe_dump({"name": "demo", **(spec or {})}))
    (root / "predictor.py").write_text(PREDICTOR)
    for name, text in (files or {}).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return load_specs(root)[0]


def reload(loaded: LoadedSpec) -> LoadedSpec:
    return load_specs(loaded.file)[0]


@pytest.fixture
def make_project(tmp_path: Path) -> MakeProject:
    def make(spec: dict | None = None, files: dict[str, str] | None = None,
             name: str = "project") -> LoadedSpec:
        return write_project(tmp_path / name, spec, files)

    return make


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Wheelhouse caches go to a temp WORKBENCH_HOME, never the user's."""
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
