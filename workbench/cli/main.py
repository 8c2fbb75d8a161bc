"""The `workbench` command line: APIs (deploy, get, predict, logs, scale, delete) and the
machinery under them (serve, hosts, agent, image)."""

from __future__ import annotations

import contextlib
import sys
from typing import Annotated

import typer

from workbench import __version__
from workbench.cli import apis, render
from workbench.cli.connect import call, controller
from workbench.cli.cost import cost
from workbench.cli.hosts import host_app
from workbench.cli.images import image_app
from workbench.cli.models import model_app
from workbench.cli.options import FlagsCommand, FlagsGroup, JsonOption, OutputOption
from workbench.cli.times import parse_since
from workbench.clients.agent import AgentClient
from workbench.daemons import LaunchFailed
from workbench.local_agent import ensure_agent, running_agent, stop_agent
from workbench.wire.errors import WorkbenchError

app = typer.Typer(
    name="workbench",
    help="Deploy ML models as HTTP APIs on the GPU machines you already have. "
    "Without a command, opens the terminal UI.",
    invoke_without_command=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=FlagsGroup,
)
agent_app = typer.Typer(help="The agent on this machine (the controller starts it).", no_args_is_help=True,
                        cls=FlagsGroup)
controller_app = typer.Typer(help="The controller running in the background.", no_args_is_help=True,
                             cls=FlagsGroup)
app.add_typer(agent_app, name="agent")
app.add_typer(controller_app, name="controller")
app.add_typer(image_app, name="image")
app.add_typer(host_app, name="host")
app.add_typer(model_app, name="model")

for command in (apis.deploy, apis.get, apis.predict, apis.logs, apis.scale, apis.delete):
    app.command(cls=FlagsCommand)(command)
app.command("cost", cls=FlagsCommand)(cost)


def _version(value: bool) -> None:
    if value:
        print(f"workbench {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="print the version and exit")] = False,
) -> None:
    """workbench: a predictor.py, a workbench.yaml, `workbench deploy`, and an HTTP endpoint."""
    if ctx.invoked_subcommand is None:
        from workbench.cli.ui import has_terminal, run_ui

        if not has_terminal():  # `workbench </dev/null >file`: no escape codes into the file
            with contextlib.redirect_stdout(sys.stderr):  # Typer prints its help to stdout
                text = ctx.get_help()
            if text:
                sys.stderr.write(text + "\n")
            render.fail("the terminal UI needs a terminal (stdin and stdout); run a command instead, "
                        "e.g. `workbench get`")
            raise typer.Exit(2)
        run_ui(embedded_ok=True)


@app.command(cls=FlagsCommand)
def serve(
    host: Annotated[str, typer.Option(help="address to bind; anything but loopback requires API keys")] = (
        "127.0.0.1"),
    port: Annotated[int | None, typer.Option(help="port (default 8765, or $WORKBENCH_PORT)")] = None,
    usage_retention: Annotated[str | None, typer.Option(
        help="how long usage rollups (for `workbench cost`) are kept: 30d (default, or "
             "$WORKBENCH_USAGE_RETENTION), 90d, 12h")] = None,
) -> None:
    """Run the controller and router in the foreground (headless); Ctrl-C or SIGTERM drains."""
    from workbench.controller.daemon import serve as run_controller

    raise typer.Exit(run_controller(host, port, usage_retention))


@app.command(cls=FlagsCommand)
def web(
    host: Annotated[str, typer.Option(help="address to bind; anyone who can reach it controls the fleet")] = (
        "127.0.0.1"),
    port: Annotated[int, typer.Option(help="port")] = 8766,
    public_url: Annotated[str | None, typer.Option(
        help="the address browsers use (default http://HOST:PORT; this machine's name for 0.0.0.0)")] = None,
) -> None:
    """Serve the terminal UI in a browser (textual-serve); each browser tab runs its own copy."""
    import ipaddress
    import shlex
    import sys

    try:
        from workbench.cli.web import WebServer
    except ImportError:
        render.fail("textual-serve is not installed: pip install 'workbench[workstation]'")
        raise typer.Exit(1) from None
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        render.warn(f"serving on {host}: anyone who can reach http://{host}:{port}/ controls the fleet "
                    "(no login); prefer 127.0.0.1 and an SSH tunnel")
    if public_url is None and host in ("0.0.0.0", "::"):
        import socket

        public_url = f"http://{socket.getfqdn()}:{port}"  # the page loads its scripts from here
    # `python -m workbench` without a command is the terminal UI; textual-serve runs it per tab
    command = shlex.join([sys.executable, "-m", "workbench"])
    WebServer(command, host=host, port=port, title="workbench", public_url=public_url).serve()


