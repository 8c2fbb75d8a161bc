"""CLI commands about APIs: deploy, get, predict, logs, scale, delete."""

from __future__ import annotations

import json
import mimetypes
import sys
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from pydantic import ValidationError
from rich.live import Live

from workbench.cli import render
from workbench.cli.connect import call, controller
from workbench.cli.options import JsonOption, OutputOption
from workbench.cli.progress import DeployDisplay
from workbench.cli.times import parse_since
from workbench.clients.control import ControlClient
from workbench.wire.control import DeployRequest, ScaleRequest
from workbench.wire.errors import WorkbenchError, error_text
from workbench.wire.validation import in_words

#: how `workbench scale`'s flags are named in its errors
SCALE_FLAGS = {"replicas": "--replicas", "min_replicas": "--min", "max_replicas": "--max"}


def deploy(
    path: Annotated[Path, typer.Argument(help="project folder or workbench.yaml")] = Path("."),
    runtime: Annotated[str | None, typer.Option(help="override the runtime: docker or process")] = None,
    offline: Annotated[bool | None, typer.Option(
        "--offline/--online", help="resolve wheels here and build without network")] = None,
    api: Annotated[list[str] | None, typer.Option("--api", help="deploy only these APIs")] = None,
    as_json: JsonOption = False,
) -> None:
    """Build and roll out the APIs described in workbench.yaml; wait until they serve."""
    render.json_errors(as_json)
    if runtime is not None and runtime not in ("docker", "process"):
        render.fail(f"--runtime must be docker or process, not {runtime!r}")
        raise typer.Exit(2)
    request = DeployRequest(path=str(path.resolve()), apis=api or None, runtime=runtime, offline=offline)
    client = _deploying_controller(request)
    results = None
    with DeployDisplay(render.err) as display:
        try:
            for event in client.deploy(request):
                if event.kind == "done":
                    results = event.results
                elif event.kind == "error":
                    display.stop()
                    tail = event.log_tail
                    render.fail(event.message + ("; its output:" if tail else ""), tail)
                    raise typer.Exit(1)
                else:
                    display.show(event)
        except WorkbenchError as error:
            display.stop()
            _refused(error)
    if results is None:
        render.fail("the deployment stream ended without a result; see `workbench get`")
        raise typer.Exit(1)
    if as_json:
        render.print_json([r.model_dump(mode="json") for r in results])
        return
    for result in results:
        what = "unchanged" if result.unchanged else "deployed"
        detail = f" ({result.runtime})" if result.runtime else ""
        render.ok(f"{result.name} {what}{detail}: POST {result.endpoint}")
        for note in result.notes:
            render.out.print(render.plain(f"  {note}"), soft_wrap=True)
    if results:
        render.out.print(render.plain(f"  try: workbench predict {results[0].name} '<json>'"), soft_wrap=True)


def _deploying_controller(request: DeployRequest) -> ControlClient:
    """The controller that takes `request`. When none runs, the request is checked here first with
    the controller's own intake (the same check, in this process), so a bad one starts nothing."""
    from workbench.controller import launcher

    if launcher.running_controller() is None:
        from workbench.controller.intake import read_order

        try:
            read_order(request)
        except WorkbenchError as error:
            _refused(error)
    return controller()


def _refused(error: WorkbenchError) -> NoReturn:
    """A refused deploy: a bad spec's problems one per line (exit 2), else the reason."""
    problems = error.body.get("problems") if isinstance(error.body, dict) else None
    if problems:
        render.fail("invalid spec; nothing was deployed",
                    [line for problem in problems for line in str(problem).splitlines()])
    else:
        render.fail(str(error), [])
    raise typer.Exit(2 if error.status == 400 else 1) from None


def get(
    name: Annotated[str | None, typer.Argument(help="an API, for its replicas and events")] = None,
    watch: Annotated[bool, typer.Option("--watch", "-w",
                                        help="refresh every 2 s until Ctrl-C (in a pipe: each refresh "
                                        "printed, with a --- line between them)")] = False,
    output: OutputOption = None,
    as_json: JsonOption = False,
) -> None:
    """List APIs with their replicas and traffic, or one API in detail."""
    from workbench.controller import launcher

    render.json_errors(as_json)
    if launcher.running_controller() is None:
        _no_controller(name, as_json)
    client = controller(start=False)
    layout = output or "table"

    def view() -> Any:
        if name is None:
            apis = call(client.apis)
            if as_json:
                return [a.model_dump(mode="json") for a in apis]
            if not apis:
                return "" if layout == "name" else "no APIs deployed; run `workbench deploy PATH`"
            return render.apis_table(apis, layout), [] if layout == "name" else render.api_notes(apis)
        detail = call(client.api, name)
        if as_json:
            return detail.model_dump(mode="json")
        if layout == "name":
            return render.plain(detail.name), []
        return render.api_detail(detail), []

    if as_json:
        render.print_json(view(), compact=watch)
        if not watch:
            return
    elif not watch:
        _print_view(view())
        return
    try:
        if as_json or not render.out.is_terminal:
            _watch_lines(view, as_json)
        else:
            with Live(_live(view()), console=render.out, auto_refresh=False) as live:
                while True:
                    time.sleep(2.0)
                    live.update(_live(view()), refresh=True)
    except KeyboardInterrupt:
        pass


