"""How the CLI shows things: tables, messages, and errors with their fix.

Two rules hold everywhere here:

- Text that comes from the user or from a box (names, messages, log lines, a GPU's name) is
  never read as Rich markup and never reaches the terminal with its control characters: it goes
  through :func:`plain` (a :class:`rich.text.Text`), so ``[bold]x`` prints as ``[bold]x`` and an
  escape sequence prints as ``\\x1b``.
- Data goes to stdout and is never cut: in a pipe a table is printed at its full width without
  wrapping (kubectl and docker do the same), in a terminal at the terminal's width, or wider when
  its names need it. Progress and messages go to stderr, so ``--json | jq`` and ``| awk`` work.
"""

from __future__ import annotations

import json
import re
import sys
import time
from typing import Any, Literal

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from workbench.wire.agent import GpuInfo, GpuReport
from workbench.wire.control import ApiDetail, ApiSummary, EventBody, HostBody, ReplicaBody, TrafficBody
from workbench.wire.units import format_duration, money

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

#: `-o` formats of the listing commands (`table` is the default one).
Layout = Literal["table", "wide", "name"]

_STYLE = {"live": "green", "ready": "green", "error": "red", "failed": "red", "unreachable": "red",
          "splitter": "cyan", "scaled-to-zero": "dim", "stopped": "dim"}
#: C0 and C1 control characters but tab and newline: shown escaped, never sent to the terminal
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
#: wider than any table, for measuring one at its natural width
_UNBOUNDED = 1_000_000


class _JsonErrors:
    """Whether the running command was asked for --json (its errors then go to stdout as JSON
    too), and whether it printed its JSON answer already (then an error adds none)."""

    wanted = False
    printed = False


def json_errors(wanted: bool) -> None:
    """Called by every --json command first: on failure it prints {"error": ...} on stdout."""
    _JsonErrors.wanted = wanted


def sanitize(text: str) -> str:
    """`text` without control characters (escape sequences, carriage returns, bells): each
    is shown as its escape, e.g. ``\\x1b``."""
    return _CONTROL.sub(lambda match: match.group().encode("unicode_escape").decode(), text)


def plain(value: object, style: str = "") -> Text:
    """User- or box-supplied text as Rich text: no markup, no control characters."""
    return Text(sanitize(str(value)), style=style)


def say(message: str | Text) -> None:
    """A progress line on stderr."""
    err.print(Text.assemble(("•", "dim"), " ", _text(message)), soft_wrap=True)


def info(message: str | Text) -> None:
    """A plain message on stderr (one line, never wrapped)."""
    err.print(_text(message), soft_wrap=True)


def ok(message: str | Text) -> None:
    """A success line on stdout: ``✓ message``."""
    out.print(Text.assemble(("✓", "green"), " ", _text(message)), soft_wrap=True)


def warn(message: str | Text) -> None:
    err.print(Text.assemble(("warning:", "yellow"), " ", _text(message)), soft_wrap=True)


def note(message: str | Text) -> None:
    """A remark about data just printed (on stderr, so scripts reading stdout never see it)."""
    err.print(_text(message), style="yellow", soft_wrap=True)


def fail(message: str, detail: list[str] | None = None, **extra: Any) -> None:
    """``error: message`` on stderr (one line, never wrapped), then the detail lines; under
    --json also ``{"error": message, "detail": [...], **extra}`` on stdout."""
    err.print(Text.assemble(("error:", "bold red"), " ", plain(message)), soft_wrap=True)
    if detail:
        err.print(Text("\n".join(f"  │ {sanitize(line)}" for line in detail)), soft_wrap=True)
    if _JsonErrors.wanted and not _JsonErrors.printed:
        body: dict[str, Any] = {"error": message}
        if detail:
            body["detail"] = detail
        print_json({**body, **extra})


def _text(message: str | Text) -> Text:
    return message if isinstance(message, Text) else plain(message)


def print_json(data: Any, *, compact: bool = False) -> None:
    text = json.dumps(data, default=str) if compact else json.dumps(data, indent=2, default=str)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
    _JsonErrors.printed = True


