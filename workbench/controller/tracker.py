"""Rollout outcomes that deploy streams wait on: progress text, then done or failed."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Literal


@dataclass
class RolloutStatus:
    api: str
    version: int
    state: Literal["running", "done", "failed"] = "running"
    progress: str = ""
    message: str = ""
    log_tail: list[str] = field(default_factory=list)
    replaced: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class RolloutTracker:
    def __init__(self) -> None:
        self._current: dict[str, RolloutStatus] = {}

    def begin(self, api: str, version: int, replaced: int = 0) -> RolloutStatus:
        status = RolloutStatus(api, version, replaced=replaced)
        self._current[api] = status
        return status

    def get(self, api: str) -> RolloutStatus | None:
        return self._current.get(api)

    def _touch(self, status: RolloutStatus) -> None:
        status.changed.set()

    def progress(self, api: str, text: str) -> None:
        status = self._current.get(api)
        if status is not None and status.state == "running" and status.progress != text:
            status.progress = text
            self._touch(status)

    def finish(self, api: str, version: int, *, failed: bool = False, message: str = "",
               log_tail: list[str] | None = None) -> None:
        status = self._current.get(api)
        if status is None or status.version != version or status.state != "running":
            return
        status.state = "failed" if failed else "done"
        status.message = message
        status.log_tail = log_tail or []
        self._touch(status)

    async def wait_change(self, status: RolloutStatus, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(status.changed.wait(), timeout)
        status.changed.clear()
