"""Fixtures shared by every test folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.real_parts import Workbench


@pytest.fixture
def workbench(tmp_path: Path) -> Iterator[Workbench]:
    """The CLI against a fresh home; everything its agent started is removed afterwards."""
    bench = Workbench.create(tmp_path / "home")
    try:
        yield bench
    finally:
        bench.cleanup()
