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
from rich.live import Live

from workbench.cli import render
from workbench.cli.connect import call, controller
from workbench.cli.progress import DeployDisplay
from workbench.clients.control import ControlClient
from workbench.wire.control import DeployRequest, ScaleRequest
from workbench.wire.errors import WorkbenchError

JsonOption = Annotated[bool, typer.Option("--json", help="print machine-readable JSON")]


def deploy(
    path: Annotated[Path, typer.Argument(help="project folder or workbench.yaml")] = Path("."),
    runtime: Annotated[str | None, typer.Option(help="override the runtime: docker or process")] = None,
    offline: Annotated[bool | None, typer.Option(
        "--offline/--online", help="resolve wheels here and build without network")] = None,
    api: Annotated[list[str] | None, typer.Option("--api", help="deploy only these APIs")] = None,
    as_json: JsonOption = False,
) -> None:
    """Build and roll out the APIs described in workbench.yaml; wait until they serve."""
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
                    render.fail(event.message, event.log_tail[-30:])
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
        render.out.print(f"[green]✓[/green] {result.name} {what}{detail}: POST {result.endpoint}")
    if results:
        render.out.print(f"  try: workbench predict {results[0].name} '<json>'")


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
    watch: Annotated[bool, typer.Option("--watch", "-w", help="refresh every 2 s until Ctrl-C")] = False,
    as_json: JsonOption = False,
) -> None:
    """List APIs with their replicas and traffic, or one API in detail."""
    from workbench.controller import launcher

    if launcher.running_controller() is None:
        if as_json:
            render.print_json([] if name is None else None)
        else:
            render.err.print("no controller is running, so nothing is deployed "
                             "(`workbench deploy PATH` starts one)")
        raise typer.Exit(0 if name is None else 1)
    client = controller(start=False)

    def view() -> Any:
        if name is None:
            apis = call(client.apis)
            if as_json:
                return [a.model_dump(mode="json") for a in apis]
            return render.apis_table(apis) if apis else "no APIs deployed; run `workbench deploy PATH`"
        detail = call(client.api, name)
        return detail.model_dump(mode="json") if as_json else render.api_detail(detail)

    if as_json:
        render.print_json(view())
        return
    if not watch:
        render.out.print(view())
        return
    try:
        with Live(view(), console=render.out, auto_refresh=False) as live:
            while True:
                time.sleep(2.0)
                live.update(view(), refresh=True)
    except KeyboardInterrupt:
        pass


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
        render.fail(f"{name} answered HTTP {response.status_code}")
        raise typer.Exit(1)


def logs(
    name: Annotated[str, typer.Argument(help="API name")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new lines")] = False,
    tail: Annotated[int, typer.Option(help="lines from the end of each replica's log")] = 100,
    replica: Annotated[str | None, typer.Option(help="only this replica")] = None,
) -> None:
    """Print an API's replica logs (merged; lines prefixed with their replica when several)."""
    if tail < 0:
        render.fail("--tail must be 0 or more")
        raise typer.Exit(2)
    client = controller(start=False)
    try:
        for line in client.logs(name, tail=tail, follow=follow, replica=replica):
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
    except WorkbenchError as error:
        render.fail(str(error))
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        pass


def scale(
    name: Annotated[str, typer.Argument(help="API name")],
    replicas: Annotated[int | None, typer.Option(help="a fixed replica count")] = None,
    min_replicas: Annotated[int | None, typer.Option("--min", help="autoscaling lower bound")] = None,
    max_replicas: Annotated[int | None, typer.Option("--max", help="autoscaling upper bound")] = None,
    as_json: JsonOption = False,
) -> None:
    """Set an API's replica count, or its autoscaling bounds."""
    if replicas is None and min_replicas is None and max_replicas is None:
        render.fail("say how: --replicas N, or --min/--max for an autoscaled API")
        raise typer.Exit(2)
    try:
        request = ScaleRequest(replicas=replicas, min_replicas=min_replicas, max_replicas=max_replicas)
    except ValueError as error:
        render.fail(f"invalid scale: {error}")
        raise typer.Exit(2) from None
    summary = call(controller(start=False).scale, name, request)
    if as_json:
        render.print_json(summary.model_dump(mode="json"))
    else:
        render.out.print(f"[green]✓[/green] {name}: {summary.replicas.requested} replica(s) requested")


def delete(
    name: Annotated[str, typer.Argument(help="API name")],
    as_json: JsonOption = False,
) -> None:
    """Stop an API's replicas (gracefully: in-flight requests finish) and forget it."""
    client = controller(start=False)
    with render.err.status(f"stopping {name}…"):
        deleted = call(client.delete, name)
    if as_json:
        render.print_json(deleted.model_dump(mode="json"))
    else:
        render.out.print(f"[green]✓[/green] deleted {name} ({deleted.deleted_replicas} replica(s))")