@app.command(cls=FlagsCommand)
def hosts(output: OutputOption = None, as_json: JsonOption = False) -> None:
    """List the fleet's hosts (an alias of `workbench host list`)."""
    from workbench.cli.hosts import list_hosts

    list_hosts(output, as_json)


@app.command(cls=FlagsCommand)
def events(
    api: Annotated[str | None, typer.Option(help="only this API's events")] = None,
    since: Annotated[str | None, typer.Option(
        help="only events since then: 10m, 1h30m, 2d, or a time (2026-01-02T13:23:37Z)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="how many (the latest)")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Recent events: deploys, rollouts, scaling decisions with their inputs, failures."""
    render.json_errors(as_json)
    try:
        since_at = parse_since(since) if since is not None else None
    except ValueError as error:
        render.fail(str(error))
        raise typer.Exit(2) from None
    found = call(controller(start=False).events, api, limit, since_at)
    if as_json:
        render.print_json([e.model_dump(mode="json") for e in found])
    elif found:
        render.show(render.events_table(found))
    else:
        render.info("no events" + (" in that time" if since else ""))


@controller_app.command("status", cls=FlagsCommand)
def controller_status(as_json: JsonOption = False) -> None:
    """Whether a controller runs for this workbench home, and where."""
    from workbench.controller.launcher import running_controller

    render.json_errors(as_json)
    config = running_controller()
    if as_json:
        render.print_json({"running": config is not None, "url": config.url if config else None})
    else:
        render.out.print(render.plain(f"controller running on {config.url}" if config
                                      else "no controller running"))
    if config is None:
        raise typer.Exit(1)


@controller_app.command("stop", cls=FlagsCommand)
def controller_stop() -> None:
    """Stop the background controller (it drains first); replicas keep running."""
    from workbench.controller.launcher import stop_controller

    if not stop_controller():
        render.out.print("no controller was running")
        return
    serving = _agent_replicas()
    render.out.print("controller stopped" + (
        f"; the local agent still runs {serving} replica(s) (the router is down: start the controller "
        "again with `workbench serve`, or `workbench agent stop` to stop the agent)" if serving else ""),
        soft_wrap=True)


def _agent_replicas() -> int:
    """How many replicas the local agent runs (0 without an agent)."""
    config = running_agent()
    if config is None:
        return 0
    try:
        with AgentClient(config.url, config.token, timeout=5.0) as client:
            return sum(r.state.value not in ("stopping", "stopped") for r in client.replicas())
    except WorkbenchError:
        return 0


@agent_app.command("start", cls=FlagsCommand)
def agent_start() -> None:
    """Start the local agent in the background (the controller does this when needed)."""
    already = running_agent()
    try:
        config = ensure_agent(on_start=render.say) if already is None else already
    except LaunchFailed as error:
        render.fail(str(error))
        raise typer.Exit(1) from None
    render.out.print(render.plain(f"agent {'already ' if already else ''}running on {config.url}"))


@agent_app.command("stop", cls=FlagsCommand)
def agent_stop() -> None:
    """Stop the local agent; replicas keep serving and a new agent re-adopts them."""
    render.out.print("agent stopped" if stop_agent() else "no local agent was running")


@agent_app.command("status", cls=FlagsCommand)
def agent_status(as_json: JsonOption = False) -> None:
    """Whether the local agent runs, and what it sees of this host."""
    render.json_errors(as_json)
    config = running_agent()
    if config is None:
        if as_json:
            render.print_json({"running": False})
        else:
            render.out.print("agent not running (the controller starts it)")
        raise typer.Exit(1)
    with AgentClient(config.url, config.token) as client:
        try:
            host = client.host()
        except WorkbenchError as error:
            render.fail(str(error))
            raise typer.Exit(1) from None
    if as_json:
        render.print_json({"running": True, "url": config.url, "host": host.model_dump(mode="json")})
        return
    docker = (f"docker {host.docker.version}" if host.docker.available
              else f"no docker ({host.docker.error})")
    render.out.print(render.plain(
        f"agent {host.agent_version} on {config.url}: {host.hostname} {host.os}/{host.arch}, "
        f"{host.cpu_count} CPUs, {host.mem_available_bytes / 2**30:.1f}/{host.mem_total_bytes / 2**30:.1f} "
        f"GiB free, {docker}; runtimes: {', '.join(host.runtimes)}"), soft_wrap=True)


def run() -> None:
    """Console-script entry point."""
    app()
