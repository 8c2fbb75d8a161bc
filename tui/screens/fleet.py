"""The fleet: one row per host, one row per GPU (bars, temperature, power, sparkline, users)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.markup import escape
from textual.widgets import Static
from workbench.tui import fmt
from workbench.tui.screens.base import DataScreen
from workbench.tui.state import FleetState
from workbench.tui.table import LiveTable
from workbench.tui.views import GPU_COLUMNS, HOST_COLUMNS, matching


class FleetScreen(DataScreen):
    """Hosts and their GPUs."""

    HELP_NAME = "hosts"

    BINDINGS = [
        Binding("a", "add_host", "Add host"),
        Binding("u", "upgrade", "Upgrade agent"),
        Binding("d", "remove", "Remove host"),
        Binding("enter", "select", "Details", show=False),
    ]

    def compose_body(self) -> ComposeResult:
        with Vertical(id="body"):
            yield Static("[b]Hosts[/b]", classes="section")
            hosts = LiveTable(id="hosts", cursor_type="row", zebra_stripes=True)
            hosts.set_columns(*HOST_COLUMNS)
            yield hosts
            yield Static("[b]GPUs[/b]", classes="section")
            gpus = LiveTable(id="gpus", cursor_type="row")
            gpus.set_columns(*GPU_COLUMNS)
            yield gpus
            yield Static("", id="gpu-note", classes="note")

    def focus_main(self) -> None:
        self.query_one("#hosts", LiveTable).focus()

    def show(self, state: FleetState) -> None:
        rows = self.wb.views
        self.query_one("#hosts", LiveTable).show_rows(matching(rows.hosts.rows, self.filter_text),
                                                      rows.hosts.widths)
        self.query_one("#gpus", LiveTable).show_rows(matching(rows.gpus.rows, self.filter_text),
                                                     rows.gpus.widths)
        self.query_one("#gpu-note", Static).update(Text(rows.gpu_note))

    def selected_host(self) -> str | None:
        key = self.query_one("#hosts", LiveTable).selected_key
        if key is None:
            self.notify("no host selected", severity="warning")
        return key

    def action_select(self) -> None:
        name = self.selected_host()
        for host in self.wb.state.hosts:
            if host.name == name:
                text = host.message or f"{host.name}: {host.state}, {host.replicas} replica(s)"
                self.notify(fmt.mask(text), title=host.name, markup=False)

    def on_live_table_row_selected(self, event: LiveTable.RowSelected) -> None:
        if event.table.id == "hosts":
            self.action_select()

    def action_add_host(self) -> None:
        self.wb.open_add_host()

    def action_upgrade(self) -> None:
        name = self.selected_host()
        if name:
            self.wb.confirm_then(f"Upgrade the agent on host [b]{escape(name)}[/b]?",
                                 lambda: self.wb.upgrade_host(name))

    def action_remove(self) -> None:
        name = self.selected_host()
        if name:
            self.wb.confirm_then(f"Remove host [b]{escape(name)}[/b]? Its replicas move elsewhere and "
                                 "the agent is uninstalled.", lambda: self.wb.remove_host(name))
