"""How the CLI shows things: tables, progress while waiting, errors with their fix."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from typing import Any

from rich.console import Console
from rich.table import Table

from workbench.models import ReplicaInfo, ReplicaState

#: Data goes to stdout; progress and messages go to stderr so `--json | jq` works.
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

_STATE_STYLE = {
    ReplicaState.READY: "green",
    ReplicaState.STARTING: "yellow",
    ReplicaState.FAILED: "red",
    ReplicaState.STOPPING: "yellow",
    ReplicaState.STOPPED: "dim",
}


def say(message: str) -> None:
    err.print(f"[dim]•[/dim] {message}", markup=True, highlight=False)


def fail(message: str, detail: list[str] | None = None) -> None:
    err.print(f"[bold red]error:[/bold red] {message}", markup=True, highlight=False, soft_wrap=True)
    if detail:
        err.print("\n".join(f"  │ {line}" for line in detail), markup=False, highlight=False)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def api_status(replicas: list[ReplicaInfo]) -> str:
    counts = Counter(r.state for r in replicas)
    if not replicas:
        return "no replicas"
    if counts[ReplicaState.READY] == len(replicas):
        return "live"
    if counts[ReplicaState.FAILED]:
        return "error"
    if counts[ReplicaState.READY]:
        return "updating"
    return "starting"


def summarize(replicas: list[ReplicaInfo]) -> list[dict[str, Any]]:
    """One row per API, in the order first seen."""
    by_api: dict[str, list[ReplicaInfo]] = {}
    for replica in replicas:
        by_api.setdefault(replica.api, []).append(replica)
    rows = []
    for api, items in by_api.items():
        ready = [r for r in items if r.state == ReplicaState.READY]
        rows.append({
            "name": api,
            "status": api_status(items),
            "ready": len(ready),
            "replicas": len(items),
            "runtime": items[0].runtime,
            "artifact": items[0].artifact,
            "urls": [r.url for r in ready if r.url],
            "restarts": sum(r.restarts for r in items),
            "since": min(r.created_at for r in items),
        })
    return rows


def _age(since: float | None) -> str:
    if since is None:
        return "-"
    seconds = max(int(time.time() - since), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def apis_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("NAME", "STATUS", "READY", "RUNTIME", "RESTARTS", "AGE", "ENDPOINT"):
        table.add_column(column)
    for row in rows:
        style = {"live": "green", "error": "red"}.get(row["status"], "yellow")
        table.add_row(row["name"], f"[{style}]{row['status']}[/{style}]",
                      f"{row['ready']}/{row['replicas']}", row["runtime"], str(row["restarts"]),
                      _age(row["since"]), row["urls"][0] if row["urls"] else "-")
    return table


def replicas_table(replicas: list[ReplicaInfo]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("REPLICA", "STATE", "RESTARTS", "AGE", "URL", "MESSAGE"):
        table.add_column(column)
    for replica in replicas:
        style = _STATE_STYLE.get(replica.state, "white")
        table.add_row(replica.id, f"[{style}]{replica.state.value}[/{style}]",
                      str(replica.restarts), _age(replica.created_at), replica.url or "-",
                      replica.message or "")
    return table
