"""KeyBar: the bindings that apply, in one line; a click presses the key; redrawn only on change."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.binding import Binding
from workbench.tui.widgets import KeyBar


class BarApp(App[None]):
    BINDINGS = [Binding("x", "mark('x')", "Mark"), Binding("y", "mark('y')", "Hidden", show=False),
                Binding("z", "mark('z')", "Zap")]

    def __init__(self) -> None:
        super().__init__()
        self.marked: list[str] = []

    def compose(self) -> ComposeResult:
        yield KeyBar()

    def action_mark(self, what: str) -> None:
        self.marked.append(what)


async def test_shows_what_applies_and_a_click_presses_it() -> None:
    app = BarApp()
    async with app.run_test(size=(80, 5)) as pilot:
        bar = app.query_one(KeyBar)
        await pilot.pause()
        line = str(bar.render())
        assert " x Mark " in line and " z Zap " in line and "Hidden" not in line
        assert "palette" in line  # the command palette's key, as Textual's footer shows it
        start = next(span[0] for span in bar._spans if span[2] == "z")
        await pilot.click(KeyBar, offset=(start + 1, 0))
        assert app.marked == ["z"]
        hints = bar._hints
        bar._bindings_changed(app.screen)  # the same bindings again: nothing to redraw
        assert bar._hints is hints
