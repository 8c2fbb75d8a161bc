"""Table rows made from a FleetState, built in the poll worker so the UI thread only compares them.

Building the cells of a 512-GPU fleet takes ~20 ms of Python; in the worker that costs the
keyboard nothing. The UI thread then filters the rows (`/`) and hands them to a LiveTable, which
updates only the cells that changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from rich.console import RenderableType
from rich.text import Text
from workbench.tui import fmt
from workbench.tui.state import FleetState
from workbench.tui.table import Row, column_widths
from workbench.tui.widgets import bar, spark

from workbench.wire.agent import GpuInfo
from workbench.wire.control import ApiDetail, ApiSummary, CostReport, HostBody

HOST_COLUMNS = ("HOST", "ADDRESS", "STATE", "AGENT", "RUNTIMES", "CPU · MEM", "REPLICAS", "$/H", "SPEND 7D",
                "IDLE FOR")
GPU_COLUMNS = ("HOST", "GPU", "NAME", "UTIL", "MEMORY", "TEMP", "POWER", "RECENT UTIL", "USED BY")
API_COLUMNS = ("NAME", "STATUS", "READY", "REQ/S", "TREND", "P50", "P99", "2XX", "4XX", "5XX", "UPDATED",
               "SPEND 7D")
IDLE_STYLE = "bold yellow"  # a host that sits idle (and may cost money)
STATUS_STYLE = {"live": "green", "error": "bold red", "updating": "yellow", "starting": "yellow",
                "pending": "yellow", "scaled-to-zero": "dim", "splitter": "cyan"}


@dataclass(frozen=True)
class TableView:
    """A table's rows and the widest cell of each of its columns."""

    rows: tuple[Row, ...] = ()
    widths: tuple[int, ...] = ()

    @classmethod
    def of(cls, rows: Sequence[Row], columns: int) -> TableView:
        return cls(tuple(rows), tuple(column_widths(rows, columns)))


@dataclass(frozen=True)
class ScreenTables:
    """Every row the fleet and APIs screens show, for one FleetState."""

    hosts: TableView = TableView()
    gpus: TableView = TableView()  # a GPU row's words are its host's: filtering hosts filters GPUs
    gpu_note: str = ""
    apis: TableView = TableView()
    per_hour: str = ""  # the fleet's $/h, for the header


def matching(rows: Sequence[Row], text: str) -> Sequence[Row]:
    """The rows whose words contain `text`; the same sequence object when there is no filter
    (so that a LiveTable sees it already shows them)."""
    return [row for row in rows if text in row.words] if text else rows


def words(*cells: object) -> str:
    return " ".join(str(cell) for cell in cells).lower()


# -- hosts and GPUs -------------------------------------------------------------------------------
def host_state(host: HostBody) -> Text:
    if host.state == "ready":
        return Text("ready", style="green")
    if host.state == "connecting":
        return Text("connecting", style="yellow")
    return Text(f"unreachable {fmt.age(host.last_seen)} ago", style="bold red")


def greyed(cells: list[RenderableType]) -> tuple[RenderableType, ...]:
    """Cells of something that does not answer: dim, values from the last time it did."""
    return tuple(c if isinstance(c, Text) else Text(str(c), style="dim") for c in cells)


def host_spend(host: HostBody, cost: CostReport | None) -> dict[str, Decimal] | None:
    found = next((h for h in cost.hosts if h.name == host.name), None) if cost else None
    return {found.currency: found.spend} if found is not None and found.spend is not None else None


def api_spend(api: ApiSummary, cost: CostReport | None) -> dict[str, Decimal] | None:
    found = next((a for a in cost.apis if a.name == api.name), None) if cost else None
    return found.spend if found is not None else None


def idle_cell(host: HostBody) -> RenderableType:
    """How long an idle host has been idle, in the warning colour; "-" for a host in use."""
    if not host.idle or host.quiet_since is None:
        return "-"
    return Text(fmt.age(host.quiet_since), style=IDLE_STYLE)


def host_cells(host: HostBody, cost: CostReport | None = None) -> tuple[RenderableType, ...]:
    info = host.info
    cells: list[RenderableType] = [
        Text(host.name, style=IDLE_STYLE) if host.idle else host.name, fmt.url(host.address),
        host_state(host),
        host.agent_version or (info.agent_version if info else None) or fmt.NA,
        ", ".join(info.runtimes) if info and info.runtimes else fmt.NA,
        fmt.cpu_mem(info.cpu_count, info.mem_available_bytes, info.mem_total_bytes) if info else fmt.NA,
        str(host.replicas),
        fmt.price(host.price, host.currency), fmt.spend(host_spend(host, cost)), idle_cell(host),
    ]
    return tuple(cells) if host.state == "ready" else greyed(cells)