def _print_view(shown: Any) -> None:
    if isinstance(shown, str):
        if shown:
            render.info(shown)
        return
    table, notes = shown
    render.show(table)
    for note in notes:
        render.note(note)


def _live(shown: Any) -> Any:
    """What `get -w` redraws in a terminal: the table and its notes together."""
    from rich.console import Group

    return shown if isinstance(shown, str) else Group(shown[0], *shown[1])


def _watch_lines(view: Any, as_json: bool) -> None:
    """`get -w` in a pipe (or with --json): every refresh printed as it comes, as `kubectl get -w`
    does: tables with a `---` line between them, JSON one document per line."""
    first = not as_json  # --json printed its first document already
    while True:
        if not first:
            time.sleep(2.0)
            shown = view()
            if as_json:
                render.print_json(shown, compact=True)
                continue
            render.out.file.write("---\n")
        else:
            shown = view()
        first = False
        _print_view(shown)
        render.out.file.flush()


def _no_controller(name: str | None, as_json: bool) -> NoReturn:
    """`get` with no controller: nothing is deployed, unless the local agent still runs replicas
    (the controller was stopped): then say so, and how many, and exit 1."""
    from workbench.clients.agent import AgentClient
    from workbench.local_agent import running_agent

    running: list[str] = []
    agent = running_agent()
    if agent is not None:
        try:
            with AgentClient(agent.url, agent.token, timeout=5.0) as client:
                running = [r.api for r in client.replicas() if r.state.value not in ("stopping", "stopped")]
        except WorkbenchError:
            running = []
    if running:
        apis = sorted(set(running))
        render.fail(f"the controller is stopped; the local agent still runs {len(running)} replica(s) "
                    f"({', '.join(apis)}), serving nothing through the router; start the controller "
                    "with `workbench serve` (or any deploy) to manage them again",
                    replicas=len(running), apis=apis)
        raise typer.Exit(1)
    if as_json:
        render.print_json([] if name is None else None)
    else:
        render.info("no controller is running, so nothing is deployed (`workbench deploy PATH` starts one)")
    raise typer.Exit(0 if name is None else 1)


def _payload(data: str, content_type: str | None) -> tuple[bytes, str]:
    if data == "-":
        raw = sys.stdin.buffer.read()
    elif data.startswith("@"):
        file = Path(data[1:])
        if not file.is_file():
            raise ValueError(f"no such file: {file}")
        raw = file.read_bytes()
        if content_type is None:
            content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
            if content_type.startswith("text/"):
                content_type = "text/plain"
    else:
        raw = data.encode()
    if content_type is not None:
        return raw, content_type
    try:
        json.loads(raw)
    except ValueError:
        if data != "-":
            raise ValueError(
                f"{data[:60]!r} is not valid JSON; quote JSON in the shell ('{{\"x\": 1}}'), or "
                "send text with --content-type text/plain, or a file with @path") from None
        try:
            raw.decode()
        except UnicodeDecodeError:
            return raw, "application/octet-stream"
        return raw, "text/plain; charset=utf-8"
    return raw, "application/json"


def predict(
    name: Annotated[str, typer.Argument(help="API name")],
    data: Annotated[str, typer.Argument(help="JSON text, @file, or - for stdin")] = "-",
    content_type: Annotated[str | None, typer.Option(help="override the Content-Type")] = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the answer")] = 60.0,
    as_json: JsonOption = False,
) -> None:
    """Send one request through the router (as an app would) and print the answer."""
    render.json_errors(as_json)
    try:
        body, kind = _payload(data, content_type)
    except ValueError as error:
        render.fail(str(error))
        raise typer.Exit(2) from None
    client = controller(start=False)
    started = time.perf_counter()
    try:
        response = httpx.post(f"{client.url}/{name}", content=body, headers={"Content-Type": kind},
                              timeout=timeout)
    except httpx.HTTPError as error:
        render.fail(f"request to {client.url}/{name} failed: {error}")
        raise typer.Exit(1) from None
    latency_ms = (time.perf_counter() - started) * 1000
    answer_type = response.headers.get("content-type", "")
    # an error no replica answered is the router's own ("no API named 'x'"): say its words
    refused = (_router_words(response) if response.status_code >= 400
               and "x-workbench-replica" not in response.headers else None)
    if refused is not None and not as_json:
        render.fail(refused)
        raise typer.Exit(1)
    parsed: Any = None
    if "json" in answer_type:
        try:
            parsed = response.json()
        except ValueError:
            parsed = None
    if as_json:
        render.print_json({"status": response.status_code, "latency_ms": round(latency_ms, 2),
                           "replica": response.headers.get("x-workbench-replica"),
                           "request_id": response.headers.get("x-request-id"),
                           "content_type": answer_type,
                           "body": parsed if parsed is not None else response.text})
    elif parsed is not None:
        sys.stdout.write(json.dumps(parsed, indent=2) + "\n")
    elif answer_type.startswith("text/"):
        sys.stdout.write(response.text + ("" if response.text.endswith("\n") else "\n"))
    elif sys.stdout.isatty():
        render.err.print(f"({len(response.content)} bytes of {answer_type or 'binary data'}; "
                         "redirect stdout to a file to keep them)")
    else:
        sys.stdout.buffer.write(response.content)
    if response.status_code >= 400:
        render.fail(refused or f"{name} answered HTTP {response.status_code}")
        raise typer.Exit(1)


