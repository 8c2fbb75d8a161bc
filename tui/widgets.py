"""Small renderables and widgets: bars, sparklines, the disconnected banner."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from rich.text import Text
from textual.widgets import DataTable, Static
from workbench.tui.fmt import NA, frozen

_BLOCKS = "▁▂▃▄▅▆▇█"


def bar(value: float | None, maximum: float | None, width: int = 10, label: str | None = None) -> Text:
    """A horizontal bar `width` cells wide; N/A when the value or its maximum is unknown."""
    if value is None or not maximum:
        return Text(NA.ljust(width), style="dim")
    fraction = min(max(value / maximum, 0.0), 1.0)
    filled = round(fraction * width)
    style = "green" if fraction < 0.6 else "yellow" if fraction < 0.85 else "red"
    text = Text()
    text.append("█" * filled, style=style)
    text.append("░" * (width - filled), style="dim")
    if label is not None:
        text.append(f" {label}")
    return text


def spark(values: Sequence[float | None], width: int = 16, maximum: float | None = None) -> Text:
    """The last `width` values as a sparkline (gaps for missing values)."""
    recent = list(values)[-width:]
    if not recent or frozen():  # history length depends on timing: masked in frozen mode
        return Text("·" * width, style="dim")
    known = [v for v in recent if v is not None]
    top = maximum if maximum else (max(known) if known else 0.0)
    pad = " " * (width - len(recent))
    if top <= 0:
        return Text(pad + "".join(" " if v is None else _BLOCKS[0] for v in recent), style="dim")
    scale = (len(_BLOCKS) - 1) / top
    last = len(_BLOCKS) - 1
    # one string, one style: a Text built a cell at a time is the hot spot of a 512-GPU refresh
    return Text(pad + "".join(" " if v is None else _BLOCKS[min(int(v * scale + 0.5), last)] for v in recent),
                style="cyan")


class Banner(Static):
    """Shown across the top while the controller does not answer; hidden otherwise."""

    DEFAULT_CSS = """
    Banner { display: none; background: $error; color: $text; padding: 0 1; height: auto; }
    Banner.-shown { display: block; }
    """

    def show_problem(self, message: str | None) -> None:
        if message:
            self.update(message)
            self.add_class("-shown")
        else:
            self.remove_class("-shown")


def fill_table(table: DataTable[Any], rows: list[tuple[str, Sequence[Any]]]) -> None:
    """Replace the rows of `table`, keeping the cursor on the same row key when it is still there."""
    current: str | None = None
    if table.row_count and 0 <= table.cursor_row < table.row_count:
        with contextlib.suppress(Exception):
            current = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
    table.clear()
    for key, cells in rows:
        table.add_row(*cells, key=key)
    if current is not None:
        for index, (key, _) in enumerate(rows):
            if key == current:
                table.move_cursor(row=index, animate=False)
                break


def selected_key(table: DataTable[Any]) -> str | None:
    if not table.row_count:
        return None
    try:
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
    except Exception:
        return None