def show(renderable: RenderableType | str, console: Console = out) -> None:
    """Print data without cutting it: in a pipe at its natural width (no wrapping, no cutting);
    in a terminal at the terminal's width, or at the least width its unbreakable cells need."""
    if isinstance(renderable, str):
        renderable = plain(renderable)
    measured = console.measure(renderable, options=console.options.update_width(_UNBOUNDED))
    width = max(console.width, measured.minimum) if console.is_terminal else measured.maximum
    saved = console.width
    console.width = max(width, 1)
    try:
        with console.capture() as captured:
            console.print(renderable, crop=False)
    finally:
        console.width = saved
    lines = captured.get().splitlines()
    console.file.write("".join(line.rstrip() + "\n" for line in lines))
    console.file.flush()


def fits(renderable: RenderableType, console: Console = out) -> bool:
    """Whether `renderable` at its natural width fits the terminal (always, in a pipe)."""
    if not console.is_terminal:
        return True
    measured = console.measure(renderable, options=console.options.update_width(_UNBOUNDED))
    return measured.maximum <= console.width


def age(since: float | None) -> str:
    if since is None:
        return "-"
    seconds = max(int(time.time() - since), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _styled(value: str, shown: str | None = None) -> Text:
    return plain(shown if shown is not None else value, _STYLE.get(value, "yellow"))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}ms"


