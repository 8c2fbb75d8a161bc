"""`workbench host …`: add a box over SSH, list, show, remove and upgrade hosts."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from pydantic import ValidationError

from workbench.cli import render
from workbench.cli.connect import call, controller
from workbench.cli.options import FlagsCommand, FlagsGroup, JsonOption, OutputOption
from workbench.clients.control import ControlClient
from workbench.spec.models import parse_bytes
from workbench.wire.agent import GpuReport
from workbench.wire.control import (
    DEFAULT_IDLE_AFTER,
    DEFAULT_UTIL_THRESHOLD,
    AddHostRequest,
    HostBody,
    HostEvent,
    HostSettingsRequest,
    IdleRuleRequest,
)
from workbench.wire.errors import WorkbenchError
from workbench.wire.units import format_duration, parse_currency, parse_duration, parse_price, parse_threshold
from workbench.wire.validation import in_words

host_app = typer.Typer(help="The machines replicas run on: this one and boxes over SSH.",
                       no_args_is_help=True, cls=FlagsGroup)
#: `host add`'s arguments as its user knows them, in its errors
ADD_NAMES = {"name": "NAME", "target": "TARGET", "port": "--port", "token": "--token-file",
             "ca_cert": "--ca-cert", "identity": "--identity", "jump": "--jump", "trust": "--trust",
             "price": "--price", "currency": "--currency"}
ADD_HINTS = {"name": "lowercase letters, digits and '-', starting with a letter, at most 63"}
PriceOption = Annotated[str | None, typer.Option("--price", help="what it costs per hour, e.g. 2.40")]
CurrencyOption = Annotated[str | None, typer.Option("--currency", help="of the price (default USD)")]
V = TypeVar("V")


def parsed(parse: Callable[[str], V], value: str, flag: str) -> V:
    """`value` read by one of workbench.wire.units' parsers; bad input exits 2 saying why."""
    try:
        return parse(value)
    except ValueError as error:
        render.fail(f"{flag}: {error}")
        raise typer.Exit(2) from None
CacheLimitOption = Annotated[str | None, typer.Option(
    "--cache-limit", help="the most its model cache may hold, e.g. 500Gi (`none`: the disk's size); "
                          "models no replica uses are evicted, least recently used first")]


def cache_limit(value: str | None, *, clearable: bool) -> int | None:
    """--cache-limit as bytes (0: no limit); bad input exits 2 saying why."""
    if value is None:
        return None
    if clearable and value.strip().lower() in ("none", "off", "0"):
        return 0
    try:
        limit = parse_bytes(value.strip())
    except ValueError as error:
        render.fail(f"--cache-limit: {error}")
        raise typer.Exit(2) from None
    if not isinstance(limit, int) or limit < 2**20:
        render.fail(f"--cache-limit: {value!r} is too small for a model cache; give e.g. 500Gi"
                    + (" (or none)" if clearable else ""))
        raise typer.Exit(2)
    return limit


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


def _preflight_table(event: HostEvent) -> None:
    from workbench.remote.preflight import Check
    from workbench.remote.preflight import render as render_checks

    checks = [Check(str(c.get("name", "")), c.get("status", "warn"), str(c.get("detail", "")),
                    str(c.get("fix", ""))) for c in event.checks]
    render.err.print(render_checks(checks))


def _follow(events: Iterable[HostEvent], shown: list[HostEvent]) -> HostEvent | None:
    """Show a host stream's events (steps on stderr); return its last (done/error) event."""
    last: HostEvent | None = None
    with render.err.status("working…") as status:
        for event in events:
            shown.append(event)
            last = event
            if event.kind == "step":
                text = f"{event.step}: {event.message}" if event.message else str(event.step)
                status.update(render.plain(text[:110]))
                render.say(text)
            elif event.kind == "preflight":
                status.stop()
                _preflight_table(event)
                status.start()
            elif event.kind == "log":
                render.say(event.message)
    return last


