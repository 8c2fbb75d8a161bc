"""Progress while the CLI waits on a deployment: build steps, rollout, messages."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.status import Status
from rich.text import Text

from workbench.cli.render import sanitize
from workbench.wire.control import DeployEvent


class DeployDisplay:
    """A spinner line on a terminal; plain, de-duplicated lines elsewhere (CI logs)."""

    def __init__(self, console: Console):
        self.console = console
        self.live = console.is_terminal
        self._status: Status | None = None
        self._last = ""

    def __enter__(self) -> DeployDisplay:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    def show(self, event: DeployEvent) -> None:
        prefix = f"{event.api}: " if event.api else ""
        if prefix and event.message.startswith(prefix):  # the controller named the API already
            event = event.model_copy(update={"message": event.message[len(prefix):]})
        if event.kind == "build" and event.build is not None:
            build = event.build
            if build.kind == "step":
                self._transient(f"{prefix}build step {build.step}/{build.total_steps}: {build.message}")
            elif build.kind == "log" and build.message.strip():
                if self.live:
                    self._transient(f"{prefix}{build.message.strip()[:110]}")
                else:
                    self._line(f"  {prefix}{build.message.rstrip()}", dim=True)
            elif build.kind == "done" and build.image_id:  # a container API's image, found or pulled
                self._line(f"{prefix}image {build.artifact} " + ("is present" if build.cached else "pulled"))
            elif build.kind == "done":
                self._line(f"{prefix}built {build.artifact}" + (" (cached)" if build.cached else ""))
        elif event.kind == "rollout":
            self._transient(f"{prefix}{event.message}")
        elif event.kind == "log":
            self._line(f"{prefix}{event.message}")

    def _transient(self, text: str) -> None:
        if not self.live:
            self._line(text)
            return
        shown = Text(sanitize(text))
        if self._status is None:
            self._status = self.console.status(shown)
            self._status.start()
        else:
            self._status.update(shown)

    def _line(self, text: str, dim: bool = False) -> None:
        """A line as the build or the controller wrote it: never markup, never wrapped (a CI log
        or a pipe keeps an image hash or an error whole)."""
        if text == self._last:
            return
        self._last = text
        self.console.print(Text(sanitize(text), style="dim" if dim else ""), soft_wrap=True)

    def stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
