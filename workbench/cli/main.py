"""The `workbench` command line: deploy, get, predict, logs, delete, agent, image."""

from __future__ import annotations

import json
import mimetypes
import queue
import random
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from workbench import __version__
from workbench.agent_client import AgentClient, AgentError
from workbench.cli import render
from workbench.cli.progress import BuildFailed, WaitDisplay, render_build
from workbench.deploy import Deployer, DeployError, delete_api
from workbench.local_agent import LocalAgentError, ensure_agent, running_agent, stop_agent
from workbench.models import ReplicaInfo, ReplicaState
from workbench.spec import SpecError, load_specs

app = typer.Typer(
    name="workbench",
    help="Deploy ML models as HTTP APIs on the GPU machines you already have.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
agent_app = typer.Typer(help="Manage the agent on this machine.", no_args_is_help=True)
image_app = typer.Typer(help="Base images and builds.", no_args_is_help=True)
app.add_typer(agent_app, name="agent")
app.add_typer(image_app, name="image")

JsonOption = Annotated[bool, typer.Option("--json", help="print machine-readable JSON")]


def _version(value: bool) -> None:
    if value:
        print(f"workbench {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="print the version and exit")] = False,
) -> None:
    """workbench: a predictor.py, a workbench.yaml, `workbench deploy`, and an HTTP endpoint."""


def _client(start: bool = True) -> AgentClient:
    try:
        config = ensure_agent(on_start=render.say) if start else running_agent()
    except LocalAgentError as error:
        render.fail(str(error))
        raise typer.Exit(1) from None
    if config is None:
        render.fail("the local agent is not running; nothing is deployed (start it with "
                    "`workbench agent start` or deploy something)")
        raise typer.Exit(1)
    return AgentClient(config.url, config.token)


def _agent_call(function: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return function(*args, **kwargs)
    except AgentError as error:
        render.fail(str(error))
        raise typer.Exit(1) from None


def _replicas_of(client: AgentClient, name: str) -> list[ReplicaInfo]:
    replicas: list[ReplicaInfo] = _agent_call(client.replicas, name)
    if not replicas:
        known = sorted({r.api for r in _agent_call(client.replicas)})
        hint = f"deployed APIs: {', '.join(known)}" if known else "no API is deployed"
        render.fail(f"no API named {name!r} ({hint})")
        raise typer.Exit(1)
    return replicas


@app.command()
def deploy(
    path: Annotated[Path, typer.Argument(help="project folder or workbench.yaml")] = Path("."),
    runtime: Annotated[str | None, typer.Option(
        help="override the spec's runtime: docker or process")] = None,
    offline: Annotated[bool | None, typer.Option(
        "--offline/--online", help="resolve wheels here and build without network")] = None,
    api: Annotated[list[str] | None, typer.Option("--api", help="deploy only these APIs")] = None,
    as_json: JsonOption = False,
) -> None:
    """Build and start the APIs described in workbench.yaml; wait until they answer."""
    if runtime is not None and runtime not in ("docker", "process"):
        render.fail(f"--runtime must be docker or process, not {runtime!r}")
        raise typer.Exit(2)
    try:
        specs = load_specs(path)
    except SpecError as error:
        render.fail("invalid spec; nothing was deployed", str(error).splitlines())
        raise typer.Exit(2) from None
    if api:
        unknown = set(api) - {s.spec.name for s in specs}
        if unknown:
            render.fail(f"no API named {', '.join(sorted(unknown))} in {specs[0].file}")
            raise typer.Exit(2)
        specs = [s for s in specs if s.spec.name in api]
    client = _client()
    host = _agent_call(client.host)
    results = []
    with WaitDisplay(render.err) as waiting:
        deployer = Deployer(client, say=render.say, render_build=render_build,
                            on_wait=waiting.update)
        for loaded in specs:
            try:
                results.append(deployer.deploy(loaded, host, runtime_override=runtime,
                                               offline=offline))
            except DeployError as error:
                waiting.stop()
                render.fail(str(error), error.log_tail[-30:])
                raise typer.Exit(1) from None
            except BuildFailed as error:
                waiting.stop()
                render.fail(f"{loaded.spec.name}: build failed: {error}; nothing was deployed",
                            error.log_tail)
                raise typer.Exit(1) from None
            except AgentError as error:
                waiting.stop()
                render.fail(f"{loaded.spec.name}: {error}")
                raise typer.Exit(1) from None
    if as_json:
        render.print_json([{
            "name": r.api, "runtime": r.runtime, "artifact": r.artifact, "built": r.built,
            "replaced": r.replaced, "unchanged": r.unchanged,
            "replicas": [x.model_dump(mode="json") for x in r.replicas],
        } for r in results])
        return
    for result in results:
        ready = [r for r in result.replicas if r.state == ReplicaState.READY]
        what = "unchanged" if result.unchanged else "deployed"
        render.out.print(f"[green]✓[/green] {result.api} {what}: {len(ready)} replica(s) ready "
                         f"({result.runtime})")
        for replica in ready[:3]:
            render.out.print(f"  POST {replica.url}/")
        render.out.print(f"  try: workbench predict {result.api} '<json>'")


@app.command()
def get(
    name: Annotated[str | None, typer.Argument(help="an API name for its replicas")] = None,
    as_json: JsonOption = False,
) -> None:
    """List deployed APIs, or one API's replicas."""
    client = _client(start=running_agent() is not None)
    if name is None:
        rows = render.summarize(_agent_call(client.replicas))
        if as_json:
            render.print_json(rows)
        elif not rows:
            render.err.print("no APIs deployed; run `workbench deploy PATH`")
        else:
            render.out.print(render.apis_table(rows))
        return
    replicas = _replicas_of(client, name)
    if as_json:
        summary = render.summarize(replicas)[0]
        summary["replicas_detail"] = [r.model_dump(mode="json") for r in replicas]
        render.print_json(summary)
        return
    row = render.summarize(replicas)[0]
    render.out.print(f"[bold]{name}[/bold]  {row['status']}  {row['ready']}/{row['replicas']} ready  "
                     f"runtime={row['runtime']}  artifact={row['artifact']}")
    render.out.print(render.replicas_table(replicas))


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
            if content_type.startswith("text/") and content_type != "text/plain":
                content_type = "text/plain"
    else:
        raw = data.encode()
    if content_type is not None:
        return raw, content_type
    try:
        json.loads(raw)
    except ValueError:
        if data not in ("-",):
            raise ValueError(
                f"{data[:60]!r} is not valid JSON; quote JSON in the shell ('{{\"x\": 1}}'), or "
                "send text with --content-type text/plain, or a file with @path") from None
        try:
            raw.decode()
        except UnicodeDecodeError:
            return raw, "application/octet-stream"
        return raw, "text/plain; charset=utf-8"
    return raw, "application/json"


@app.command()
def predict(
    name: Annotated[str, typer.Argument(help="API name")],
    data: Annotated[str, typer.Argument(help="JSON text, @file, or - for stdin")] = "-",
    content_type: Annotated[str | None, typer.Option(help="override the Content-Type")] = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the answer")] = 60.0,
    as_json: JsonOption = False,
) -> None:
    """Send one prediction request to a ready replica and print the answer."""
    try:
        body, kind = _payload(data, content_type)
    except ValueError as error:
        render.fail(str(error))
        raise typer.Exit(2) from None
    client = _client(start=False)
    replicas = _replicas_of(client, name)
    ready = [r for r in replicas if r.state == ReplicaState.READY and r.url]
    if not ready:
        states = ", ".join(f"{r.id}: {r.state.value}" for r in replicas)
        render.fail(f"{name} has no ready replica ({states}); see `workbench get {name}`")
        raise typer.Exit(1)
    replica = random.choice(ready)
    started = time.perf_counter()
    try:
        response = httpx.post(f"{replica.url}/", content=body, headers={"Content-Type": kind},
                              timeout=timeout)
    except httpx.HTTPError as error:
        render.fail(f"request to {name} ({replica.url}) failed: {error}")
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
                           "replica": replica.id, "content_type": answer_type,
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


@app.command()
def logs(
    name: Annotated[str, typer.Argument(help="API name")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new lines")] = False,
    tail: Annotated[int, typer.Option(help="lines from the end of each replica's log")] = 100,
    replica: Annotated[str | None, typer.Option(help="only this replica")] = None,
) -> None:
    """Print an API's replica logs (merged, each line prefixed with its replica when several)."""
    if tail < 0:
        render.fail("--tail must be 0 or more")
        raise typer.Exit(2)
    client = _client(start=False)
    replicas = _replicas_of(client, name)
    if replica is not None:
        replicas = [r for r in replicas if r.id == replica]
        if not replicas:
            render.fail(f"{name} has no replica {replica!r}; see `workbench get {name}`")
            raise typer.Exit(1)
    prefix = len(replicas) > 1
    lines: queue.Queue[str | None] = queue.Queue(maxsize=10_000)

    def pump(item: ReplicaInfo) -> None:
        try:
            for line in client.logs(item.id, tail=tail, follow=follow):
                lines.put(f"[{item.id}] {line}" if prefix else line)
        except AgentError as error:
            lines.put(f"(log of {item.id} ended: {error})")
        finally:
            lines.put(None)

    for item in replicas:
        threading.Thread(target=pump, args=(item,), daemon=True).start()
    open_streams = len(replicas)
    try:
        while open_streams:
            line = lines.get()
            if line is None:
                open_streams -= 1
                continue
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass


@app.command()
def delete(
    name: Annotated[str, typer.Argument(help="API name")],
    as_json: JsonOption = False,
) -> None:
    """Stop an API's replicas (gracefully: in-flight requests finish) and remove them."""
    client = _client(start=False)
    _replicas_of(client, name)
    with render.err.status(f"stopping {name}…"):
        count = _agent_call(delete_api, client, name)
    if as_json:
        render.print_json({"name": name, "deleted_replicas": count})
    else:
        render.out.print(f"[green]✓[/green] deleted {name} ({count} replica(s))")


@agent_app.command("start")
def agent_start() -> None:
    """Start the local agent in the background (deploy does this when needed)."""
    already = running_agent()
    config = ensure_agent(on_start=render.say) if already is None else already
    render.out.print(f"agent {'already ' if already else ''}running on {config.url}")


@agent_app.command("stop")
def agent_stop() -> None:
    """Stop the local agent; replicas keep serving and a new agent re-adopts them."""
    render.out.print("agent stopped" if stop_agent() else "no local agent was running")


@agent_app.command("status")
def agent_status(as_json: JsonOption = False) -> None:
    """Show whether the local agent runs, and what it sees of this host."""
    config = running_agent()
    if config is None:
        if as_json:
            render.print_json({"running": False})
        else:
            render.out.print("agent not running (it starts on `workbench deploy`)")
        raise typer.Exit(1)
    with AgentClient(config.url, config.token) as client:
        host = _agent_call(client.host)
    if as_json:
        render.print_json({"running": True, "url": config.url, "host": host.model_dump(mode="json")})
        return
    docker = (f"docker {host.docker.version}" if host.docker.available
              else f"no docker ({host.docker.error})")
    render.out.print(f"agent {host.agent_version} on {config.url}: {host.hostname} {host.os}/"
                     f"{host.arch}, {host.cpu_count} CPUs, "
                     f"{host.mem_available_bytes / 2**30:.1f}/{host.mem_total_bytes / 2**30:.1f} GiB free, "
                     f"{docker}; runtimes: {', '.join(host.runtimes)}")


@image_app.command("bootstrap")
def image_bootstrap(
    tag: Annotated[str, typer.Option(help="tag of the image to build")] = "workbench/python:3.11-bookworm",
    suite: Annotated[str, typer.Option(help="Debian suite")] = "bookworm",
    mirror: Annotated[str | None, typer.Option(help="Debian mirror URL")] = None,
    force: Annotated[bool, typer.Option(help="rebuild even if the image exists")] = False,
) -> None:
    """Build a Python base image from Debian packages (for machines that cannot pull images)."""
    from workbench.images.bootstrap import BootstrapError, bootstrap_base_image, image_exists

    try:
        if not force and image_exists(tag):
            render.out.print(f"{tag} already exists (use --force to rebuild)")
            return
        with render.err.status(f"bootstrapping {tag} from Debian {suite}…") as status:
            bootstrap_base_image(tag=tag, suite=suite, mirror=mirror,
                                 progress=lambda line: status.update(f"{tag}: {line[:100]}"))
    except BootstrapError as error:
        render.fail(str(error))
        raise typer.Exit(1) from None
    render.out.print(f"[green]✓[/green] built {tag}")


def run() -> None:
    """Console-script entry point."""
    app()