def _run_stream(stream: Iterable[HostEvent]) -> tuple[HostEvent | None, list[HostEvent]]:
    shown: list[HostEvent] = []
    try:
        return _follow(stream, shown), shown
    except WorkbenchError as error:
        render.fail(str(error))
        raise typer.Exit(1) from None


def _show(host: HostBody | None, as_json: bool) -> None:
    if host is None:
        return
    if as_json:
        render.print_json(host.model_dump(mode="json"))
    else:
        render.show(render.hosts_table([host]))


@host_app.command("add", cls=FlagsCommand)
def add(
    name: Annotated[str, typer.Argument(help="a short name for the box (lowercase, digits, -)")],
    target: Annotated[str, typer.Argument(help="[user@]host[:port], or a Host alias from ~/.ssh/config; "
                                          "with --direct: HOST:PORT or http(s)://HOST:PORT")],
    identity: Annotated[str | None, typer.Option("-i", "--identity", help="private key file")] = None,
    jump: Annotated[str | None, typer.Option("--jump", help="jump host ([user@]host[:port])")] = None,
    trust: Annotated[str | None, typer.Option("--trust", help="SHA256:… fingerprint you checked")] = None,
    online: Annotated[bool, typer.Option("--online", help="let the box install from its own index")] = False,
    direct: Annotated[bool, typer.Option("--direct", help="reach the agent over TCP (LAN/VPN)")] = False,
    port: Annotated[int | None, typer.Option("--port", min=1, max=65535, help="agent port")] = None,
    token_file: Annotated[str | None, typer.Option(
        "--token-file", help="--direct: file holding the agent's token (never pass it on the command line)",
    )] = None,
    ca_cert: Annotated[str | None, typer.Option(
        "--ca-cert", help="--direct: PEM certificate (or its CA) the agent serves over TLS",
    )] = None,
    price: PriceOption = None,
    currency: CurrencyOption = None,
    cache_limit_text: CacheLimitOption = None,
    as_json: JsonOption = False,
) -> None:
    """Connect (host key verified), preflight, install the agent, and add the box to the fleet.

    With --direct (LAN/VPN): reach an agent the box already runs (`python -m workbench.agent serve
    --direct --bind ADDR`) over TCP with its token, TLS when --ca-cert is given; nothing over SSH.
    With --price: what the box costs per hour (`workbench cost` adds it up)."""
    render.json_errors(as_json)
    token: str | None = None
    hourly = parsed(parse_price, price, "--price") if price is not None else None
    code = parsed(parse_currency, currency, "--currency") if currency is not None else None
    if code is not None and hourly is None:
        render.fail("--currency goes with --price (e.g. --price 2.40 --currency EUR)")
        raise typer.Exit(2)
    limit = cache_limit(cache_limit_text, clearable=False)
    if (token_file is not None or ca_cert is not None) and not direct:
        render.fail("--token-file and --ca-cert go with --direct")
        raise typer.Exit(2)
    if direct:
        if token_file is None:
            render.fail("--direct needs --token-file FILE (the `token` of the box's agent config.json)")
            raise typer.Exit(2)
        try:
            token = Path(token_file).expanduser().read_text().strip()
        except OSError as error:
            render.fail(f"cannot read the token file {token_file}: {error.strerror or error}")
            raise typer.Exit(2) from None
        if ca_cert is not None:
            ca_cert = str(Path(ca_cert).expanduser().resolve())
    try:  # checked before anything starts
        request = AddHostRequest(name=name, target=target, identity=identity, jump=jump, trust=trust,
                                 online=online, direct=direct, port=port, token=token, ca_cert=ca_cert,
                                 price=hourly, currency=code, cache_limit=limit)
    except ValidationError as error:
        render.fail(in_words(error, ADD_NAMES, ADD_HINTS))
        raise typer.Exit(2) from None
    client = controller()
    while True:
        request = request.model_copy(update={"trust": trust})
        last, shown = _run_stream(client.add_host(request))
        asked = next((e for e in shown if e.kind == "trust_required"), None)
        if asked is not None and trust is None:
            render.err.print(render.plain(f"The authenticity of host {target} can't be established.\n"
                                          f"{asked.key_type} key fingerprint is {asked.fingerprint}."))
            if _interactive() and typer.confirm("Trust this host key?", default=False, err=True):
                trust = asked.fingerprint
                continue
            render.fail(f"host key not trusted; after checking it, re-run with --trust {asked.fingerprint}")
            raise typer.Exit(1)
        break
    if last is None or last.kind != "done":
        render.fail(last.message if last else "the controller ended the stream without an answer")
        raise typer.Exit(1)
    if not as_json:
        render.err.print(render.plain(f"✓ {last.message}"), soft_wrap=True)
    _show(last.result, as_json)


