"""LiveTable: rows in place, the cursor on its key, a redraw only for rows that changed."""

from __future__ import annotations

from rich.text import Text
from textual.app import App, ComposeResult
from workbench.tui.table import LiveTable, Row, column_widths


class TableApp(App[None]):
    def __init__(self) -> None:
        super().__init__()
        self.selected: list[str] = []

    def compose(self) -> ComposeResult:
        table = LiveTable(id="t", zebra_stripes=True)
        table.set_columns("NAME", "STATE")
        yield table

    def on_live_table_row_selected(self, event: LiveTable.RowSelected) -> None:
        self.selected.append(event.key)


def rows(*states: str, style: str = "green") -> list[Row]:
    return [Row(f"r{n}", (f"r{n}", Text(state, style=style)), f"r{n} {state}")
            for n, state in enumerate(states)]


async def test_cursor_follows_its_key_and_keys_move_it() -> None:
    app = TableApp()
    async with app.run_test(size=(40, 10)) as pilot:
        table = app.query_one(LiveTable)
        table.show_rows(rows("a", "b", "c", "d"))
        table.focus()
        await pilot.press("down", "down")
        assert table.selected_key == "r2"
        table.show_rows([rows("a", "b", "c", "d")[i] for i in (3, 2, 1, 0)])  # reordered
        assert table.selected_key == "r2" and table.cursor_row == 1
        table.show_rows(rows("a", "b"))  # r2 is gone: the cursor stays in range
        assert table.cursor_row == 1 and table.selected_key == "r1"
        await pilot.press("up", "end")
        assert table.selected_key == "r1"
        await pilot.press("home", "enter")
        assert app.selected == ["r0"]
        table.show_rows([])
        assert table.selected_key is None and table.row_count == 0
        await pilot.press("enter", "down")  # nothing to select, nothing breaks
        assert app.selected == ["r0"]


async def test_only_changed_rows_are_drawn_again() -> None:
    app = TableApp()
    async with app.run_test(size=(40, 10)) as pilot:
        table = app.query_one(LiveTable)
        table.show_rows(rows("a", "b", "c"))
        await pilot.pause()
        drawn = {key: entry[3] for key, entry in table._strips.items()}
        assert set(drawn) == {"r0", "r1", "r2"}
        table.show_rows(rows("a", "B", "c"))  # new objects, one different row
        await pilot.pause()
        assert table._strips["r0"][3] is drawn["r0"] and table._strips["r2"][3] is drawn["r2"]
        assert table._strips["r1"][3] is not drawn["r1"]
        assert "B" in table._strips["r1"][3].text
        before = table._strips["r0"][3]
        table.show_rows(rows("a", "B", "c", style="red"))  # same words, another colour: redrawn
        await pilot.pause()
        assert table._strips["r0"][3] is not before


async def test_columns_grow_to_the_widest_cell_and_clicks_select() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 10)) as pilot:
        table = app.query_one(LiveTable)
        table.show_rows(rows("a"))
        assert table.widths == [4, 5]  # the labels
        wide = rows("a", "a much longer state")
        table.show_rows(wide, column_widths(wide, 2))
        assert table.widths == [4, 19]
        await pilot.pause()
        await pilot.click(LiveTable, offset=(2, 2))  # the second row (the header is line 0)
        assert table.selected_key == "r1" and app.selected == []
        await pilot.click(LiveTable, offset=(2, 2))
        assert app.selected == ["r1"]
        table.show_rows(rows("a", "x" * 100))  # wider than the screen: left/right scroll it
        await pilot.pause()
        table.focus()
        await pilot.press("right", "right")
        assert table.scroll_offset.x > 0
        await pilot.press("left", "left")
        assert table.scroll_offset.x == 0


def test_column_widths_counts_cells_not_characters() -> None:
    wide = [Row("x", ("日本", Text("ab")))]
    assert column_widths(wide, 2) == [4, 2]
