"""The folder rules of ARCHITECTURE.md are executable: pyproject.toml's import-linter contracts,
checked against the package as it installs (scripts/lint-imports)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_import_contract_is_kept() -> None:
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "lint-imports")], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    lines = result.stdout.splitlines()
    kept = [line for line in lines if line.rstrip().endswith(("KEPT", "ignored import)"))]
    assert len(kept) >= 7, result.stdout  # no contract silently dropped from pyproject.toml
