"""`workbench image …`: the base image for machines that cannot pull one, and pruning old builds."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.text import Text

from workbench.cli import render
from workbench.cli.connect import call, controller
from workbench.cli.options import FlagsCommand, FlagsGroup, JsonOption

image_app = typer.Typer(help="Base images and builds.", no_args_is_help=True, cls=FlagsGroup)


@image_app.command("bootstrap", cls=FlagsCommand)
def image_bootstrap(
    tag: Annotated[str, typer.Option(help="tag of the image to build")] = "workbench/python:3.11-bookworm",
    suite: Annotated[str, typer.Option(help="Debian suite")] = "bookworm",
    mirror: Annotated[str | None, typer.Option(help="Debian mirror URL")] = None,
    force: Annotated[bool, typer.Option(help="rebuild even if the image exists")] = False,
    as_json: JsonOption = False,
) -> None:
    """Build a Python base image from Debian packages (for machines that cannot pull images)."""
    from workbench.images.bootstrap import BootstrapError, bootstrap_base_image, image_exists

    render.json_errors(as_json)
    try:
        if not force and image_exists(tag):
            if as_json:
                render.print_json({"tag": tag, "built": False, "exists": True})
            else:
                render.out.print(render.plain(f"{tag} already exists (use --force to rebuild)"))
            return
        with render.err.status(render.plain(f"bootstrapping {tag} from Debian {suite}…")) as status:
            bootstrap_base_image(tag=tag, suite=suite, mirror=mirror,
                                 progress=lambda line: status.update(render.plain(f"{tag}: {line[:100]}")))
    except BootstrapError as error:
        render.fail(str(error))
        raise typer.Exit(1) from None
    if as_json:
        render.print_json({"tag": tag, "built": True, "exists": True})
    else:
        render.ok(f"built {tag}")


@image_app.command("prune", cls=FlagsCommand)
def image_prune(
    keep: Annotated[int, typer.Option(min=1, max=100, help="versions of each deployed API to keep "
                                      "(the running one among them)")] = 2,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="say what would go, remove nothing")] = False,
    as_json: JsonOption = False,
) -> None:
    """Remove the images (and process-runtime bundles) of deleted APIs and all but the last
    --keep versions of deployed ones, on every reachable host; never one a replica uses."""
    render.json_errors(as_json)
    pruned = call(controller(start=False).prune_images, keep=keep, dry_run=dry_run)
    if as_json:
        render.print_json(pruned.model_dump(mode="json"))
        return
    verb = "would remove" if dry_run else "removed"
    rows: list[list[Any]] = [[render.plain(item.host), render.plain(item.artifact),
                              render.plain(item.api or "-"),
             f"{item.size_bytes / 2**20:.0f} MiB" if item.size_bytes is not None else "-",
             render.plain(item.why)] for item in pruned.removed]
    if rows:
        from rich.table import Table

        table = Table(box=None, header_style="bold", pad_edge=False)
        for column in ("HOST", "IMAGE", "API", "SIZE", "WHY"):
            table.add_column(column, no_wrap=column != "WHY")
        for row in rows:
            table.add_row(*row)
        render.show(table)
    freed = sum(item.size_bytes or 0 for item in pruned.removed)
    summary = f"{verb} {len(pruned.removed)} image(s), {freed / 2**20:.0f} MiB; kept {pruned.kept}"
    if pruned.errors:
        summary += f"; {len(pruned.errors)} host(s) did not answer"
    render.ok(summary)
    for host, error in pruned.errors.items():
        render.warn(Text.assemble(render.plain(host), ": ", render.plain(error)))
