"""The APIs: one row per API like `workbench get`, with a requests/s sparkline."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.markup import escape
from workbench.tui.screens.base import DataScreen
from workbench.tui.state import FleetState
from workbench.tui.table import LiveTable
from workbench.tui.views import API_COLUMNS, matching


class ApisScreen(DataScreen):
    """Every API; enter opens one."""

    HELP_NAME = "APIs"

    BINDINGS = [
        Binding("enter", "open", "Open", show=False),
        Binding("l", "logs", "Logs"),
        Binding("n", "deploy", "Deploy"),
        Binding("s", "scale", "Scale"),
        Binding("p", "predict", "Predict"),
        Binding("d", "delete", "Delete"),
    ]

    def compose_body(self) -> ComposeResult:
        table = LiveTable(id="apis", cursor_type="row", zebra_stripes=True)
        table.set_columns(*API_COLUMNS)
        yield table

    def focus_main(self) -> None:
        self.query_one("#apis", LiveTable).focus()

    def show(self, state: FleetState) -> None:
        apis = self.wb.views.apis
        self.query_one("#apis", LiveTable).show_rows(matching(apis.rows, self.filter_text), apis.widths)

    def selected(self) -> str | None:
        name = self.query_one("#apis", LiveTable).selected_key
        if name is None:
            self.notify("no API selected (deploy one with n)", severity="warning")
        return name

    def on_live_table_row_selected(self, event: LiveTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        name = self.selected()
        if name:
            self.wb.open_api(name)

    def action_logs(self) -> None:
        name = self.selected()
        if name:
            self.wb.open_logs(name)

    def action_deploy(self) -> None:
        self.wb.open_deploy()

    def action_scale(self) -> None:
        name = self.selected()
        if name:
            self.wb.open_scale(name)

    def action_predict(self) -> None:
        name = self.selected()
        if name:
            self.wb.open_predict(name)

    def action_delete(self) -> None:
        name = self.selected()
        if name:
            self.wb.confirm_then(f"Delete API [b]{escape(name)}[/b] and all its replicas?",
                                 lambda: self.wb.delete_api(name))
