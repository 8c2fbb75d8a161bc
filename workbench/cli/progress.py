"""Progress while the CLI waits: build steps (from workbench.images) and replicas becoming ready."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from types import TracebackType

from rich.console import Console
from rich.status import Status

from workbench.images.progress import BuildFailed
from workbench.images.progress import render_build as _render_build
from workbench.models import BuildEvent, ReplicaInfo

__all__ = ["BuildFailed", "WaitDisplay", "render_build"]


def render_build(events: Iterable[BuildEvent]) -> str:
    """Show build progress on stderr (stdout stays clean for --json)."""
    from workbench.cli.render import err

    return _render_build(events, console=err)


class WaitDisplay:
    """A spinner line: "iris: 1/2 ready, 1 starting"; plain lines when not on a terminal."""

    def __init__(self, console: Console):
        self.console = console
        self._status: Status | None = None
        self._last_plain = ""

    def __enter__(self) -> WaitDisplay:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    def update(self, api: str, replicas: list[ReplicaInfo], total: int) -> None:
        counts = Counter(r.state.value for r in replicas)
        parts = [f"{counts.pop('ready', 0)}/{total} ready"]
        parts += [f"{count} {state}" for state, count in sorted(counts.items())]
        line = f"{api}: waiting for replicas: {', '.join(parts)}"
        if not self.console.is_terminal:
            if line != self._last_plain:
                self.console.print(line, markup=False, highlight=False)
                self._last_plain = line
            return
        if self._status is None:
            self._status = self.console.status(line)
            self._status.start()
        else:
            self._status.update(line)

    def stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
