"""`workbench cost`: what each host and each API cost over a window, and the fleet's total."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

import typer
from rich.console import Group, RenderableType
from rich.table import Table

from workbench.cli import render
from workbench.cli.connect import call, controller
from workbench.cli.hosts import parsed
from workbench.cli.options import JsonOption
from workbench.wire.control import CostReport, HostCostBody
from workbench.wire.units import format_duration, money, parse_duration


def _amounts(amounts: dict[str, Decimal], places: int = 2) -> str:
    return ", ".join(money(value, currency, places) for currency, value in amounts.items()) or "-"


def _hours(value: float) -> str:
    return f"{value:.1f}h" if value >= 0.05 or value == 0 else f"{value * 60:.0f}m"


def _gpu_hours(host: HostCostBody) -> str:
    if not host.gpus:
        return "-"
    return (f"{_hours(host.gpu_busy_hours)} busy / {_hours(host.gpu_idle_hours)} idle"
            + (f" ({_hours(host.gpu_unallocated_hours)} unallocated)" if host.gpu_unallocated_hours else ""))


def cost_view(report: CostReport, window: str) -> Group:
    hosts = Table(box=None, header_style="bold", pad_edge=False, title_justify="left",
                  title=f"[bold]hosts[/bold] (last {window})")
    for column in ("HOST", "PRICE", "IN FLEET", "SPEND", "UNALLOCATED", "GPUS", "GPU HOURS", "STATE"):
        hosts.add_column(column, no_wrap=True)
    for host in report.hosts:
        price = "-" if host.price is None else f"{money(host.price, host.currency)}/h"
        spend = money(host.spend, host.currency) if host.spend is not None else "[dim]not priced[/dim]"
        state = "[yellow]idle[/yellow]" if host.idle else "" if host.in_fleet else "[dim]left the fleet[/dim]"
        unallocated = "-" if host.unallocated_spend is None else money(host.unallocated_spend, host.currency)
        hosts.add_row(host.name, price, _hours(host.hours), spend, unallocated,
                      str(host.gpus) if host.gpus else "-", _gpu_hours(host), state)
    apis = Table(box=None, header_style="bold", pad_edge=False, title_justify="left",
                 title="[bold]APIs[/bold]")
    for column in ("API", "SPEND", "REQUESTS", "PER 1K REQUESTS", "REPLICA HOURS", "BY HOST"):
        apis.add_column(column, no_wrap=column != "BY HOST")
    for api in report.apis:
        by_host = ", ".join(f"{h.host} {_hours(h.replica_hours)}"
                            + (f" {money(h.spend, h.currency)}" if h.spend is not None else "")
                            for h in api.hosts)
        apis.add_row(api.name, _amounts(api.spend), str(api.requests), _amounts(api.per_1000_requests, 4),
                     _hours(api.replica_hours), by_host)
    parts: list[RenderableType] = [hosts, ""]
    if report.apis:
        parts += [apis, ""]
    parts.append(f"[bold]fleet total[/bold] {_amounts(report.total)}"
                 + (f" ({_amounts(report.unallocated)} unallocated)" if report.unallocated else "")
                 + (f" · now {_amounts(report.per_hour)}/h" if report.per_hour else ""))
    if report.unpriced:
        names = ", ".join(report.unpriced)
        parts.append(f"[dim]not in the total: {names} (no price; set one with "
                     f"`workbench host set {report.unpriced[0]} --price 2.40`)[/dim]")
    return Group(*parts)


def cost(
    since: Annotated[str, typer.Option("--since", help="the window: 7d (default), 24h, 30m, 2w")] = "7d",
    as_json: JsonOption = False,
) -> None:
    """What the fleet cost: per host (price, time in the fleet, spend, GPU hours busy vs idle), per
    API (its share of each host by what its replicas reserve x time, per 1,000 requests), in total."""
    render.json_errors(as_json)
    seconds = parsed(parse_duration, since, "--since")
    report = call(controller(start=False).cost, since)
    if as_json:
        render.print_json(report.model_dump(mode="json"))
        return
    render.out.print(cost_view(report, format_duration(seconds)))
