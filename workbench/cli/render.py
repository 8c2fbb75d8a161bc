"""How the CLI shows things: tables, messages, and errors with their fix."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from rich.console import Console, Group
from rich.table import Table

from workbench.controller.schemas import ApiDetail, ApiSummary, EventBody, HostBody

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
    if api.split:
        parts.append("routes to: " + ", ".join(
            f"{t.get('name')} {t.get('weight')}%" + (" (shadow)" if t.get("shadow") else "")
            for t in api.split))
    if api.replica_list:
        table = Table(box=None, header_style="bold", pad_edge=False)
        for column in ("REPLICA", "HOST", "STATE", "IN-FLIGHT", "RESTARTS", "UP-TO-DATE", "AGE", "MESSAGE"):
            table.add_column(column, no_wrap=column != "MESSAGE")
        for replica in api.replica_list:
            state = replica.state.value + (" (ejected)" if replica.ejected else "")
            table.add_row(replica.id, replica.host, _styled(replica.state.value).replace(
                replica.state.value, state), str(replica.in_flight), str(replica.restarts),
                "yes" if replica.up_to_date else "no", age(replica.created_at), replica.message or "")
        parts += ["", table]
    if api.events:
        parts += ["", "[bold]recent events[/bold]", events_table(api.events[-15:])]
    return Group(*parts)


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
