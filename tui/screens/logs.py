"""An API's (or one replica's) merged log, following, with filter/highlight, pause, wrap, jump."""

from __future__ import annotations

import asyncio
from collections import deque

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.markup import escape
from textual.message import Message
from textual.widgets import Input, RichLog, Static
from workbench.tui import fmt
from workbench.tui.screens.base import DataScreen
from workbench.tui.state import FleetState
from workbench.tui.widgets import Banner

KEEP = 5000


class LogScreenLines(Message):
    def __init__(self, lines: list[str], reset: bool = False):
        super().__init__()
        self.lines = lines
        self.reset = reset


class LogScreenProblem(Message):
    def __init__(self, problem: str | None):
        super().__init__()
        self.problem = problem


class LogsScreen(DataScreen):
    HELP_NAME = "logs"
    BINDINGS = [
        Binding("space,p", "pause", "Pause"),
        Binding("w", "wrap", "Wrap"),
        Binding("G,end", "bottom", "Bottom", key_display="G"),
        Binding("g,home", "top", "Top", show=False),
    ]

    def __init__(self, name: str, replica: str | None = None):
        super().__init__()
        self.api_name = name
        self.replica = replica
        self.lines: deque[str] = deque(maxlen=KEEP)
        self.paused = False
        self.wrap = False
        self.problem: str | None = None

    def compose_body(self) -> ComposeResult:
        yield Static("", id="log-status")
        yield RichLog(id="log", highlight=False, markup=False, wrap=False, max_lines=KEEP)

    def on_mount(self) -> None:  # DataScreen.on_mount runs after this one (Textual walks the MRO)
        self.render_status()
        self.run_worker(self._follow(), group="logs", exit_on_error=False)
        self.focus_main()

    def focus_main(self) -> None:
        self.query_one(RichLog).focus()

    # -- the follower: an async worker of this screen, cancelled when the screen goes ---------------
    async def _follow(self) -> None:
        first = True
        while True:
            try:
                reset = not first
                connected = False
                async for line in self.wb.backend.follow_logs(self.api_name, tail=200, replica=self.replica):
                    if not connected:
                        connected = True
                        self.post_message(LogScreenProblem(None))
                    self.post_message(LogScreenLines([line], reset))
                    reset = False
                self.post_message(LogScreenProblem("the log stream ended; reconnecting…"))
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a dead controller, a deleted API: keep trying quietly
                self.post_message(LogScreenProblem(str(error)))
            first = False
            await asyncio.sleep(2.0)

    # -- the UI side ----------------------------------------------------------------------------
    def on_log_screen_lines(self, message: LogScreenLines) -> None:
        if message.reset:
            self.lines.clear()
        self.lines.extend(fmt.mask(line) for line in message.lines)
        if message.reset:
            self.rerender()
        elif not self.paused:
            log = self.query_one(RichLog)
            for line in message.lines:
                masked = fmt.mask(line)
                if self.keep(masked):
                    log.write(self.styled(masked))
        self.render_status()

    def on_log_screen_problem(self, message: LogScreenProblem) -> None:
        self.problem = message.problem
        self.render_status()

    def keep(self, line: str) -> bool:
        return not self.filter_text or self.filter_text in line.lower()

    def styled(self, line: str) -> Text:
        text = Text(line)
        if self.filter_text:
            text.highlight_words([self.filter_text], style="reverse bold", case_sensitive=False)
        return text

    def rerender(self) -> None:
        log = self.query_one(RichLog)
        log.clear()
        log.wrap = self.wrap
        for line in self.lines:
            if self.keep(line):
                log.write(self.styled(line))
        if not self.paused:
            log.scroll_end(animate=False)

    def render_status(self) -> None:
        shown = sum(1 for line in self.lines if self.keep(line)) if self.filter_text else len(self.lines)
        what = self.api_name + (f" replica {fmt.short_id(self.replica)}" if self.replica else "")
        parts = [f"[b]logs[/b] {escape(what)}", "[yellow]paused[/yellow]" if self.paused else "following",
                 f"{shown} lines" + (f" matching '{escape(self.filter_text)}'" if self.filter_text else ""),
                 "wrap on" if self.wrap else "wrap off"]
        if self.problem:
            parts.append(f"[red]{escape(fmt.mask(self.problem))}[/red]")
        self.query_one("#log-status", Static).update(" · ".join(parts))

    def show(self, state: FleetState) -> None:
        if self.is_mounted:
            self.rerender()
            self.render_status()

    def refresh_from(self, state: FleetState, force: bool = False) -> None:
        """A poll changes only the banner here; the log itself follows its own stream."""
        self.query_one(Banner).show_problem(
            f"controller not answering: {fmt.mask(state.error)} · retrying…" if state.error else None)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.filter_text = event.value.strip().lower()
            self.rerender()
            self.render_status()

    def action_pause(self) -> None:
        self.paused = not self.paused
        if not self.paused:
            self.rerender()
        self.render_status()

    def action_wrap(self) -> None:
        self.wrap = not self.wrap
        self.rerender()
        self.render_status()

    def action_bottom(self) -> None:
        self.query_one(RichLog).scroll_end(animate=False)

    def action_top(self) -> None:
        self.query_one(RichLog).scroll_home(animate=False)
