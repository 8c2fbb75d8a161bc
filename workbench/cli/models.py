"""`workbench model …`: the model weights in each host's cache — list, pull (pre-warm), rm."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from workbench.cli import render
from workbench.cli.connect import call, controller
from workbench.cli.options import FlagsCommand, FlagsGroup, JsonOption
from workbench.spec.weights import parse_source
from workbench.wire.control import HostModelsBody, ModelPullRequest
from workbench.wire.errors import WorkbenchError
from workbench.wire.model_cache import CachedModel, Meter

model_app = typer.Typer(help="Model weights in the hosts' caches (each host keeps one copy of each).",
                        no_args_is_help=True, cls=FlagsGroup)


def size(count: int | None) -> str:
    if count is None:
        return "-"
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


def revision(model: CachedModel) -> str:
    if model.commit:
        asked = model.revision if model.revision and model.revision != model.commit else ""
        return f"{asked}@{model.commit[:12]}" if asked else model.commit[:12]
    return model.id[:12]


def models_table(hosts: list[HostModelsBody]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("HOST", "MODEL", "REVISION", "SIZE", "LAST USED", "USED BY", "SOURCE"):
        table.add_column(column, no_wrap=column != "SOURCE")
    for host in hosts:
        if host.cache is None:
            table.add_row(host.host, "[red]N/A[/red]", "", "", "", host.error or "", "")
            continue
        if not host.cache.models:
            table.add_row(host.host, "[dim](none)[/dim]", "", "", "", "", "")
        for model in host.cache.models:
            table.add_row(host.host, model.name, revision(model), size(model.size_bytes),
                          render.age(model.last_used) if model.last_used else "-",
                          ", ".join(model.used_by) or "-", model.source)
    return table


def caches_line(host: HostModelsBody) -> str:
    cache = host.cache
    if cache is None:
        return f"{host.host}: N/A ({host.error})"
    limit = f" of {size(cache.limit_bytes)} (limit)" if cache.limit_bytes else ""
    partial = f", {size(cache.partial_bytes)} arriving" if cache.partial_bytes else ""
    return (f"{host.host}: {size(cache.used_bytes)} used{limit}{partial}, "
            f"{size(cache.free_bytes)} free on disk")


@model_app.command("list", cls=FlagsCommand)
def list_models(
    host: Annotated[str | None, typer.Option("--host", help="only this host")] = None,
    as_json: JsonOption = False,
) -> None:
    """Per host: each model version in its cache, its size, when it was last used and by which APIs."""
    render.json_errors(as_json)
    found = call(controller(start=False).models, host)
    if as_json:
        render.print_json([h.model_dump(mode="json") for h in found])
        return
    render.out.print(models_table(found))
    for item in found:
        render.err.print(f"[dim]{caches_line(item)}[/dim]", highlight=False)


@model_app.command("pull", cls=FlagsCommand)
def pull(
    source: Annotated[str, typer.Argument(
        help="a folder or file here, hf://org/name[@revision], or https://…")],
    host: Annotated[str, typer.Option("--host", help="the host whose cache gets it")],
    name: Annotated[str | None, typer.Option(
        "--name", help="the model's name (default: from the source)")] = None,
    include: Annotated[list[str] | None, typer.Option(
        "--include", help="hub repos: only these files (glob)")] = None,
    exclude: Annotated[list[str] | None, typer.Option(
        "--exclude", help="hub repos: not these files (glob)")] = None,
    sha256: Annotated[str | None, typer.Option("--sha256", help="https sources: the file's checksum")] = None,
    as_json: JsonOption = False,
) -> None:
    """Put a model in a host's cache now (pre-warm a box), so replicas that need it start at once."""
    render.json_errors(as_json)
    try:
        parsed = parse_source(source)
    except ValueError as error:
        render.fail(str(error))
        raise typer.Exit(2) from None
    if parsed.kind == "local":
        path = Path(source).expanduser().resolve()
        if not path.exists():
            render.fail(f"{source}: no such file or folder")
            raise typer.Exit(2)
        source = str(path)
    try:
        request = ModelPullRequest(source=source, host=host, name=name, include=include or None,
                                   exclude=exclude or None, sha256=sha256)
    except ValueError as error:
        render.fail(f"bad arguments: {error}")
        raise typer.Exit(2) from None
    client = controller()
    last = None
    try:
        with render.err.status(f"pulling {source} onto {host}…") as status:
            for event in client.pull_model(request):
                last = event
                if event.kind == "progress":
                    meter = Meter(event.bytes_total, event.bytes_done)
                    meter.rate = event.rate
                    status.update(f"{host}: {meter.text()}" + (f" ({event.via})" if event.via else ""))
                elif event.kind == "log":
                    render.say(event.message)
    except WorkbenchError as error:
        render.fail(str(error))
        raise typer.Exit(2 if error.status == 400 else 1) from None
    if last is None or last.kind != "done":
        render.fail(last.message if last is not None else "the controller ended the stream without an answer")
        raise typer.Exit(1)
    if as_json:
        render.print_json(last.model_dump(mode="json"))
    else:
        render.out.print(f"[green]✓[/green] {last.message}")


@model_app.command("rm", cls=FlagsCommand)
def remove(
    ref: Annotated[str, typer.Argument(help="a model's name, or the first 8+ digits of its version id")],
    host: Annotated[str | None, typer.Option(
        "--host", help="only from this host (default: every host)")] = None,
    as_json: JsonOption = False,
) -> None:
    """Remove a model from the hosts' caches (a host whose replicas use it keeps it)."""
    render.json_errors(as_json)
    body = call(controller(start=False).remove_model, ref, host)
    if as_json:
        render.print_json(body.model_dump(mode="json"))
    else:
        for gone in body.removed:
            render.out.print(f"removed {gone.name} ({gone.id[:12]}) from {gone.host}")
        for name, why in body.refused.items():
            render.fail(f"{name}: {why}")
    if body.refused:
        raise typer.Exit(1)
