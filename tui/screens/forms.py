"""Modal forms: confirm, scale, deploy (with progress), test prediction, add host (with trust)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

from pydantic import ValidationError
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.markup import escape
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, DataTable, Input, Label, RichLog, Static, TextArea
from workbench.tui import fmt

from workbench.wire.control import AddHostRequest, DeployEvent, DeployRequest, HostEvent, ScaleRequest
from workbench.wire.validation import in_words

#: the scale form's fields, as its labels name them
SCALE_FIELDS = {"replicas": "replicas", "min_replicas": "min", "max_replicas": "max"}
ADD_HOST_HINTS = {"name": "lowercase letters, digits and '-', starting with a letter, at most 63"}

if TYPE_CHECKING:
    from workbench.tui.app import WorkbenchApp


class Form(ModalScreen[Any]):
    BINDINGS = [Binding("escape", "cancel", "Close")]

    @property
    def wb(self) -> WorkbenchApp:
        return cast("WorkbenchApp", self.app)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_screen_resume(self) -> None:
        if fmt.frozen():  # a blinking cursor would make snapshots flaky
            for box in self.query(Input):
                box.cursor_blink = False
            for area in self.query(TextArea):
                area.cursor_blink = False


def field(label: str, widget: Any) -> Horizontal:
    return Horizontal(Label(label, classes="label"), widget, classes="field")


class ConfirmScreen(Form):
    """Yes/no; `y` or enter on Yes confirms, `n` or esc cancels."""

    BINDINGS = [Binding("y", "yes", "Yes"), Binding("n,escape", "no", "No")]

    def __init__(self, question: str):
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog confirm"):
            yield Static(self.question, id="question")
            with Horizontal(classes="buttons"):
                yield Button("Yes (y)", id="yes", variant="error")
                yield Button("No (n)", id="no", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_yes(self) -> None:
        self.dismiss(True)

    def action_no(self) -> None:
        self.dismiss(False)


class ScaleScreen(Form):
    """A fixed replica count, or min/max bounds for the autoscaler."""

    def __init__(self, name: str, replicas: int | None = None, autoscaling: dict[str, Any] | None = None):
        super().__init__()
        self.api_name = name
        self.replicas = replicas
        self.autoscaling = autoscaling or {}

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(f"[b]Scale {escape(self.api_name)}[/b]  (a count, or min/max for autoscaling)")
            yield field("replicas", Input(str(self.replicas if self.replicas is not None else ""),
                                          id="replicas", type="integer", compact=True))
            yield field("min", Input(str(self.autoscaling.get("min_replicas", "")), id="min",
                                     type="integer", compact=True))
            yield field("max", Input(str(self.autoscaling.get("max_replicas", "")), id="max",
                                     type="integer", compact=True))
            yield Static("", id="error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("Scale", id="ok", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#replicas", Input).focus()

    def request(self) -> ScaleRequest | None:
        values: dict[str, int] = {}
        for key, widget in (("replicas", "#replicas"), ("min_replicas", "#min"), ("max_replicas", "#max")):
            text = self.query_one(widget, Input).value.strip()
            if not text:
                continue
            try:
                values[key] = int(text)
            except ValueError:  # the field lets a lone "-" or "+" through
                self.query_one("#error", Static).update(
                    Text(f"{widget[1:]} must be a whole number, not {text!r}"))
                return None
        if "replicas" in values and self.replicas is not None and values["replicas"] == self.replicas \
                and ("min_replicas" in values or "max_replicas" in values):
            values.pop("replicas")  # the user changed the bounds, not the count
        if not values:
            self.query_one("#error", Static).update("give a replica count, or min and/or max")
            return None
        try:
            return ScaleRequest(**values)
        except ValidationError as error:
            self.query_one("#error", Static).update(Text(in_words(error, SCALE_FIELDS)))
            return None

    def submit(self) -> None:
        request = self.request()
        if request is not None:
            self.dismiss(request)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self.submit()
        else:
            self.dismiss(None)


class StreamEvent(Message):
    def __init__(self, event: DeployEvent | HostEvent | None, error: str | None = None):
        super().__init__()
        self.event = event
        self.error = error


class DeployScreen(Form):
    """A workbench.yaml path (on the controller's machine) and the build/rollout progress."""

    def __init__(self, path: str = ""):
        super().__init__()
        self.path = path
        self.running = False

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Static("[b]Deploy[/b]  project folder or workbench.yaml")
            yield field("path", Input(self.path, id="path", placeholder="./my-api", compact=True))
            with Horizontal(classes="buttons"):
                yield Button("Deploy", id="ok", variant="primary")
                yield Button("Close", id="cancel")
            yield RichLog(id="progress", markup=False, wrap=True)

    def on_mount(self) -> None:
        self.query_one("#path", Input).focus()

    def start(self) -> None:
        path = self.query_one("#path", Input).value.strip()
        if not path or self.running:
            return
        self.running = True
        self.query_one("#progress", RichLog).write(f"deploying {path} …")
        self.run_stream(path)

    @work(thread=True, exit_on_error=False, group="deploy")
    def run_stream(self, path: str) -> None:
        try:
            for event in self.wb.backend.deploy(DeployRequest(path=path)):
                self.post_message(StreamEvent(event))
        except Exception as error:
            self.post_message(StreamEvent(None, str(error)))

    def on_stream_event(self, message: StreamEvent) -> None:
        log = self.query_one("#progress", RichLog)
        event = message.event
        if event is None or not isinstance(event, DeployEvent):
            log.write(Text(f"error: {message.error}", style="bold red"))
            self.running = False
            return
        prefix = f"[{event.api}] " if event.api else ""
        if event.kind == "build" and event.build is not None:
            build = event.build
            step = f"step {build.step}/{build.total_steps} " if build.step and build.total_steps else ""
            log.write(f"{prefix}build {step}{build.message}".rstrip())
        elif event.kind == "done":
            log.write(Text(f"done: {event.message}", style="bold green"))
            for result in event.results:
                log.write(f"  {result.name} → {fmt.url(result.endpoint)}"
                          + (" (unchanged)" if result.unchanged else ""))
                for note in result.notes:
                    log.write(Text(f"    {note}", style="yellow"))
            self.running = False
            self.wb.poll_now()
        elif event.kind == "error":
            log.write(Text(f"error: {event.message}", style="bold red"))
            for line in event.log_tail[-10:]:
                log.write(f"  │ {line}")
            self.running = False
        else:  # the controller's words may name the API already: once is enough
            text = event.message.removeprefix(f"{event.api}: ") if event.api else event.message
            log.write(f"{prefix}{event.kind}: {text}")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.start()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self.start()
        else:
            self.dismiss(None)


class PredictScreen(Form):
    """A payload editor; ctrl+s (or Send) posts it through the router and shows answer and latency."""

    BINDINGS = [Binding("ctrl+s", "send", "Send"), Binding("escape", "cancel", "Close")]

    class Answer(Message):
        def __init__(self, status: int | None, body: str, latency_ms: float, error: str | None):
            super().__init__()
            self.status, self.body, self.latency_ms, self.error = status, body, latency_ms, error

    def __init__(self, name: str, payload: str = '{"text": "hello"}'):
        super().__init__()
        self.api_name = name
        self.payload = payload

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Static(f"[b]Test prediction[/b] POST /{escape(self.api_name)}   (ctrl+s sends)")
            yield TextArea(self.payload, id="payload", language=None)
            with Horizontal(classes="buttons"):
                yield Button("Send", id="send", variant="primary")
                yield Button("Close", id="cancel")
            yield Static("", id="answer")

    def on_mount(self) -> None:
        self.query_one("#payload", TextArea).focus()

    def action_send(self) -> None:
        self.query_one("#answer", Static).update("sending…")
        self.send(self.query_one("#payload", TextArea).text)

    @work(thread=True, exit_on_error=False, group="predict")
    def send(self, payload: str) -> None:
        result = self.wb.backend.predict(self.api_name, payload)
        self.post_message(self.Answer(result.status, result.body, result.latency_ms, result.error))

    def on_predict_screen_answer(self, message: Answer) -> None:
        answer = Text()
        if message.error:
            answer.append(f"error: {message.error}", style="bold red")
        else:
            good = message.status is not None and message.status < 400
            answer.append(f"HTTP {message.status}", style="bold green" if good else "bold red")
            answer.append(f"  {fmt.ms(message.latency_ms)}\n")
            answer.append(fmt.mask(message.body[:4000]))
        self.query_one("#answer", Static).update(answer)
        self.wb.poll_now()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "send":
            self.action_send()
        else:
            self.dismiss(None)


class AddHostScreen(Form):
    """Name, target, key file, jump, online; then live steps, preflight, and trust on first use."""

    def __init__(self) -> None:
        super().__init__()
        self.running = False
        self.fingerprint: str | None = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="add-host"):
            yield Static("[b]Add host[/b]  a box reachable over SSH; the agent is installed on it")
            yield field("name", Input(id="name", placeholder="gpu-box-1", compact=True))
            yield field("target", Input(id="target", placeholder="[user@]host[:port] or ssh alias",
                                        compact=True))
            yield field("key file", Input(id="identity", placeholder="~/.ssh/id_ed25519 (optional)",
                                          compact=True))
            yield field("jump", Input(id="jump", placeholder="[user@]bastion[:port] (optional)",
                                      compact=True))
            yield Checkbox("online: let the box install from its own package index", id="online",
                           compact=True)
            yield Static("", id="error", classes="error")
            with Vertical(id="trust"):
                yield Static("", id="fingerprint")
                with Horizontal(classes="buttons"):
                    yield Button("Trust and continue", id="trust-yes", variant="warning")
                    yield Button("Cancel", id="trust-no")
            with Horizontal(classes="buttons", id="actions"):
                yield Button("Add", id="ok", variant="primary")
                yield Button("Close", id="cancel")
            preflight: DataTable[Any] = DataTable(id="preflight", show_cursor=False)
            preflight.add_columns("CHECK", "STATUS", "DETAIL / FIX")
            yield preflight
            yield RichLog(id="progress", markup=False, wrap=True)

    def on_mount(self) -> None:
        self.query_one("#trust").display = False
        self.query_one("#preflight").display = False
        self.query_one("#name", Input).focus()

    def request(self, trust: str | None = None) -> AddHostRequest | None:
        values: dict[str, Any] = {key: self.query_one(f"#{key}", Input).value.strip() or None
                                  for key in ("name", "target", "identity", "jump")}
        values["online"] = self.query_one("#online", Checkbox).value
        values["trust"] = trust
        try:
            return AddHostRequest(**values)
        except ValidationError as error:
            self.query_one("#error", Static).update(Text(in_words(error, hints=ADD_HOST_HINTS)))
            return None

    def start(self, trust: str | None = None) -> None:
        if self.running:
            return
        request = self.request(trust)
        if request is None:
            return
        self.query_one("#error", Static).update("")
        self.query_one("#trust").display = False
        self.running = True
        self.query_one("#progress", RichLog).write(f"adding {request.name} ({request.target}) …")
        self.run_stream(request)

    @work(thread=True, exit_on_error=False, group="add-host")
    def run_stream(self, request: AddHostRequest) -> None:
        try:
            events: Iterator[HostEvent] = self.wb.backend.add_host(request)
            for event in events:
                self.post_message(StreamEvent(event))
        except Exception as error:
            self.post_message(StreamEvent(None, str(error)))
        else:
            self.post_message(StreamEvent(None, None))

    def on_stream_event(self, message: StreamEvent) -> None:
        log = self.query_one("#progress", RichLog)
        event = message.event
        if event is None or not isinstance(event, HostEvent):
            if message.error:
                log.write(Text(f"error: {message.error}", style="bold red"))
            self.running = False
            return
        if event.kind == "step":
            log.write(f"• {event.step or ''} {event.message}".replace("•  ", "• "))
        elif event.kind == "preflight":
            table = self.query_one("#preflight", DataTable)
            table.display = True
            table.clear()
            for check in event.checks:
                status = str(check.get("status", ""))
                style = {"ok": "green", "pass": "green", "warn": "yellow", "fail": "bold red"}.get(status, "")
                table.add_row(Text(str(check.get("name", ""))), Text(status, style=style),
                              Text(str(check.get("fix") or check.get("detail") or "")))
        elif event.kind == "trust_required":
            self.fingerprint = event.fingerprint
            self.query_one("#fingerprint", Static).update(Text.assemble(
                ("Unknown host key", "bold"), f" for {event.host}\n{event.key_type or 'key'} ",
                (str(event.fingerprint), "bold"), "\nCompare it with `ssh-keygen -lf` on the box; trust it?"))
            self.query_one("#trust").display = True
            self.query_one("#trust-no", Button).focus()
        elif event.kind == "done":
            log.write(Text(f"done: {event.message or event.host + ' added'}", style="bold green"))
            self.wb.poll_now()
        elif event.kind == "error":
            log.write(Text(f"error: {event.message}", style="bold red"))
        else:
            log.write(event.message)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.start()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self.start()
        elif event.button.id == "trust-yes" and self.fingerprint:
            self.running = False
            self.start(trust=self.fingerprint)
        elif event.button.id == "trust-no":
            self.query_one("#trust").display = False
            self.query_one("#progress", RichLog).write("not trusted; nothing was changed")
        else:
            self.dismiss(None)
