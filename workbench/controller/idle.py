"""Idle hosts: flagged, and acted on once per idle period.

A host is idle when no request reached its replicas and every GPU stayed below the utilization
threshold (default 5 %) for `after` (default 30 minutes) — dstack's `idle_duration` and
`utilization_policy`, SkyPilot's `autostop`. Idle hosts are flagged (host list, the TUI) and an
event says so. A host with an idle rule (`workbench host idle NAME --after 30m --run CMD
[--remove]`) then has its action run once in that idle period: with `remove`, the host is drained
and removed first; the command runs on the workstation (the controller's machine) from the argv
that shlex made of the user's own command line — never a shell, never a string built from host
data; the host's name and address are in environment variables. Its exit status and last output
line go into an event. A command that fails, or cannot start, is not retried before the next idle
period (activity, then idle for `after` again).

Conservative on purpose, since the action may stop a box: an unreachable host, a host whose GPUs
were not read yet, and a host starting a replica are not idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import shutil
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.controller.events import Events
from workbench.controller.state import IdleRuleRecord, Store
from workbench.wire.control import DEFAULT_IDLE_AFTER, DEFAULT_UTIL_THRESHOLD, IdleRuleBody
from workbench.wire.errors import BadRequest
from workbench.wire.units import format_duration

log = logging.getLogger("workbench.controller.idle")

COMMAND_TIMEOUT_SECONDS = 600.0
OUTPUT_KEPT_BYTES = 64 * 1024
LAST_LINE_CHARS = 300
ENV_NAME = "WORKBENCH_HOST_NAME"
ENV_ADDRESS = "WORKBENCH_HOST_ADDRESS"
ENV_IDLE_SECONDS = "WORKBENCH_IDLE_SECONDS"


@dataclass
class Quiet:
    """What the watcher knows of one host's activity (controller clock)."""

    active_at: float  # the last activity seen (or when watching began)
    gpu_seen_at: float | None = None  # the GPUs were read up to here
    idle: bool = False
    period: int = 0  # idle periods begun
    acted_in: int = 0  # the period whose action ran


def split_command(command: str) -> list[str]:
    """The argv of the user's command line (shlex, POSIX rules); BadRequest when it cannot split."""
    try:
        argv = shlex.split(command)
    except ValueError as error:
        raise BadRequest(f"cannot read the command {command!r}: {error}; quote it as in a shell") from None
    if not argv:
        raise BadRequest("the command is empty; give the program to run, "
                         "e.g. --run 'vastai stop instance 42'")
    return argv


def find_program(argv0: str, cwd: str | None) -> str | None:
    """Where `argv0` runs from on this machine: a path (relative to `cwd`), or a name on PATH."""
    if "/" in argv0:
        path = Path(argv0).expanduser()
        if not path.is_absolute():
            path = Path(cwd or os.getcwd()) / path
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    return shutil.which(argv0)


def check_rule(rule: IdleRuleRecord, *, removable: bool) -> list[str]:
    """The rule's argv (empty without a command), or BadRequest saying what to fix."""
    if rule.remove and not removable:
        raise BadRequest(f"{rule.host} is this machine: it cannot be removed; drop --remove "
                         "(a --run command, e.g. a notification, still works)")
    if rule.command is None:
        return []
    argv = split_command(rule.command)
    if rule.cwd is not None and not Path(rule.cwd).is_dir():
        raise BadRequest(f"the folder {rule.cwd} does not exist on the controller's machine")
    if find_program(argv[0], rule.cwd) is None:
        where = "there" if "/" in argv[0] else "on PATH"
        raise BadRequest(f"{argv[0]!r} is not a program on the controller's machine (not found {where}, or "
                         "not executable); give its full path, or install it first")
    return argv


def rule_body(rule: IdleRuleRecord) -> IdleRuleBody:
    argv = shlex.split(rule.command) if rule.command else []
    return IdleRuleBody(host=rule.host, after_seconds=rule.after_seconds, util_threshold=rule.util_threshold,
                        command=rule.command, argv=argv, cwd=rule.cwd, remove=rule.remove,
                        created_at=rule.created_at)


