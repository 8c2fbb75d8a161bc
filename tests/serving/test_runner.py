"""workbench.serving.runner: sync calls in threads, async on the loop; slots held until done."""

from __future__ import annotations

import asyncio
import threading

import pytest

from workbench.serving.runner import Runner


async def test_async_and_sync_calls() -> None:
    runner = Runner(2)
    calls: list[str] = []

    async def coro() -> str:
        return "a"

    assert await runner.call(coro, True, lambda: calls.append("a")) == "a"
    assert (
        await runner.call(lambda: threading.current_thread().name, False, lambda: calls.append("s"))
        != threading.current_thread().name
    )
    assert calls == ["a", "s"]


async def test_done_waits_for_abandoned_thread() -> None:
    runner = Runner(1)
    gate = threading.Event()
    done = asyncio.Event()

    task = asyncio.create_task(runner.call(lambda: gate.wait(10), False, done.set))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not done.is_set()  # the thread still runs: its slot stays taken
    gate.set()
    await asyncio.wait_for(done.wait(), 10)


async def test_exception_propagates_and_done_called() -> None:
    runner = Runner(1)
    calls: list[int] = []

    def boom() -> None:
        raise KeyError("k")

    with pytest.raises(KeyError):
        await runner.call(boom, False, lambda: calls.append(1))
    assert calls == [1]
