"""compute.gpu (count or fraction), gpu_memory and gpu_type in workbench.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.spec.test_loader import problems, project
from workbench.spec import load_specs

GIB = 2**30


@pytest.mark.parametrize(
    ("text", "gpu", "share", "memory"),
    [
        ("gpu: 1", 1, None, None),
        ("gpu: 2\n  gpu_memory: 16", 2, None, 16 * GIB),
        ("gpu: 0.5\n  gpu_memory: 500Mi", 0.5, 0.5, 500 * 2**20),
        ("gpu: 4.0", 4, None, None),
    ],
)
def test_good(tmp_path: Path, text: str, gpu: float, share: float | None, memory: int | None) -> None:
    [loaded] = load_specs(project(tmp_path, f"name: g\ncompute:\n  {text}\n  cpu: 1\n"))
    compute = loaded.spec.compute
    assert compute.gpu == gpu and compute.gpu_share == share and compute.gpu_memory == memory
    assert compute.gpu_count == (1 if gpu < 1 else int(gpu))


def test_gpu_type(tmp_path: Path) -> None:
    [loaded] = load_specs(project(tmp_path, "name: g\ncompute:\n  gpu: 1\n  gpu_type: A100\n"))
    assert loaded.spec.compute.gpu_type == "A100"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("gpu: 1.5", "whole number"),
        ("gpu: -1", "0 to 64"),
        ("gpu: 65", "0 to 64"),
        ("gpu: true", "not a boolean"),
        ("gpu: 1\n  gpu_memory: lots", "not a size"),
        ("gpu_memory: 16", "gpu_memory needs a GPU"),
        ("gpu_type: A100", "gpu_type needs a GPU"),
        ("gpu: 1\n  gpu_type: ''", "at least 1 character"),
        ("gpu: 1\n  gpu_memory: 0", "greater than 0"),
    ],
)
def test_bad_names_file_line_and_field(tmp_path: Path, text: str, expected: str) -> None:
    [problem] = problems(project(tmp_path, f"name: g\ncompute:\n  {text}\n"))
    assert "workbench.yaml" in problem and expected in problem and "compute" in problem