def _router_words(response: httpx.Response) -> str:
    """The router's own error (no replica answered), as the other commands say theirs."""
    message = error_text(response.content, response.reason_phrase) or f"HTTP {response.status_code}"
    try:
        known = response.json().get("apis")
    except (ValueError, AttributeError):
        known = None
    if isinstance(known, list):
        message += f" (deployed: {', '.join(map(str, known)) or 'none'})"
    return message


def logs(
    name: Annotated[str, typer.Argument(help="API name")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new lines")] = False,
    tail: Annotated[int, typer.Option(help="lines from the end of each replica's log")] = 100,
    replica: Annotated[str | None, typer.Option(help="only this replica")] = None,
    timestamps: Annotated[bool, typer.Option("--timestamps", "-t",
                                             help="start each line with its time (RFC 3339)")] = False,
    since: Annotated[str | None, typer.Option(
        help="only lines since then: 10m, 1h30m, 2d, or a time (2026-01-02T13:23:37Z)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON lines: "
                                          '{"replica", "time", "line"} each')] = False,
) -> None:
    """Print an API's replica logs (merged; lines prefixed with their replica when several)."""
    render.json_errors(as_json)
    if tail < 0:
        render.fail("--tail must be 0 or more")
        raise typer.Exit(2)
    try:
        since_at = parse_since(since) if since is not None else None
    except ValueError as error:
        render.fail(str(error))
        raise typer.Exit(2) from None
    client = controller(start=False)
    # the terminal gets the replicas' bytes with their control characters shown escaped; a pipe
    # or a file gets them as written
    clean = render.sanitize if sys.stdout.isatty() else (lambda text: text)
    try:
        for line in client.logs(name, tail=tail, follow=follow, replica=replica,
                                timestamps=timestamps or as_json, since=since_at):
            if as_json:
                render.print_json(log_record(line, timestamps=True), compact=True)
                continue
            sys.stdout.write(clean(line) + "\n")
            sys.stdout.flush()
    except WorkbenchError as error:
        render.fail(str(error))
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        pass


def log_record(line: str, *, timestamps: bool) -> dict[str, str | None]:
    """A merged log line (``[replica] TIME text``, each part optional) as a JSON line's fields."""
    replica: str | None = None
    at: str | None = None
    if line.startswith("[") and "] " in line:
        replica, line = line[1:].split("] ", 1)
    if timestamps:
        first, _, rest = line.partition(" ")
        if first[:4].isdigit() and "T" in first:
            at, line = first, rest
    return {"replica": replica, "time": at, "line": line}


def scale(
    name: Annotated[str, typer.Argument(help="API name")],
    replicas: Annotated[int | None, typer.Option(help="a fixed replica count")] = None,
    min_replicas: Annotated[int | None, typer.Option("--min", help="autoscaling lower bound")] = None,
    max_replicas: Annotated[int | None, typer.Option("--max", help="autoscaling upper bound")] = None,
    as_json: JsonOption = False,
) -> None:
    """Set an API's replica count, or its autoscaling bounds."""
    render.json_errors(as_json)
    if replicas is None and min_replicas is None and max_replicas is None:
        render.fail("say how: --replicas N, or --min/--max for an autoscaled API")
        raise typer.Exit(2)
    try:
        request = ScaleRequest(replicas=replicas, min_replicas=min_replicas, max_replicas=max_replicas)
    except ValidationError as error:
        render.fail(in_words(error, SCALE_FLAGS))
        raise typer.Exit(2) from None
    summary = call(controller(start=False).scale, name, request)
    if as_json:
        render.print_json(summary.model_dump(mode="json"))
        return
    render.ok(f"{name}: {summary.replicas.requested} replica(s) requested")
    if summary.message and summary.message.startswith("room for"):
        render.warn(summary.message)


def delete(
    name: Annotated[str, typer.Argument(help="API name")],
    as_json: JsonOption = False,
) -> None:
    """Stop an API's replicas (gracefully: in-flight requests finish) and forget it."""
    render.json_errors(as_json)
    client = controller(start=False)
    with render.err.status(render.plain(f"stopping {name}…")):
        deleted = call(client.delete, name)
    if as_json:
        render.print_json(deleted.model_dump(mode="json"))
    else:
        render.ok(f"deleted {name} ({deleted.deleted_replicas} replica(s))")
