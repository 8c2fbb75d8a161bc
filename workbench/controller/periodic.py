"""A controller loop that runs one step at a fixed period and outlives the step's failures."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import NoReturn


async def every(seconds: float, step: Callable[[], Awaitable[None] | None], *, log: logging.Logger,
                failed: str, least: float = 0.05) -> NoReturn:
    """Call `step` (plain or async) every `seconds`, counted from each start; a step that raises is
    logged as `failed` and the loop goes on. It sleeps at least `least` between two steps."""
    while True:
        started = time.monotonic()
        try:
            result = step()
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception(failed)
        await asyncio.sleep(max(least, seconds - (time.monotonic() - started)))
