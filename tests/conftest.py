"""Fixtures shared by every test folder, and the CI rule: nothing real is skipped under CI=true."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.support.real_parts import IN_CI, Workbench


@pytest.fixture
def workbench(tmp_path: Path) -> Iterator[Workbench]:
    """The CLI against a fresh home; everything its agent started is removed afterwards."""
    bench = Workbench.create(tmp_path / "home")
    try:
        yield bench
    finally:
        bench.cleanup()


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def _as_failure(report: pytest.TestReport | pytest.CollectReport, what: str) -> None:
    reason = _skip_reason(report)
    report.outcome = "failed"
    report.longrepr = (f"CI=true: {what} was skipped ({reason}); nothing real is skipped in CI "
                       "(TESTING.md). Only tests marked `gpu` may skip: they depend on whether this "
                       "machine has an NVIDIA GPU.")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, None, None]:
    """Under CI=true a skip (pytest.skip, skipif, a missing part) is a failure, unless the test is
    marked `gpu`. An expected failure (xfail) is left as it is."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    expected = hasattr(report, "wasxfail") or item.get_closest_marker("gpu") is not None
    if IN_CI and report.skipped and not expected:
        _as_failure(report, item.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, None, None]:
    """A whole module skipped at import (``pytest.skip(allow_module_level=True)``,
    ``importorskip``) is a failure under CI=true too."""
    outcome = yield
    report: pytest.CollectReport = outcome.get_result()  # type: ignore[attr-defined]
    if IN_CI and report.skipped:
        _as_failure(report, collector.nodeid)
