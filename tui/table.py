"""LiveTable: a keyboard-first table that redraws only the rows that changed.

Why not Textual's DataTable: it re-renders every visible cell after any update and after every
style change (a screen switch is one), which on a 512-GPU fleet costs hundreds of milliseconds
per poll and per key. Here a row is rendered once into a Strip and kept until its cells change;
a poll that changes ten visible rows renders ten lines, a screen switch renders none.

Rows arrive whole (`show_rows`, usually built in the poll worker) with their keys; the cursor
stays on its key across updates. Keys: up/down (k/j), page up/down, home/end (g/G), enter, and
left/right to scroll a table wider than the screen.
Mouse: click a row to put the cursor on it, click it again to select it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from workbench.tui.state import later

PADDING = 1  # blank cells on each side of a column


@dataclass(frozen=True)
class Row:
    """One table row: its key, its cells (str or rich Text), and the lower-case words `/` matches."""

    key: str
    cells: tuple[Any, ...]
    words: str = ""


def column_widths(rows: Sequence[Row], columns: int) -> list[int]:
    """The widest cell of each column (cheap enough for the poll worker, not for the UI thread
    at 512 rows: ~5 ms)."""
    widths = [0] * columns
    for row in rows:
        for column, value in enumerate(row.cells[:columns]):
            width = value.cell_len if isinstance(value, Text) else cell_len(str(value))
            if width > widths[column]:
                widths[column] = width
    return widths


def same_row(a: Row, b: Row) -> bool:
    """Equal cells, base styles included (Text equality ignores them: "1/2" yellow == "1/2" red)."""
    if a.cells is b.cells:
        return True
    return a.cells == b.cells and all(
        not isinstance(x, Text) or (isinstance(y, Text) and x.style == y.style)
        for x, y in zip(a.cells, b.cells, strict=False))


class LiveTable(ScrollView, can_focus=True):
    """A table of `Row`s under a header of column labels that stays in place while rows scroll."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home,g", "cursor_to(0)", "First", show=False),
        Binding("end,G", "cursor_to(-1)", "Last", show=False),
        Binding("enter", "select", "Select", show=False),
        Binding("left", "scroll_left", "Scroll left", show=False),
        Binding("right", "scroll_right", "Scroll right", show=False),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "live-table--header", "live-table--cursor", "live-table--even-row"}

    DEFAULT_CSS = """
    LiveTable {
        background: $surface; color: $foreground; height: auto; max-height: 100%;
        &:focus {
            background-tint: $foreground 5%;
            & > .live-table--cursor { background: $block-cursor-background;
                                      color: $block-cursor-foreground;
                                      text-style: $block-cursor-text-style; }
            & > .live-table--header { background-tint: $foreground 5%; }
        }
        &:dark > .live-table--even-row { background: $surface-darken-1 40%; }
        & > .live-table--header { text-style: bold; background: $panel; color: $foreground; }
        &:ansi > .live-table--header { background: ansi_bright_blue; color: ansi_default; }
        & > .live-table--even-row { background: $surface-lighten-1 50%; }
        & > .live-table--cursor { background: $block-cursor-blurred-background;
                                  color: $block-cursor-blurred-foreground;
                                  text-style: $block-cursor-blurred-text-style; }
    }
    """

    cursor_row: reactive[int] = reactive(0, always_update=True, repaint=False)

    class RowSelected(Message):
        """Enter (or a second click) on a row."""

        def __init__(self, table: LiveTable, key: str):
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> LiveTable:
            return self.table

    def __init__(self, *, id: str | None = None, classes: str | None = None,
                 cursor_type: str = "row", show_cursor: bool = True, zebra_stripes: bool = False):
        super().__init__(id=id, classes=classes)
        del cursor_type  # rows only; accepted so call sites read like DataTable's
        self.show_cursor = show_cursor
        self.zebra_stripes = zebra_stripes
        self.labels: tuple[str, ...] = ()
        self.widths: list[int] = []
        self._rows: Sequence[Row] = ()
        self._index: dict[str, int] = {}
        self._strips: dict[str, tuple[Row, int, Style, Strip]] = {}  # key -> what it was drawn from
        self._header: tuple[tuple[int, ...], Style, Strip] | None = None
        self._styles: tuple[Style, Style, Style, Style] | None = None

    # -- content --------------------------------------------------------------------------------
    def set_columns(self, *labels: str) -> None:
        self.labels = labels
        self.widths = [cell_len(label) for label in labels]
        self._resize()

    @property
    def row_keys(self) -> list[str]:
        return [row.key for row in self._rows]

    @property
    def row_count(self) -> int:
        return len(self._rows)

    def get_row(self, key: str) -> tuple[Any, ...]:
        """The cells of the row with `key` (KeyError when there is none)."""
        return self._rows[self._index[key]].cells

    def show_rows(self, rows: Sequence[Row], widths: Sequence[int] | None = None) -> None:
        """Show `rows`; lines whose row is unchanged keep their drawing. `widths`, the widest
        cell of each column when the caller knows it (`column_widths`), saves measuring here."""
        if rows is self._rows:
            return
        current = self.selected_key
        old = self._rows
        index = {row.key: n for n, row in enumerate(rows)}
        changed = len(rows) != len(old)
        wanted = column_widths(rows, len(self.widths)) if widths is None else widths
        grew = False
        for column, width in enumerate(wanted[:len(self.widths)]):
            if width > self.widths[column]:
                self.widths[column] = width
                grew = True
        for n, row in enumerate(rows):
            if not changed and old[n].key != row.key:
                changed = True
            drawn = self._strips.get(row.key)
            if drawn is not None and drawn[0] is not row and same_row(drawn[0], row):
                self._strips[row.key] = (row, *drawn[1:])  # same content: keep the drawing
        for key in [k for k in self._strips if k not in index]:
            del self._strips[key]
        later.put(self._rows)  # freed by the poll worker, not here
        self._rows = rows
        self._index = index
        if grew:
            self._strips.clear()
            self._header = None
        if changed or grew:
            self._resize()
        if current is not None and current in index:
            self.cursor_row = index[current]
        else:
            self.cursor_row = min(self.cursor_row, max(len(rows) - 1, 0))
        self.refresh()

    def _resize(self) -> None:
        width = sum(w + 2 * PADDING for w in self.widths)
        self.virtual_size = Size(width, len(self._rows) + 1)

    # -- cursor ---------------------------------------------------------------------------------
    @property
    def selected_key(self) -> str | None:
        if 0 <= self.cursor_row < len(self._rows):
            return self._rows[self.cursor_row].key
        return None

    def move_cursor(self, row: int) -> None:
        self.cursor_row = row

    def validate_cursor_row(self, row: int) -> int:
        return max(0, min(row, len(self._rows) - 1))

    def watch_cursor_row(self, old: int, new: int) -> None:
        self._refresh_row(old)
        self._refresh_row(new)
        visible = max(self.scrollable_content_region.height - 1, 1)
        if new < self.scroll_offset.y:
            self.scroll_to(y=new, animate=False)
        elif new >= self.scroll_offset.y + visible:
            self.scroll_to(y=new - visible + 1, animate=False)

    def _refresh_row(self, index: int) -> None:
        y = index - self.scroll_offset.y + 1
        if 1 <= y < self.size.height:
            self.refresh(Region(0, y, self.size.width, 1))

    def action_cursor(self, step: int) -> None:
        self.cursor_row += step

    def action_page(self, direction: int) -> None:
        self.cursor_row += direction * max(self.scrollable_content_region.height - 2, 1)

    def action_cursor_to(self, index: int) -> None:
        self.cursor_row = index if index >= 0 else len(self._rows) - 1

    def action_select(self) -> None:
        key = self.selected_key
        if key is not None:
            self.post_message(self.RowSelected(self, key))

    def on_click(self, event: events.Click) -> None:
        if event.y < 1:
            return
        index = event.y - 1 + self.scroll_offset.y
        if 0 <= index < len(self._rows):
            if index == self.cursor_row or event.chain > 1:
                self.cursor_row = index
                self.action_select()
            else:
                self.cursor_row = index

    # -- drawing --------------------------------------------------------------------------------
    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles = None  # looked up again on the next frame; drawings keyed by style stay

    def _frame_styles(self) -> tuple[Style, Style, Style, Style]:
        if self._styles is None:
            base = self.rich_style
            self._styles = (base, base + self.get_component_rich_style("live-table--header"),
                            base + self.get_component_rich_style("live-table--cursor"),
                            base + self.get_component_rich_style("live-table--even-row"))
        return self._styles

    def render_line(self, y: int) -> Strip:
        base, header, cursor, even = self._frame_styles()
        width = self.size.width
        scroll_x = self.scroll_offset.x
        if y == 0:
            strip = self._header_strip(header)
        else:
            index = y - 1 + self.scroll_offset.y
            if index >= len(self._rows):
                return Strip.blank(width, base)
            style = (cursor if self.show_cursor and index == self.cursor_row
                     else even if self.zebra_stripes and index % 2 == 0 else base)
            strip = self._row_strip(self._rows[index], style)
        return strip.crop_extend(scroll_x, scroll_x + width, base if y else header)

    def _header_strip(self, style: Style) -> Strip:
        widths = tuple(self.widths)
        if self._header is None or self._header[0] != widths or self._header[1] != style:
            self._header = (widths, style, self._draw(self.labels, style))
        return self._header[2]

    def _row_strip(self, row: Row, style: Style) -> Strip:
        total = self.virtual_size.width
        drawn = self._strips.get(row.key)
        if drawn is not None and drawn[0] is row and drawn[1] == total and drawn[2] == style:
            return drawn[3]
        strip = self._draw(row.cells, style)
        self._strips[row.key] = (row, total, style, strip)
        return strip

    def _draw(self, cells: Sequence[Any], style: Style) -> Strip:
        line = Text(style=style, no_wrap=True, end="")
        pad = " " * PADDING
        for value, width in zip(cells, self.widths, strict=False):
            text = value.copy() if isinstance(value, Text) else Text(str(value))
            text.truncate(width, overflow="ellipsis", pad=True)
            line.append(pad)
            line.append_text(text)
            line.append(pad)
        # Text.render leaves unstyled runs with style None; Textual's line filters (NO_COLOR's
        # monochrome, dimming) need a Style on every segment
        segments = [segment if segment.style is not None else Segment(segment.text, style)
                    for segment in line.render(self.app.console)]
        return Strip(segments, line.cell_len)
