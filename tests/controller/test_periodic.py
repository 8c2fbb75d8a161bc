"""The controller's periodic loop: steps at its period, plain or async, and a failing step is
logged without ending the loop."""

from __future__ import annotations

import asyncio
import logging
import time
from itertools import pairwise

import pytest

from workbench.controller.periodic import every


async def test_a_failing_step_is_logged_and_the_loop_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[float] = []

    def step() -> None:
        calls.append(time.monotonic())
        if len(calls) == 2:
            raise RuntimeError("boom")

    log = logging.getLogger("tests.periodic")
    with caplog.at_level(logging.ERROR, logger="tests.periodic"):
        task = asyncio.create_task(every(0.05, step, log=log, failed="step failed"))
        while len(calls) < 4:
            await asyncio.sleep(0.01)
        task.cancel()
    failures = [r for r in caplog.records if r.getMessage() == "step failed"]
    assert len(failures) == 1 and failures[0].exc_info is not None
    gaps = [b - a for a, b in pairwise(calls)]
    assert all(gap >= 0.045 for gap in gaps), gaps


async def test_an_async_step_is_awaited_and_the_period_counts_from_its_start() -> None:
    starts: list[float] = []

    async def step() -> None:
        starts.append(time.monotonic())
        await asyncio.sleep(0.06)  # longer than the period: the next starts after the least pause

    task = asyncio.create_task(every(0.05, step, log=logging.getLogger("tests.periodic"), failed="x",
                                     least=0.02))
    while len(starts) < 3:
        await asyncio.sleep(0.01)
    task.cancel()
    gaps = [b - a for a, b in pairwise(starts)]
    assert all(0.075 <= gap < 1.0 for gap in gaps), gaps
