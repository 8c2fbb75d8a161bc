"""The APIs: one row per API like `workbench get`, with a requests/s sparkline."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable
from workbench.tui import fmt
from workbench.tui.screens.base import DataScreen
from workbench.tui.state import FleetState
from workbench.tui.widgets import fill_table, selected_key, spark

from workbench.controller.schemas import ApiSummary

COLUMNS = ("NAME", "STATUS", "READY", "REQ/S", "TREND", "P50", "P99", "2XX", "4XX", "5XX", "UPDATED")
STATUS_STYLE = {"live": "green", "error": "bold red", "updating": "yellow", "starting": "yellow",
                "pending": "yellow", "scaled_to_zero": "dim", "splitter": "cyan"}


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def api_cells(api: ApiSummary, rps: Any) -> list[Any]:
    counts, traffic = api.replicas, api.traffic
    ready = Text(f"{counts.ready}/{counts.requested}",
                 style="red" if counts.failed else "green" if counts.ready == counts.requested else "yellow")
    return [api.name, status_text(api.status), ready, fmt.rate(traffic.requests_per_second),
            spark(list(rps or []), 12), fmt.ms(traffic.p50_ms), fmt.ms(traffic.p99_ms),
            str(traffic.status_2xx), str(traffic.status_4xx),
            Text(str(traffic.status_5xx), style="red" if traffic.status_5xx else ""),
            fmt.age(api.updated_at)]


class ApisScreen(DataScreen):
    """Every API; enter opens one."""

    BINDINGS = [
        Binding("enter", "open", "Open", show=False),
        Binding("l", "logs", "Logs"),
        Binding("n", "deploy", "Deploy"),
        Binding("s", "scale", "Scale"),
        Binding("p", "predict", "Predict"),
        Binding("d", "delete", "Delete"),
    ]

    def compose_body(self) -> ComposeResult:
        table: DataTable[Any] = DataTable(id="apis", cursor_type="row", zebra_stripes=True)
        table.add_columns(*COLUMNS)
        yield table

    def focus_main(self) -> None:
        self.query_one("#apis", DataTable).focus()

    def show(self, state: FleetState) -> None:
        rows = [(api.name, api_cells(api, state.rps.get(api.name))) for api in state.apis
                if self.matches(api.name, api.status)]
        fill_table(self.query_one("#apis", DataTable), rows)

    def selected(self) -> str | None:
        name = selected_key(self.query_one("#apis", DataTable))
        if name is None:
            self.notify("no API selected (deploy one with n)", severity="warning")
        return name

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
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
            self.wb.confirm_then(f"Delete API [b]{name}[/b] and all its replicas?",
                                 lambda: self.wb.delete_api(name))
