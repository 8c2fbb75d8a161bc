"""What every full screen shares: header, disconnected banner, a `/` filter line, the footer."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, cast

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Header, Input
from workbench.tui import fmt
from workbench.tui.state import FleetState
from workbench.tui.widgets import Banner, KeyBar

if TYPE_CHECKING:
    from workbench.tui.app import WorkbenchApp


#: Textual's header icon (⭘) is missing from the browser font textual-serve uses (Roboto Mono)
WEB_ICON = "◊"


def header_icon() -> str | None:
    """The header's icon: one the web UI's font has when served by `workbench web`."""
    return WEB_ICON if "web_driver" in os.environ.get("TEXTUAL_DRIVER", "") else None


class DataScreen(Screen[None]):
    """A screen that shows the app's FleetState and refreshes when a poll lands."""

    BINDINGS = [
        Binding("slash", "filter", "Filter", key_display="/"),
    ]
    HELP_NAME = ""  # what the help calls the screen ("API detail")

    filter_text: str = ""
    _shown_generation = -1  # the app's poll generation on screen (an int: holding the state
    # itself would make this screen the one that frees it, on the UI thread)

    @property
    def wb(self) -> WorkbenchApp:
        return cast("WorkbenchApp", self.app)

    def compose_body(self) -> ComposeResult:
        yield from ()

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon=header_icon())
        yield Banner(id="banner")
        yield from self.compose_body()
        yield Input(placeholder="filter (enter to keep, esc to clear)", id="filter", compact=True)
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#filter", Input).display = False
        self.query_one("#filter", Input).cursor_blink = not fmt.frozen()
        self.refresh_from(self.wb.state, force=True)

    def on_screen_resume(self) -> None:
        self.refresh_from(self.wb.state)  # nothing to do when no poll landed while it was hidden

    def refresh_from(self, state: FleetState, force: bool = False) -> None:
        if self.wb.generation == self._shown_generation and not force:
            return
        self._shown_generation = self.wb.generation
        banner = self.query_one(Banner)
        if state.error:
            since = fmt.age(state.error_since)
            shown = "" if not state.loaded else f" · showing data from {fmt.age(state.last_ok)} ago"
            banner.show_problem(Text(f"controller not answering ({since}): {fmt.mask(state.error)}{shown}"
                                     " · retrying…  (is `workbench serve` running?)"))
        else:
            banner.show_problem(None)
        self.show(state)

    def show(self, state: FleetState) -> None:
        """Render `state`; screens override."""

    # -- filter -----------------------------------------------------------------------------
    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.filter_text = event.value.strip().lower()
            self.show(self.wb.state)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            if not event.value:
                event.input.display = False
            self.focus_main()

    def focus_main(self) -> None:
        """Give the focus back to the screen's main widget."""

    def matches(self, *cells: object) -> bool:
        if not self.filter_text:
            return True
        return any(self.filter_text in str(cell).lower() for cell in cells)

    def clear_filter(self) -> bool:
        """Esc: clear and hide the filter first; True when there was one."""
        box = self.query_one("#filter", Input)
        if box.display or self.filter_text:
            box.value = ""
            box.display = False
            self.filter_text = ""
            self.show(self.wb.state)
            self.focus_main()
            return True
        return False