def _table(columns: list[str], rows: list[list[Any]], *, names: tuple[str, ...] = (),
           wrap: tuple[str, ...] = ()) -> Table:
    """A borderless table. `names` columns (NAME, HOST, …) get the width of their longest cell, so
    no layout ever cuts them; `wrap` columns (MESSAGE) may wrap; the others are never wrapped."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for index, column in enumerate(columns):
        widest = None
        if column in names:
            widest = max([len(column), *(len(str(row[index])) for row in rows)])
        table.add_column(column, no_wrap=column not in wrap, min_width=widest,
                         overflow="fold" if column in wrap else "ellipsis")
    for row in rows:
        table.add_row(*row)
    return table


# -- APIs ------------------------------------------------------------------------------------------
def ready_text(counts: Any) -> str:
    return f"{counts.ready}/{counts.requested}"


def apis_table(apis: list[ApiSummary], layout: Layout = "table") -> RenderableType:
    """`workbench get`: every column where they fit (and always in a pipe); at 80 columns one
    READY `ready/requested` for UP-TO-DATE, READY, REQUESTED and FAILED, and fewer traffic
    columns while the names need the room; `wide` adds the runtime, artifact and message."""
    if layout == "name":
        return Text("\n".join(sanitize(api.name) for api in apis))
    full = _apis_full(apis, wide=layout == "wide")
    if layout == "wide" or fits(full):
        return full
    return _apis_compact(apis)


def _traffic_cells(api: ApiSummary) -> list[Any]:
    traffic = api.traffic
    return [f"{traffic.requests_per_second:.1f}", _ms(traffic.p50_ms), _ms(traffic.p99_ms),
            str(traffic.status_2xx), str(traffic.status_4xx), str(traffic.status_5xx)]


def _apis_full(apis: list[ApiSummary], wide: bool) -> Table:
    columns = ["NAME", "STATUS", "UP-TO-DATE", "READY", "REQUESTED", "FAILED", "LAST UPDATE",
               "REQ/S", "P50", "P99", "2XX", "4XX", "5XX"]
    if wide:
        columns += ["RUNTIME", "ARTIFACT", "MESSAGE"]
    rows = []
    for api in apis:
        counts = api.replicas
        row = [plain(api.name), _styled(api.status), str(counts.up_to_date), str(counts.ready),
               str(counts.requested), str(counts.failed), age(api.updated_at), *_traffic_cells(api)]
        if wide:
            row += [api.runtime or "-", plain(api.artifact or "-"), plain(api.note or api.message or "")]
        rows.append(row)
    return _table(columns, rows, names=("NAME", "ARTIFACT"), wrap=("MESSAGE",))


#: what a narrow terminal's `get` leaves out first, to keep the names whole and the lines unwrapped
_DROPPABLE = ("4XX", "2XX", "UPDATED", "P50")


def _apis_compact(apis: list[ApiSummary]) -> Table:
    columns = ["NAME", "STATUS", "READY", "UPDATED", "REQ/S", "P50", "P99", "2XX", "4XX", "5XX"]
    cells = [dict(zip(columns, [plain(api.name), _styled(api.status), ready_text(api.replicas),
                                age(api.updated_at), *_traffic_cells(api)], strict=True)) for api in apis]
    dropped: list[str] = []
    while True:
        kept = [c for c in columns if c not in dropped]
        table = _table(kept, [[row[c] for c in kept] for row in cells], names=("NAME",))
        if fits(table) or len(dropped) == len(_DROPPABLE):
            return table
        dropped.append(_DROPPABLE[len(dropped)])


def api_notes(apis: list[ApiSummary]) -> list[Text]:
    """One line per API that is not as asked (replicas waiting for room), said under the table."""
    return [Text.assemble(plain(api.name, "bold"), f": {api.note}") for api in apis if api.note]


def api_detail(api: ApiDetail) -> Group:
    head = Text.assemble(plain(api.name, "bold"), "  ", _styled(api.status), "  endpoint ",
                         plain(api.endpoint), f"  {ready_text(api.replicas)} ready")
    if api.note:
        head.append(f" ({api.note})", style="yellow")
    if api.runtime:
        head.append(f"  runtime={api.runtime}")
    if api.autoscaling:
        head.append("  autoscaling " + " ".join(f"{k}={v}" for k, v in api.autoscaling.items()))
    parts: list[Any] = [head]
    if api.message:
        parts.append(plain(api.message, "yellow"))
    if api.split:
        parts += ["", split_table(api.split)]
    if api.replica_list:
        with_gpus = any(r.gpu_ids for r in api.replica_list)
        metric = [api.metric.upper()] if api.metric else []  # the scraped gauge it scales on
        columns = ["REPLICA", "HOST", "STATE", "IN-FLIGHT", "RESTARTS", "UP-TO-DATE", "AGE",
                   *(["GPUS"] if with_gpus else []), *metric, "MESSAGE"]
        rows = []
        for replica in api.replica_list:
            state = replica.state.value + (" (ejected)" if replica.ejected else "")
            row = [plain(replica.id), plain(replica.host), _styled(replica.state.value, state),
                   str(replica.in_flight), str(replica.restarts), "yes" if replica.up_to_date else "no",
                   age(replica.created_at)]
            if with_gpus:
                row.append(replica_gpus(replica))
            if metric:
                row.append(scraped_value(replica))
            rows.append([*row, plain(replica.message or replica.metric_problem or "")])
        parts += ["", _table(columns, rows, names=("REPLICA", "HOST"), wrap=("MESSAGE",))]
    if api.events:
        parts += ["", Text("recent events", style="bold"), events_table(api.events[-15:], with_api=False)]
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
    rows = []
    for target in split:
        traffic = TrafficBody.model_validate(target.get("traffic") or {})
        weight = "shadow" if target.get("shadow") else f"{target.get('weight', 0):g}%"
        rows.append([plain(target.get("name")), weight, f"{traffic.requests_per_second:.1f}",
                     _ms(traffic.p50_ms), _ms(traffic.p99_ms), str(traffic.status_2xx),
                     str(traffic.status_4xx), str(traffic.status_5xx)])
    return _table(["ROUTES TO", "WEIGHT", "REQ/S", "P50", "P99", "2XX", "4XX", "5XX"], rows,
                  names=("ROUTES TO",))


# -- events ----------------------------------------------------------------------------------------
def events_table(events: list[EventBody], *, with_api: bool = True) -> Table:
    columns = ["AGE", *(["API"] if with_api else []), "KIND", "MESSAGE"]
    rows = [[age(e.at), *([plain(e.api or "-")] if with_api else []), plain(e.kind), _event_text(e)]
            for e in events]
    return _table(columns, rows, names=("API",), wrap=("MESSAGE",))


def _event_text(event: EventBody) -> Text:
    """An event's message, and the output it carries (a replica that failed to start)."""
    text = plain(event.message)
    tail = event.data.get("log_tail")
    if isinstance(tail, list) and tail:
        text.append(": its output:" if event.kind == "rollout" else "; output:")
        for line in tail[-EVENT_TAIL_LINES:]:
            text.append("\n│ " + sanitize(str(line)), style="dim")
    return text


