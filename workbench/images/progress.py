"""Show an agent's streamed build (BuildEvent NDJSON) on the workstation: a live progress bar
with the last log lines on a terminal, plain lines elsewhere (CI logs)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from workbench.images.errors import ImageError
from workbench.models import BuildEvent

ERROR_TAIL = 20


class BuildFailed(ImageError):
    """The agent reported a failed build (or the stream ended without a result)."""

    def __init__(self, message: str, log_tail: list[str]):
        self.message = message
        self.log_tail = log_tail
        text = message if not log_tail else message + "\n" + "\n".join(log_tail)
        super().__init__(text)


def parse_events(lines: Iterable[str | bytes | BuildEvent]) -> Iterator[BuildEvent]:
    """BuildEvents from NDJSON lines (blank lines skipped; events pass through)."""
    for line in lines:
        if isinstance(line, BuildEvent):
            yield line
        elif line.strip():
            yield BuildEvent.model_validate_json(line)


class _State:
    """What has been seen so far: the last step and the log tail."""

    def __init__(self, tail: int):
        self.step = 0
        self.total: int | None = None
        self.title = ""
        self.logs: deque[str] = deque(maxlen=max(tail, ERROR_TAIL))
        self.artifact: str | None = None

    def apply(self, event: BuildEvent) -> None:
        if event.kind == "step":
            self.step = event.step if event.step is not None else self.step + 1
            self.total = event.total_steps or self.total
            self.title = event.message
            self.logs.append(f"Step {self.step}/{self.total or '?'} : {event.message}")
        elif event.kind == "log":
            self.logs.extend(part for part in event.message.splitlines() if part.strip())
        elif event.kind == "done":
            self.artifact = event.artifact
        elif event.kind == "error":
            raise BuildFailed(event.message or "build failed", list(self.logs)[-ERROR_TAIL:])


def _plain(events: Iterable[BuildEvent], console: Console, state: _State) -> None:
    for event in events:
        if event.kind == "step":
            total = event.total_steps or state.total
            console.print(f"Step {event.step}/{total or '?'}: {event.message}",
                          markup=False, highlight=False)
        elif event.kind == "log":
            for part in event.message.splitlines():
                if part.strip():
                    console.print("  " + part, markup=False, highlight=False)
        elif event.kind == "done":
            cached = " (cached)" if event.cached else ""
            console.print(f"built {event.artifact}{cached}", markup=False, highlight=False)
        state.apply(event)


def _live(events: Iterable[BuildEvent], console: Console, state: _State, tail: int) -> None:
    bar = Progress(TextColumn("[bold]Step"), MofNCompleteColumn(), BarColumn(),
                   TextColumn("{task.description}"), TimeElapsedColumn(), console=console)
    task = bar.add_task("starting", total=None)

    def view() -> Group:
        lines = list(state.logs)[-tail:]
        return Group(bar, Text("\n".join("  " + line for line in lines), style="dim",
                               no_wrap=True, overflow="ellipsis"))

    with Live(view(), console=console, refresh_per_second=8, transient=True) as live:
        for event in events:
            state.apply(event)
            bar.update(task, completed=state.step, total=state.total,
                       description=state.title[:60])
            live.update(view())
    if state.artifact:
        console.print(f"built [bold]{state.artifact}[/bold]")


def render_build(events: Iterable[BuildEvent | str | bytes], *, console: Console | None = None,
                 tail: int = 6, live: bool | None = None) -> str:
    """Show the build; return the artifact of the `done` event, or raise BuildFailed.

    `live` defaults to whether the console is a terminal."""
    console = console or Console()
    state = _State(tail)
    stream = parse_events(events)
    if live if live is not None else console.is_terminal:
        _live(stream, console, state, tail)
    else:
        _plain(stream, console, state)
    if state.artifact is None:
        raise BuildFailed("the build stream ended without a result", list(state.logs)[-ERROR_TAIL:])
    return state.artifact
