"""How the CLI shows things: tables, messages, and errors with their fix."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from workbench.wire.agent import GpuInfo, GpuReport
from workbench.wire.control import ApiDetail, ApiSummary, EventBody, HostBody, ReplicaBody, TrafficBody

#: Data goes to stdout; progress and messages go to stderr so `--json | jq` works.
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

_STYLE = {"live": "green", "ready": "green", "error": "red", "failed": "red", "unreachable": "red",
          "splitter": "cyan", "scaled_to_zero": "dim", "stopped": "dim"}


def say(message: str) -> None:
    err.print(f"[dim]•[/dim] {message}", markup=True, highlight=False)


def fail(message: str, detail: list[str] | None = None) -> None:
    err.print(f"[bold red]error:[/bold red] {message}", markup=True, highlight=False, soft_wrap=True)
    if detail:
        err.print("\n".join(f"  │ {line}" for line in detail), markup=False, highlight=False)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def age(since: float | None) -> str:
    if since is None:
        return "-"
    seconds = max(int(time.time() - since), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _styled(value: str) -> str:
    style = _STYLE.get(value, "yellow")
    return f"[{style}]{value}[/{style}]"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}ms"


def apis_table(apis: list[ApiSummary]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("NAME", "STATUS", "UP-TO-DATE", "READY", "REQUESTED", "FAILED", "LAST UPDATE",
                   "REQ/S", "P50", "P99", "2XX", "4XX", "5XX"):
        table.add_column(column, no_wrap=True)
    for api in apis:
        counts, traffic = api.replicas, api.traffic
        table.add_row(api.name, _styled(api.status), str(counts.up_to_date), str(counts.ready),
                      str(counts.requested), str(counts.failed), age(api.updated_at),
                      f"{traffic.requests_per_second:.1f}", _ms(traffic.p50_ms), _ms(traffic.p99_ms),
                      str(traffic.status_2xx), str(traffic.status_4xx), str(traffic.status_5xx))
    return table


def api_detail(api: ApiDetail) -> Group:
    head = (f"[bold]{api.name}[/bold]  {_styled(api.status)}  endpoint {api.endpoint}  "
            f"{api.replicas.ready}/{api.replicas.requested} ready")
    if api.runtime:
        head += f"  runtime={api.runtime}"
    if api.autoscaling:
        head += "  autoscaling " + " ".join(f"{k}={v}" for k, v in api.autoscaling.items())
    parts: list[Any] = [head]
    if api.message:
        parts.append(f"[yellow]{api.message}[/yellow]")
    if api.split:
        parts += ["", split_table(api.split)]
    if api.replica_list:
        table = Table(box=None, header_style="bold", pad_edge=False)
        with_gpus = any(r.gpu_ids for r in api.replica_list)
        columns = ["REPLICA", "HOST", "STATE", "IN-FLIGHT", "RESTARTS", "UP-TO-DATE", "AGE"]
        metric = [api.metric.upper()] if api.metric else []  # the scraped gauge it scales on
        for column in [*columns, *(["GPUS"] if with_gpus else []), *metric, "MESSAGE"]:
            table.add_column(column, no_wrap=column != "MESSAGE")
        for replica in api.replica_list:
            state = replica.state.value + (" (ejected)" if replica.ejected else "")
            row = [replica.id, replica.host, _styled(replica.state.value).replace(
                replica.state.value, state), str(replica.in_flight), str(replica.restarts),
                "yes" if replica.up_to_date else "no", age(replica.created_at)]
            if with_gpus:
                row.append(replica_gpus(replica))
            if metric:
                row.append(scraped_value(replica))
            table.add_row(*row, replica.message or replica.metric_problem or "")
        parts += ["", table]
    if api.events:
        parts += ["", "[bold]recent events[/bold]", events_table(api.events[-15:])]
    return Group(*parts)


def scraped_value(replica: ReplicaBody) -> str:
    """The replica's scraped gauge: its value, or "?" when the last scrape could not read it."""
    if replica.metric is None:
        return "?" if replica.metric_problem else "-"
    return _fmt_number(replica.metric)


def _fmt_number(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:.2f}"