def command_env(host: str, address: str, idle_seconds: float) -> dict[str, str]:
    """What is added to the command's environment (values, never spliced into a command line)."""
    return {ENV_NAME: host, ENV_ADDRESS: address, ENV_IDLE_SECONDS: str(int(idle_seconds))}


def last_line(output: bytes) -> str:
    lines = [line.strip() for line in output.decode("utf-8", "replace").splitlines() if line.strip()]
    text = lines[-1] if lines else ""
    return text if len(text) <= LAST_LINE_CHARS else text[: LAST_LINE_CHARS - 1] + "…"


class IdleWatcher:
    """Judges each host idle or not from what the fleet meter saw; runs idle rules' actions."""

    def __init__(self, store: Store, events: Events,
                 remove_host: Callable[[str], Awaitable[Any]] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.events = events
        self.remove_host = remove_host
        self.clock = clock
        self.quiet: dict[str, Quiet] = {}
        self.rules: dict[str, IdleRuleRecord] = store.idle_rules()
        self._actions: dict[str, asyncio.Task[None]] = {}

    # -- rules ----------------------------------------------------------------------------------
    def reload(self) -> None:
        """Read the rules again (they change through the control API and host removal)."""
        self.rules = self.store.idle_rules()

    def limits(self, host: str) -> tuple[float, float]:
        """(after seconds, utilization threshold %) for `host`: its rule's, else the defaults."""
        rule = self.rules.get(host)
        if rule is None:
            return DEFAULT_IDLE_AFTER, DEFAULT_UTIL_THRESHOLD
        return rule.after_seconds, rule.util_threshold

    def save(self, rule: IdleRuleRecord) -> None:
        self.store.put_idle_rule(rule)
        self.reload()
        what = []
        if rule.remove:
            what.append("drain and remove it")
        if rule.command:
            what.append(f"run {rule.command!r}")
        self.events.record("idle", f"idle rule for {rule.host}: after {format_duration(rule.after_seconds)} "
                           f"(GPUs below {rule.util_threshold:g}%)"
                           + (f", {' then '.join(what)}" if what else ", flag it only"),
                           data={"host": rule.host, "command": rule.command, "remove": rule.remove})

    def delete(self, host: str) -> bool:
        removed = self.store.delete_idle_rule(host)
        self.reload()
        if removed:
            self.events.record("idle", f"idle rule for {host} removed", data={"host": host})
        return removed

    def state(self, host: str) -> tuple[float | None, bool]:
        """(quiet since, idle) for `host`; (None, False) when it is not watched."""
        quiet = self.quiet.get(host)
        if quiet is None:
            return None, False
        return quiet.active_at, quiet.idle

    def idle_for(self, host: str, now: float | None = None, has_gpus: bool = False) -> float:
        quiet = self.quiet.get(host)
        if quiet is None:
            return 0.0
        now = self.clock() if now is None else now
        until = now
        if has_gpus:
            if quiet.gpu_seen_at is None:
                return 0.0
            until = min(now, quiet.gpu_seen_at)
        return max(until - quiet.active_at, 0.0)

    # -- what the meter saw ----------------------------------------------------------------------
    def gpus_read(self, host: str, at: float, busy: bool) -> None:
        """The host's GPUs were read at `at`; `busy`: a sample at or above its threshold."""
        quiet = self.quiet.setdefault(host, Quiet(active_at=at))
        quiet.gpu_seen_at = at
        if busy:
            quiet.active_at = max(quiet.active_at, at)

    def observe(self, now: float, host: str, *, reachable: bool, active: bool, has_gpus: bool,
                address: str) -> None:
        """One tick for one host: activity (requests, a replica starting) and reachability."""
        quiet = self.quiet.get(host)
        if quiet is None:
            quiet = self.quiet[host] = Quiet(active_at=now)
        if not reachable or active:
            quiet.active_at = now
            if not reachable:
                quiet.gpu_seen_at = None  # a fresh reading is needed once it is back
        after, threshold = self.limits(host)
        idle_for = self.idle_for(host, now, has_gpus)
        if not quiet.idle and reachable and idle_for >= after:
            quiet.idle = True
            quiet.period += 1
            self.events.record("idle", f"host {host} is idle: no request reached its replicas and every GPU "
                               f"stayed below {threshold:g}% for {format_duration(idle_for)}",
                               data={"host": host, "idle_seconds": round(idle_for)},
                               level=logging.WARNING)
        elif quiet.idle and (not reachable or idle_for < after):
            quiet.idle = False
            why = "it is unreachable" if not reachable else "it is in use again"
            self.events.record("idle", f"host {host} is no longer idle: {why}", data={"host": host})
        rule = self.rules.get(host)
        acts = rule is not None and bool(rule.command or rule.remove)
        if quiet.idle and acts and rule is not None and quiet.acted_in < quiet.period:
            quiet.acted_in = quiet.period
            self._start(rule, address, idle_for)

    def forget(self, host: str) -> None:
        self.quiet.pop(host, None)

    # -- actions -----------------------------------------------------------------------------------
    def _start(self, rule: IdleRuleRecord, address: str, idle_for: float) -> None:
        if rule.host in self._actions:
            return  # the last period's action is still running
        task = asyncio.ensure_future(self._act(rule, address, idle_for))
        self._actions[rule.host] = task
        task.add_done_callback(lambda _: self._actions.pop(rule.host, None))

    async def _act(self, rule: IdleRuleRecord, address: str, idle_for: float) -> None:
        host = rule.host
        try:
            if rule.remove and self.remove_host is not None:
                self.events.record("idle", f"host {host} idle for {format_duration(idle_for)}: draining and "
                                   "removing it", data={"host": host}, level=logging.WARNING)
                try:
                    await self.remove_host(host)
                except Exception as error:
                    self.events.record("idle", f"removing idle host {host} failed: {error}; "
                                       + ("its command was not run; " if rule.command else "")
                                       + "tried again in its next idle period",
                                       data={"host": host, "error": str(error)}, level=logging.WARNING)
                    return
            if rule.command:
                await self._run(rule, address, idle_for)
        except Exception:
            log.exception("the idle action for %s failed", host)

    async def _run(self, rule: IdleRuleRecord, address: str, idle_for: float) -> None:
        host = rule.host
        argv = split_command(rule.command or "")
        env = {**os.environ, **command_env(host, address, idle_for)}
        data: dict[str, Any] = {"host": host, "argv": argv}
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, cwd=rule.cwd or None, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        except OSError as error:
            self.events.record("idle", f"the idle command for {host} could not start: {argv[0]}: "
                               f"{error.strerror or error} (not retried before its next idle period)",
                               data={**data, "exit_status": None, "error": str(error)}, level=logging.WARNING)
            return
        output = bytearray()

        async def read() -> None:
            assert process.stdout is not None
            while chunk := await process.stdout.read(65536):
                output.extend(chunk)
                del output[:-OUTPUT_KEPT_BYTES]
            await process.wait()

        timed_out = False
        try:
            await asyncio.wait_for(read(), COMMAND_TIMEOUT_SECONDS)
        except TimeoutError:
            timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        code = process.returncode
        line = last_line(bytes(output))
        data.update(exit_status=code, last_line=line)
        if timed_out:
            text = (f"the idle command for {host} ran past {format_duration(COMMAND_TIMEOUT_SECONDS)} "
                    "and was killed")
        else:
            text = f"the idle command for {host} exited {code}"
        if code != 0:
            text += " (not retried before its next idle period)"
        self.events.record("idle", text + (f": {line}" if line else ""), data=data,
                           level=logging.INFO if code == 0 else logging.WARNING)

    async def wait(self) -> None:
        """Until the actions under way have finished."""
        while self._actions:
            await asyncio.gather(*self._actions.values(), return_exceptions=True)

    async def close(self) -> None:
        """Stop waiting for actions (a command under way finishes on its own)."""
        for task in list(self._actions.values()):
            task.cancel()
        for task in list(self._actions.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