#: lines of a failed replica's output shown under its event
EVENT_TAIL_LINES = 50


# -- hosts -----------------------------------------------------------------------------------------
def hosts_table(hosts: list[HostBody], layout: Layout = "table") -> RenderableType:
    if layout == "name":
        return Text("\n".join(sanitize(host.name) for host in hosts))
    columns = ["HOST", "ADDRESS", "STATE", "LAST SEEN", "REPLICAS", "CPUS", "MEMORY FREE", "RUNTIMES",
               "PRICE", "IDLE"]
    wide = layout == "wide"
    if wide:
        columns += ["KIND", "AGENT", "GPUS", "MESSAGE"]
    rows = []
    for host in hosts:
        info = host.info
        row = [plain(host.name), plain(host.address), _styled(host.state), age(host.last_seen),
               str(host.replicas), str(info.cpu_count) if info else "N/A",
               f"{info.mem_available_bytes / 2**30:.1f} GiB" if info else "N/A",
               plain(", ".join(info.runtimes)) if info else "N/A", price(host), idle_cell(host)]
        if wide:
            row += [host.kind, plain(host.agent_version or "N/A"),
                    str(len(info.gpus)) if info else "N/A", plain(host.message or "")]
        rows.append(row)
    return _table(columns, rows, names=("HOST", "ADDRESS"), wrap=("MESSAGE",))


def price(host: HostBody) -> str:
    """"$2.40/h", or "-" for a host without a price."""
    return "-" if host.price is None else f"{money(host.price, host.currency)}/h"


def idle_cell(host: HostBody) -> Text:
    """"idle 45m" (in yellow) for a host flagged idle, else "-"."""
    if not host.idle or host.quiet_since is None:
        return Text("-")
    return Text(f"idle {age(host.quiet_since)}", style="yellow")


def idle_rule(host: HostBody) -> Text:
    """`workbench host idle NAME`: the host's rule, or what happens without one (its command is
    text, never markup)."""
    rule = host.idle_rule
    now = f"idle for {age(host.quiet_since)}" if host.idle else "not idle"
    if rule is None:
        return plain(f"{host.name} has no idle rule: it is flagged idle after 30m with every GPU below 5% "
                     f"(now: {now}); set one with `workbench host idle {host.name} --after 30m --run CMD`")
    actions = ["drain and remove it"] if rule.remove else []
    actions += [f"run {rule.command!r}"] if rule.command else []
    return plain(f"{host.name}: idle after {format_duration(rule.after_seconds)} with every GPU below "
                 f"{rule.util_threshold:g}%, then {' then '.join(actions) or 'flag it only'} (now: {now})")


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
        parts.append(Text.assemble(
            (" SIMULATED GPUs ", "bold black on yellow"), " ",
            ("these values come from WORKBENCH_FAKE_GPUS (test and demo only), not from a GPU", "yellow")))
    versions = (f"driver {report.driver_version or 'N/A'}  NVML {report.nvml_version or 'N/A'}  "
                f"CUDA {report.cuda_driver_version or 'N/A'}")
    parts.append(Text.assemble((f"GPUs on {sanitize(host)}", "bold"),
                               plain(f" ({report.source})  {versions}")))
    if report.note:
        parts.append(plain(f"note: {report.note}"))
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
            table.add_row(str(g.index), plain(g.name or "N/A"), "N/A", "N/A", "N/A", "N/A",
                          plain(g.error, "red"))
            continue
        power = _na(g.power_draw_w, "{:.0f}", "W")
        if g.power_limit_w is not None:
            power += f"/{g.power_limit_w:.0f}W"
        table.add_row(str(g.index), plain(g.name or "N/A"), bar(g.utilization_gpu), _memory(g),
                      _na(g.temperature_c, "{:.0f}", "°C"), power, plain(gpu_users(g)))
    parts.append(table)
    return Group(*parts)