@host_app.command("list", cls=FlagsCommand)
def list_hosts(output: OutputOption = None, as_json: JsonOption = False) -> None:
    """List the fleet's hosts with their state and capacity."""
    render.json_errors(as_json)
    found = call(controller(start=False).hosts)
    if as_json:
        render.print_json([h.model_dump(mode="json") for h in found])
    else:
        render.show(render.hosts_table(found, output or "table"))


@host_app.command("show", cls=FlagsCommand)
def show(
    name: str,
    as_json: JsonOption = False,
    history: Annotated[bool, typer.Option("--history", help="with --json: include ~10 min of GPU history")]
    = False,
) -> None:
    """One host: state, last seen, agent version, capacity, and its GPUs live (which replica
    uses which GPU)."""
    render.json_errors(as_json)
    client = controller(start=False)
    host = call(client.host, name)
    gpus: GpuReport | None = None
    gpu_error: str | None = None
    if host.state != "unreachable":
        try:
            gpus = client.gpus(name, history=history)
        except WorkbenchError as error:
            gpu_error = str(error)
    if as_json:
        data = host.model_dump(mode="json")
        data["gpu_report"] = gpus.model_dump(mode="json") if gpus else None
        if gpu_error:
            data["gpu_error"] = gpu_error
        render.print_json(data)
        return
    render.show(render.hosts_table([host]))
    render.out.print(render.plain(f"kind: {host.kind}   agent: {host.agent_version or 'N/A'}"
                                  + (f"\nmessage: {host.message}" if host.message else "")), soft_wrap=True)
    if gpus is not None:
        render.out.print()
        render.show(render.gpus_view(name, gpus))
    elif gpu_error:
        render.out.print(render.plain(f"GPUs: N/A ({gpu_error})"), soft_wrap=True)


