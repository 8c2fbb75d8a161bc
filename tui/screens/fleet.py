"""The fleet: one row per host, one row per GPU (bars, temperature, power, sparkline, users)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Static
from workbench.tui import fmt
from workbench.tui.screens.base import DataScreen
from workbench.tui.state import FleetState
from workbench.tui.widgets import bar, fill_table, selected_key, spark

from workbench.controller.schemas import HostBody
from workbench.models import GpuInfo

HOST_COLUMNS = ("HOST", "ADDRESS", "STATE", "AGENT", "RUNTIMES", "CPU · MEM", "REPL")
GPU_COLUMNS = ("HOST", "GPU", "NAME", "UTIL", "MEMORY", "TEMP", "POWER", "RECENT UTIL", "USED BY")


def host_state(host: HostBody) -> Text:
    if host.state == "ready":
        return Text("ready", style="green")
    if host.state == "connecting":
        return Text("connecting", style="yellow")
    return Text(f"unreachable {fmt.age(host.last_seen)} ago", style="bold red")


def host_cells(host: HostBody) -> list[Any]:
    info = host.info
    cells: list[Any] = [
        host.name, fmt.url(host.address), host_state(host),
        host.agent_version or (info.agent_version if info else None) or fmt.NA,
        ", ".join(info.runtimes) if info and info.runtimes else fmt.NA,
        fmt.cpu_mem(info.cpu_count, info.mem_available_bytes, info.mem_total_bytes) if info else fmt.NA,
        str(host.replicas),
    ]
    if host.state != "ready":  # greyed, values are from the last time it answered
        cells = [c if isinstance(c, Text) else Text(str(c), style="dim") for c in cells]
    return cells


def gpu_users(gpu: GpuInfo) -> str:
    users = sorted({p.api for p in gpu.processes if p.api})
    users += [fmt.short_id(r) for r in gpu.allocated_to if not users]
    return ", ".join(users) or "-"


def gpu_cells(host: HostBody, gpu: GpuInfo, history: Any) -> list[Any]:
    reachable = host.state == "ready" and gpu.error is None
    util = gpu.utilization_gpu if reachable else None
    used = gpu.memory_used_bytes if reachable else None
    mem_label = (f"{fmt.gib(used)}/{fmt.gib(gpu.memory_total_bytes)}G" if used is not None else None)
    cells: list[Any] = [
        host.name, str(gpu.index), (gpu.name or fmt.NA)[:22],
        bar(util, 100.0, 8, fmt.percent(util) if util is not None else None),
        bar(used, gpu.memory_total_bytes, 8, mem_label),
        fmt.temp(gpu.temperature_c if reachable else None),
        fmt.watts(gpu.power_draw_w if reachable else None, gpu.power_limit_w if reachable else None),
        spark(list(history or []), 16, 100.0),
        gpu_users(gpu) if reachable else (gpu.error or fmt.NA),
    ]
    if not reachable:
        cells = [c if isinstance(c, Text) else Text(str(c), style="dim") for c in cells]
    return cells


class FleetScreen(DataScreen):
    """Hosts and their GPUs."""

    BINDINGS = [
        Binding("a", "add_host", "Add host"),
        Binding("u", "upgrade", "Upgrade agent"),
        Binding("d", "remove", "Remove host"),
        Binding("enter", "select", "Details", show=False),
    ]

    def compose_body(self) -> ComposeResult:
        with Vertical(id="body"):
            yield Static("[b]Hosts[/b]", classes="section")
            hosts: DataTable[Any] = DataTable(id="hosts", cursor_type="row", zebra_stripes=True)
            hosts.add_columns(*HOST_COLUMNS)
            yield hosts
            yield Static("[b]GPUs[/b]", classes="section")
            gpus: DataTable[Any] = DataTable(id="gpus", cursor_type="row")
            gpus.add_columns(*GPU_COLUMNS)
            yield gpus
            yield Static("", id="gpu-note", classes="note")

    def focus_main(self) -> None:
        self.query_one("#hosts", DataTable).focus()

    def show(self, state: FleetState) -> None:
        hosts = [h for h in state.hosts if self.matches(h.name, h.address, h.state)]
        fill_table(self.query_one("#hosts", DataTable), [(h.name, host_cells(h)) for h in hosts])
        rows = []
        notes = []
        for host in hosts:
            for gpu in state.gpus_of(host):
                rows.append((f"{host.name}/{gpu.index}",
                             gpu_cells(host, gpu, state.gpu_util.get((host.name, gpu.index)))))
            if host.info and not host.info.gpus and host.state == "ready":
                notes.append(f"{host.name}: {host.info.gpu_note or 'no GPUs'}")
        fill_table(self.query_one("#gpus", DataTable), rows)
        self.query_one("#gpu-note", Static).update(fmt.mask(" · ".join(notes)))

    def selected_host(self) -> str | None:
        key = selected_key(self.query_one("#hosts", DataTable))
        if key is None:
            self.notify("no host selected", severity="warning")
        return key

    def action_select(self) -> None:
        name = self.selected_host()
        for host in self.wb.state.hosts:
            if host.name == name:
                text = host.message or f"{host.name}: {host.state}, {host.replicas} replica(s)"
                self.notify(fmt.mask(text), title=host.name)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "hosts":
            self.action_select()

    def action_add_host(self) -> None:
        self.wb.open_add_host()

    def action_upgrade(self) -> None:
        name = self.selected_host()
        if name:
            self.wb.confirm_then(f"Upgrade the agent on host [b]{name}[/b]?",
                                 lambda: self.wb.upgrade_host(name))

    def action_remove(self) -> None:
        name = self.selected_host()
        if name:
            self.wb.confirm_then(f"Remove host [b]{name}[/b]? Its replicas move elsewhere and "
                                 "the agent is uninstalled.", lambda: self.wb.remove_host(name))