def split_table(split: list[dict[str, Any]]) -> Table:
    """A splitter's targets, the shadow among them, each with its traffic (to compare them)."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("ROUTES TO", "WEIGHT", "REQ/S", "P50", "P99", "2XX", "4XX", "5XX"):
        table.add_column(column, no_wrap=True)
    for target in split:
        traffic = TrafficBody.model_validate(target.get("traffic") or {})
        weight = "shadow" if target.get("shadow") else f"{target.get('weight', 0):g}%"
        table.add_row(Text(str(target.get("name"))), weight, f"{traffic.requests_per_second:.1f}",
                      _ms(traffic.p50_ms), _ms(traffic.p99_ms), str(traffic.status_2xx),
                      str(traffic.status_4xx), str(traffic.status_5xx))
    return table


def events_table(events: list[EventBody]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False, show_header=False)
    table.add_column("AGE", no_wrap=True)
    table.add_column("KIND", no_wrap=True)
    table.add_column("MESSAGE")
    for event in events:
        table.add_row(age(event.at), event.kind, event.message)
    return table


def hosts_table(hosts: list[HostBody]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("HOST", "ADDRESS", "STATE", "LAST SEEN", "REPLICAS", "CPUS", "MEMORY FREE", "RUNTIMES"):
        table.add_column(column, no_wrap=True)
    for host in hosts:
        info = host.info
        table.add_row(host.name, host.address, _styled(host.state), age(host.last_seen),
                      str(host.replicas), str(info.cpu_count) if info else "N/A",
                      f"{info.mem_available_bytes / 2**30:.1f} GiB" if info else "N/A",
                      ", ".join(info.runtimes) if info else "N/A")
    return table


def replica_gpus(replica: ReplicaBody) -> str:
    """"0,2", or "1 (0.5 shared)" for a fractional replica, or "-" without GPUs."""
    if not replica.gpu_ids:
        return "-"
    text = ",".join(replica.gpu_ids)
    return text + (f" ({replica.gpu_share:g} shared)" if replica.gpu_share is not None else "")


def _na(value: float | None, fmt: str = "{:.0f}", unit: str = "") -> str:
    return "N/A" if value is None else fmt.format(value) + unit


def bar(percent: float | None, width: int = 10) -> str:
    """A utilization bar like `███▌······ 35%`; N/A when unknown."""
    if percent is None:
        return "N/A"
    filled = max(0.0, min(100.0, percent)) / 100 * width
    full = int(filled)
    half = "▌" if filled - full >= 0.5 and full < width else ""
    return "█" * full + half + "·" * (width - full - len(half)) + f" {percent:3.0f}%"


def _memory(gpu: GpuInfo) -> str:
    used, total = gpu.memory_used_bytes, gpu.memory_total_bytes
    if used is None and total is None:
        return "N/A"
    used_gib = _na(None if used is None else used / 2**30, "{:.1f}")
    total_gib = _na(None if total is None else total / 2**30, "{:.0f}")
    return f"{used_gib}/{total_gib} GiB"


def gpu_users(gpu: GpuInfo) -> str:
    """The replicas on a GPU: each process mapped to one (api/replica), strangers by PID, and
    replicas the GPU is allocated to that have no process on it yet."""
    users: list[str] = []
    seen: set[str] = set()
    for p in gpu.processes:
        if p.replica_id:
            seen.add(p.replica_id)
            who = f"{p.api}/{p.replica_id}" if p.api else p.replica_id
            users.append(f"{who} (pid {p.pid})")
        else:
            users.append(f"pid {p.pid} (not ours)")
    users += [f"{r} (allocated)" for r in gpu.allocated_to if r not in seen]
    if gpu.allocated_share and gpu.allocated_share < 1 and gpu.allocated_to:
        users.append(f"{gpu.allocated_share:g} of the GPU allocated")
    return ", ".join(users) or "-"


def gpus_view(host: str, report: GpuReport) -> Group:
    """`workbench host show NAME`'s GPU section: a SIMULATED banner when it is the fixture."""
    parts: list[Any] = []
    if report.source == "fixture":
        parts.append("[bold black on yellow] SIMULATED GPUs [/bold black on yellow] "
                     "[yellow]these values come from WORKBENCH_FAKE_GPUS (test and demo only), "
                     "not from a GPU[/yellow]")
    versions = (f"driver {report.driver_version or 'N/A'}  NVML {report.nvml_version or 'N/A'}  "
                f"CUDA {report.cuda_driver_version or 'N/A'}")
    parts.append(f"[bold]GPUs on {host}[/bold] ({report.source})  {versions}")
    if report.note:
        parts.append(f"note: {report.note}")
    if not report.gpus:
        parts.append("no GPUs reported")
        return Group(*parts)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("GPU", "NAME", "UTIL", "MEMORY", "TEMP", "POWER"):
        table.add_column(column, no_wrap=True, max_width=22 if column == "NAME" else None,
                         overflow="ellipsis")
    table.add_column("REPLICAS", overflow="fold")
    for g in report.gpus:
        if g.error:
            table.add_row(str(g.index), g.name or "N/A", "N/A", "N/A", "N/A", "N/A", f"[red]{g.error}[/red]")
            continue
        power = _na(g.power_draw_w, "{:.0f}", "W")
        if g.power_limit_w is not None:
            power += f"/{g.power_limit_w:.0f}W"
        table.add_row(str(g.index), g.name or "N/A", bar(g.utilization_gpu), _memory(g),
                      _na(g.temperature_c, "{:.0f}", "°C"), power, gpu_users(g))
    parts.append(table)
    return Group(*parts)