@host_app.command("remove", cls=FlagsCommand)
def remove(
    name: str,
    purge: Annotated[bool, typer.Option("--purge", help="also delete ~/.workbench on the box")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
    as_json: JsonOption = False,
) -> None:
    """Move the host's replicas elsewhere, stop its agent and remove it from the fleet."""
    render.json_errors(as_json)
    client: ControlClient = controller(start=False)
    if not yes:
        if not _interactive():
            render.fail(f"removing {name} needs confirmation: pass --yes")
            raise typer.Exit(1)
        if not typer.confirm(f"Remove host {name}{' and purge its files' if purge else ''}?", err=True):
            raise typer.Exit(1)
    with render.err.status(render.plain(f"draining {name}…")):
        body = call(client.remove_host, name, purge=purge)
    if as_json:
        render.print_json(body.model_dump(mode="json"))
    else:
        render.out.print(render.plain(f"removed {name}: {body.moved_replicas} replica(s) moved, "
                                      f"{body.deleted_replicas} stopped" + (", files purged" if body.purged
                                                                            else "")))


@host_app.command("upgrade", cls=FlagsCommand)
def upgrade(name: str, as_json: JsonOption = False) -> None:
    """Replace the box's agent with the workstation's version."""
    render.json_errors(as_json)
    last, _ = _run_stream(controller(start=False).upgrade_host(name))
    if last is None or last.kind != "done":
        render.fail(last.message if last else "the controller ended the stream without an answer")
        raise typer.Exit(1)
    if not as_json:
        render.err.print(render.plain(f"✓ {last.message}"), soft_wrap=True)
    _show(last.result, as_json)


@host_app.command("set", cls=FlagsCommand)
def set_host(
    name: str,
    price: PriceOption = None,
    currency: CurrencyOption = None,
    cache_limit_text: CacheLimitOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change a host's settings: what it costs per hour (the local machine counts as free until it
    has a price) and the size limit of its model cache."""
    render.json_errors(as_json)
    limit = cache_limit(cache_limit_text, clearable=True)
    if price is None and currency is None and limit is None:
        render.fail("nothing to set: give --price (e.g. --price 2.40) and/or --currency, "
                    "or --cache-limit (e.g. --cache-limit 500Gi, or none)")
        raise typer.Exit(2)
    request = HostSettingsRequest(price=parsed(parse_price, price, "--price") if price is not None else None,
                                  currency=parsed(parse_currency, currency, "--currency")
                                  if currency is not None else None, cache_limit=limit)
    host = call(controller(start=False).set_host, name, request)
    if as_json:
        render.print_json(host.model_dump(mode="json"))
        return
    if price is not None or currency is not None:
        render.out.print(f"{name} costs {render.price(host)}")
    if limit is not None:
        shown = "none (the disk's size)" if limit == 0 else f"{limit / 2**30:.1f} GiB"
        render.out.print(f"{name}: model cache limit {shown}")


@host_app.command("idle", cls=FlagsCommand)
def idle(
    name: str,
    after: Annotated[str | None, typer.Option(
        "--after", help="idle this long first: 30m (default), 1h, 90s")] = None,
    util_threshold: Annotated[str | None, typer.Option(
        "--util-threshold", help="a GPU counts as busy at or above this utilization, in % (default 5)")]
    = None,
    run: Annotated[str | None, typer.Option(
        "--run", help="a command run on this machine once per idle period, e.g. 'vastai stop instance 42' "
                      "(the host's name and address are in $WORKBENCH_HOST_NAME, $WORKBENCH_HOST_ADDRESS)")]
    = None,
    remove: Annotated[bool, typer.Option("--remove", help="drain and remove the host first")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="say what would happen; change nothing")] = False,
    off: Annotated[bool, typer.Option("--off", help="delete the host's idle rule")] = False,
    as_json: JsonOption = False,
) -> None:
    """What happens when a host sits idle: no request reached its replicas and every GPU stayed
    below --util-threshold for --after. Without options: show the host's rule."""
    render.json_errors(as_json)
    client = controller(start=False)
    if off:
        if any(v is not None for v in (after, util_threshold, run)) or remove or dry_run:
            render.fail("--off deletes the rule; it takes no other option")
            raise typer.Exit(2)
        call(client.delete_idle_rule, name)
        if as_json:
            render.print_json({"host": name, "removed": True})
        else:
            render.out.print(f"{name}: idle rule deleted (it is still flagged when idle for "
                             f"{format_duration(DEFAULT_IDLE_AFTER)})")
        return
    if after is None and util_threshold is None and run is None and not remove and not dry_run:
        host = call(client.host, name)
        if as_json:
            render.print_json(host.idle_rule.model_dump(mode="json") if host.idle_rule else None)
            return
        render.out.print(render.idle_rule(host))
        return
    request = IdleRuleRequest(
        after=parsed(parse_duration, after, "--after") if after is not None else DEFAULT_IDLE_AFTER,
        util_threshold=parsed(parse_threshold, util_threshold, "--util-threshold")
        if util_threshold is not None else DEFAULT_UTIL_THRESHOLD,
        command=run, cwd=os.getcwd() if run is not None else None, remove=remove, dry_run=dry_run)
    plan = call(client.set_idle_rule, name, request)
    if as_json:
        render.print_json(plan.model_dump(mode="json"))
        return
    render.out.print(("[bold]dry run[/bold] — nothing was changed. " if dry_run else "")
                     + f"idle rule for {name}" + (" (saved):" if plan.saved else ":"))
    for step in plan.steps:
        render.out.print(render.plain(f"  • {step}"), soft_wrap=True)  # a --run command is text
