"""One API: replicas, autoscaler decisions with their inputs, recent events, traffic split."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.markup import escape
from textual.widgets import Static
from workbench.tui import fmt
from workbench.tui.screens.base import DataScreen
from workbench.tui.state import FleetState
from workbench.tui.table import LiveTable, Row
from workbench.tui.views import scraped_line, status_text
from workbench.tui.widgets import spark

from workbench.wire.control import ApiDetail, EventBody, TrafficBody
from workbench.wire.model_cache import WAITING_FOR_WEIGHTS

REPLICA_COLUMNS = ("REPLICA", "HOST", "GPUS", "STATE", "IN-FLIGHT", "RESTARTS", "UP-TO-DATE", "AGE",
                   "MESSAGE")
STATE_STYLE = {"ready": "green", "failed": "bold red", "starting": "yellow", "stopping": "dim",
               "stopped": "dim"}


def autoscale_inputs(event: EventBody) -> str:
    return " ".join(f"{key}={value:.2f}" if isinstance(value, float) else f"{key}={value}"
                    for key, value in event.data.items()) or "-"


def split_text(split: list[dict[str, Any]]) -> Text:
    """A splitter's targets with their traffic, the shadow beside the live ones."""
    text = Text("traffic split:")
    for target in split:
        traffic = TrafficBody.model_validate(target.get("traffic") or {})
        share = "shadow" if target.get("shadow") else f"{target.get('weight', 0):g}%"
        text.append(f"\n  {target.get('name')} {share}: {traffic.requests_per_second:.1f} req/s, "
                    f"p50 {fmt.ms(traffic.p50_ms)}, p99 {fmt.ms(traffic.p99_ms)}, "
                    f"{traffic.status_2xx} 2xx, {traffic.status_4xx} 4xx, {traffic.status_5xx} 5xx")
    return text


class ApiDetailScreen(DataScreen):
    """Drilled in from the APIs screen; esc goes back."""

    HELP_NAME = "API detail"

    BINDINGS = [
        Binding("l", "logs", "Logs"),
        Binding("s", "scale", "Scale"),
        Binding("r", "restart", "Restart replica"),
        Binding("p", "predict", "Predict"),
        Binding("d", "delete", "Delete"),
    ]

    def __init__(self, name: str):
        super().__init__()
        self.api_name = name

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="body"):
            yield Static("", id="summary")
            yield Static("", id="split")
            yield Static("[b]Replicas[/b]", classes="section")
            replicas = LiveTable(id="replicas", cursor_type="row")
            replicas.set_columns(*REPLICA_COLUMNS)
            yield replicas
            yield Static("[b]Autoscaler decisions[/b]", classes="section")
            scaling = LiveTable(id="autoscale", cursor_type="row", show_cursor=False)
            scaling.set_columns("AGE", "DECISION", "INPUTS")
            yield scaling
            yield Static("[b]Recent events[/b]", classes="section")
            events = LiveTable(id="events", cursor_type="row", show_cursor=False)
            events.set_columns("AGE", "KIND", "MESSAGE")
            yield events

    # Textual calls DataScreen's handlers of these events too, after these: no super() calls.
    def on_mount(self) -> None:
        self.wb.watch_api(self.api_name)

    def on_screen_resume(self) -> None:
        self.wb.watch_api(self.api_name)

    def on_unmount(self) -> None:
        self.wb.watch_api(None)

    def focus_main(self) -> None:
        self.query_one("#replicas", LiveTable).focus()

    def show(self, state: FleetState) -> None:
        detail = state.details.get(self.api_name)
        summary = self.query_one("#summary", Static)
        if detail is None:
            gone = state.loaded and all(api.name != self.api_name for api in state.apis)
            summary.update(Text.assemble((self.api_name, "bold"), "  ", "(deleted)" if gone else "loading…"))
            return
        summary.update(self.summary_text(detail, state))
        split = self.query_one("#split", Static)
        split.display = bool(detail.split)
        split.update(split_text(detail.split))
        self.query_one("#replicas", LiveTable).show_rows([
            Row(r.id, (fmt.short_id(r.id), r.host,
                       ",".join(map(str, state.gpus_of_replica(r.host, r.id))) or "-",
                       Text(r.state.value + (" (ejected)" if r.ejected else ""),
                            style=STATE_STYLE.get(r.state.value, "")),
                       str(r.in_flight), str(r.restarts), "yes" if r.up_to_date else "no",
                       fmt.age(r.created_at), fmt.mask(r.message or "")))
            for r in detail.replica_list if self.matches(r.id, r.host, r.state.value, r.message)])
        autoscale = [e for e in detail.events if e.kind == "autoscale"][-10:]
        self.query_one("#autoscale", LiveTable).show_rows([
            Row(str(i), (fmt.age(e.at), fmt.mask(e.message), autoscale_inputs(e)))
            for i, e in enumerate(reversed(autoscale))])
        events = [e for e in detail.events if self.matches(e.kind, e.message)][-15:]
        self.query_one("#events", LiveTable).show_rows([
            Row(str(i), (fmt.age(e.at), e.kind, fmt.mask(e.message)))
            for i, e in enumerate(reversed(events))])

    @staticmethod
    def summary_text(detail: ApiDetail, state: FleetState) -> Text:
        traffic = detail.traffic
        text = Text.assemble((detail.name, "bold"), "  ", status_text(detail.status),
                             f"  {detail.replicas.ready}/{detail.replicas.requested} ready  ",
                             (f"({detail.note})  " if detail.note else "", "yellow"),
                             f"endpoint {fmt.url(detail.endpoint)}")
        if detail.runtime:
            text.append(f"  runtime {detail.runtime}")
        text.append(f"\nreq/s {fmt.rate(traffic.requests_per_second)} ")
        text.append_text(spark(state.rps.get(detail.name, ()), 20))
        text.append(f"  p50 {fmt.ms(traffic.p50_ms)}  p99 {fmt.ms(traffic.p99_ms)}  in-flight "
                    f"{traffic.in_flight}  2xx {traffic.status_2xx} 4xx {traffic.status_4xx} "
                    f"5xx {traffic.status_5xx}")
        if detail.autoscaling:
            text.append("\nautoscaling " + " ".join(f"{k}={v}" for k, v in detail.autoscaling.items()))
        if detail.message and detail.message.startswith(WAITING_FOR_WEIGHTS):  # a model on its way
            text.append("\n" + fmt.mask(detail.message), style="yellow")
        scraped = scraped_line(detail)
        if scraped:
            text.append("\n" + scraped)
        return text

    def selected_replica(self) -> str | None:
        return self.query_one("#replicas", LiveTable).selected_key

    def action_logs(self) -> None:
        self.wb.open_logs(self.api_name, self.selected_replica())

    def action_scale(self) -> None:
        self.wb.open_scale(self.api_name)

    def action_predict(self) -> None:
        self.wb.open_predict(self.api_name)

    def action_restart(self) -> None:
        replica = self.selected_replica()
        if replica is None:
            self.notify("no replica selected", severity="warning")
            return
        self.wb.confirm_then(f"Restart replica [b]{escape(fmt.short_id(replica))}[/b] of "
                             f"{escape(self.api_name)}?",
                             lambda: self.wb.restart_replica(self.api_name, replica))

    def action_delete(self) -> None:
        self.wb.confirm_then(f"Delete API [b]{escape(self.api_name)}[/b] and all its replicas?",
                             lambda: self.wb.delete_api(self.api_name, then_back=True))