def gpu_users(gpu: GpuInfo) -> str:
    users = sorted({p.api for p in gpu.processes if p.api})
    users += [fmt.short_id(r) for r in gpu.allocated_to if not users]
    return ", ".join(users) or "-"


def gpu_cells(host: HostBody, gpu: GpuInfo, history: Sequence[float | None]) -> tuple[RenderableType, ...]:
    reachable = host.state == "ready" and gpu.error is None
    util = gpu.utilization_gpu if reachable else None
    used = gpu.memory_used_bytes if reachable else None
    mem_label = (f"{fmt.gib(used)}/{fmt.gib(gpu.memory_total_bytes)}G" if used is not None else None)
    cells: list[RenderableType] = [
        host.name, str(gpu.index), (gpu.name or fmt.NA)[:22],
        bar(util, 100.0, 8, fmt.percent(util).rjust(4) if util is not None else None),
        bar(used, gpu.memory_total_bytes, 8, mem_label),
        fmt.temp(gpu.temperature_c if reachable else None),
        fmt.watts(gpu.power_draw_w if reachable else None, gpu.power_limit_w if reachable else None),
        spark(history, 16, 100.0),
        gpu_users(gpu) if reachable else (gpu.error or fmt.NA),
    ]
    return tuple(cells) if reachable else greyed(cells)


def fleet_per_hour(hosts: Sequence[HostBody]) -> str:
    """The fleet's price per hour now ("fleet $4.80/h"), for the header; "" when no host has one."""
    per_hour: dict[str, Decimal] = {}
    for host in hosts:
        if host.price is not None:
            per_hour[host.currency] = per_hour.get(host.currency, Decimal(0)) + host.price
    shown = ", ".join(fmt.price(value, currency) for currency, value in sorted(per_hour.items()))
    return f"fleet {shown}" if shown else ""


def fleet_rows(state: FleetState) -> tuple[tuple[Row, ...], tuple[Row, ...], str]:
    hosts: list[Row] = []
    gpus: list[Row] = []
    notes: list[str] = []
    for host in state.hosts:
        found = words(host.name, host.address, host.state, "idle" if host.idle else "")
        hosts.append(Row(host.name, host_cells(host, state.cost), found))
        for gpu in state.gpus_of(host):
            gpus.append(Row(f"{host.name}/{gpu.index}",
                            gpu_cells(host, gpu, state.gpu_util.get((host.name, gpu.index), ())), found))
        if host.info and not host.info.gpus and host.state == "ready":
            notes.append(f"{host.name}: {host.info.gpu_note or 'no GPUs'}")
        elif host.name in state.gpu_errors and host.state == "ready":
            notes.append(state.gpu_errors[host.name])
    return tuple(hosts), tuple(gpus), fmt.mask(" · ".join(notes))


# -- APIs -----------------------------------------------------------------------------------------
def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def api_cells(api: ApiSummary, rps: Sequence[float], cost: CostReport | None = None
              ) -> tuple[RenderableType, ...]:
    counts, traffic = api.replicas, api.traffic
    ready = Text(f"{counts.ready}/{counts.requested}",
                 style="red" if counts.failed else "green" if counts.ready == counts.requested else "yellow")
    return (api.name, status_text(api.status), ready, fmt.rate(traffic.requests_per_second),
            spark(rps, 12), fmt.ms(traffic.p50_ms), fmt.ms(traffic.p99_ms),
            str(traffic.status_2xx), str(traffic.status_4xx),
            Text(str(traffic.status_5xx), style="red" if traffic.status_5xx else ""),
            fmt.age(api.updated_at), fmt.spend(api_spend(api, cost)))


def api_rows(state: FleetState) -> tuple[Row, ...]:
    return tuple(Row(api.name, api_cells(api, state.rps.get(api.name, ()), state.cost),
                     words(api.name, api.status)) for api in state.apis)


def build_views(state: FleetState) -> ScreenTables:
    hosts, gpus, note = fleet_rows(state)
    return ScreenTables(hosts=TableView.of(hosts, len(HOST_COLUMNS)),
                        gpus=TableView.of(gpus, len(GPU_COLUMNS)), gpu_note=note,
                        apis=TableView.of(api_rows(state), len(API_COLUMNS)),
                        per_hour=fleet_per_hour(state.hosts))


def scraped_line(detail: ApiDetail) -> str | None:
    """The gauge the API scales on (autoscaling.metric), per replica as last scraped."""
    if not detail.metric:
        return None
    values = []
    for r in detail.replica_list:
        value = "?" if r.metric is None else f"{r.metric:g}"
        values.append(f"{r.id} {value}")
    return f"{detail.metric}: " + (", ".join(values) if values else "no replica")
