"""The idle watcher on a scripted timeline (an injected clock), with real commands run on this
machine: flagged after `after` with an event, not while requests flow or a GPU is busy, not while
unreachable; the command runs once per idle period with the host's name and address in its
environment (never through a shell), its exit status and last line in an event; a failing or
vanished command is not retried before the next period; bad rules are refused."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from workbench.controller.events import Events
from workbench.controller.idle import ENV_ADDRESS, ENV_IDLE_SECONDS, ENV_NAME, IdleWatcher, check_rule
from workbench.controller.state import IdleRuleRecord, Store
from workbench.wire.errors import BadRequest

#: appends one JSON line per run (its argv and the host's variables); exits with argv[2] after
#: printing two lines, the last one "last words <code>"
SCRIPT = f'''#!{sys.executable}
import json, os, sys
with open(sys.argv[1], "a") as marker:
    marker.write(json.dumps({{"argv": sys.argv[1:], "name": os.environ.get("{ENV_NAME}"),
                             "address": os.environ.get("{ENV_ADDRESS}"),
                             "idle": os.environ.get("{ENV_IDLE_SECONDS}"), "cwd": os.getcwd()}}) + "\\n")
print("first words")
print("last words", sys.argv[2])
sys.exit(int(sys.argv[2]))
'''


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = Store(tmp_path / "state.db")
    try:
        yield db
    finally:
        db.close()


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "on-idle"
    path.write_text(SCRIPT)
    path.chmod(0o755)
    return path


def runs(marker: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in marker.read_text().splitlines()] if marker.exists() else []


def idle_events(store: Store) -> list[str]:
    return [e.message for e in store.events(None, 1000) if e.kind == "idle"]


def quiet_ticks(watcher: IdleWatcher, start: float, end: float, **flags: Any) -> None:
    """One observation a second from `start` to `end`, nothing happening (unless `flags` say)."""
    options = {"reachable": True, "active": False, "has_gpus": False, "address": "me@box.example:22"}
    options.update(flags)
    at = start
    while at <= end:
        watcher.observe(at, "box", **options)
        at += 1.0


def with_rule(store: Store, **fields: Any) -> IdleWatcher:
    values = {"after_seconds": 30.0, "util_threshold": 5.0, **fields}
    store.put_idle_rule(IdleRuleRecord(host="box", **values))
    return IdleWatcher(store, Events(store))


async def test_flagged_idle_after_the_quiet_period_and_back_when_used(store: Store) -> None:
    watcher = IdleWatcher(store, Events(store))  # no rule: the defaults (30 minutes, 5 %)
    quiet_ticks(watcher, 0, 1799)
    assert watcher.state("box") == (0, False)
    quiet_ticks(watcher, 1800, 1805)
    assert watcher.state("box") == (0, True)
    [flagged] = idle_events(store)
    assert "host box is idle" in flagged and "below 5%" in flagged and "30m" in flagged
    watcher.observe(1806, "box", reachable=True, active=True, has_gpus=False, address="a")
    assert watcher.state("box") == (1806, False)
    assert "host box is no longer idle: it is in use again" in idle_events(store)[-1]


async def test_requests_busy_gpus_and_unreachable_keep_a_host_from_idling(store: Store) -> None:
    watcher = with_rule(store, after_seconds=30.0)
    # requests flow: never idle
    quiet_ticks(watcher, 0, 100, active=True)
    assert not watcher.state("box")[1]
    # GPUs not read yet: not idle, however quiet
    quiet_ticks(watcher, 101, 200, has_gpus=True)
    assert not watcher.state("box")[1]
    # a GPU at/above the threshold every read: not idle
    for at in range(201, 300, 5):
        watcher.gpus_read("box", float(at), busy=True)
        quiet_ticks(watcher, at, at + 4, has_gpus=True)
    assert not watcher.state("box")[1]
    # GPUs quiet: idle 30 s after the last busy read, judged on what was read (not on the clock)
    watcher.gpus_read("box", 310.0, busy=False)
    quiet_ticks(watcher, 300, 400, has_gpus=True)
    assert not watcher.state("box")[1]  # read up to 310 only: 310 - 296 < 30
    watcher.gpus_read("box", 330.0, busy=False)
    quiet_ticks(watcher, 401, 402, has_gpus=True)
    assert watcher.state("box") == (296.0, True)
    # unreachable: not idle, and the quiet time starts again when it is back
    quiet_ticks(watcher, 403, 403, reachable=False)
    assert watcher.state("box") == (403, False)
    quiet_ticks(watcher, 404, 430)
    assert not watcher.state("box")[1]
    quiet_ticks(watcher, 431, 434)
    assert watcher.state("box") == (403, True)


async def test_the_command_runs_once_per_idle_period(store: Store, script: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    watcher = with_rule(store, command=f"{script} {marker} 0", cwd=str(tmp_path))
    quiet_ticks(watcher, 0, 120)  # idle from 30 s on: one run, however long it stays idle
    await watcher.wait()
    [run] = runs(marker)
    assert run == {"argv": [str(marker), "0"], "name": "box", "address": "me@box.example:22", "idle": "30",
                   "cwd": str(tmp_path)}
    assert idle_events(store)[-1] == "the idle command for box exited 0: last words 0"
    [event] = [e for e in store.events(None, 100) if "exited" in e.message]
    assert event.data["exit_status"] == 0 and event.data["last_line"] == "last words 0"
    assert event.data["argv"] == [str(script), str(marker), "0"]
    # activity ends the period; the next one runs it again, once
    quiet_ticks(watcher, 121, 121, active=True)
    quiet_ticks(watcher, 122, 300)
    await watcher.wait()
    assert len(runs(marker)) == 2


async def test_a_failing_command_is_retried_only_in_the_next_idle_period(store: Store, script: Path,
                                                                       tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    watcher = with_rule(store, command=f"{script} {marker} 3")
    for start in range(0, 600, 60):  # ten minutes idle, observed in slices: no retry storm
        quiet_ticks(watcher, start, start + 59)
        await watcher.wait()
    assert len(runs(marker)) == 1
    failed = [m for m in idle_events(store) if "exited" in m]
    assert failed == ["the idle command for box exited 3 (not retried before its next idle period): "
                      "last words 3"]
    quiet_ticks(watcher, 600, 600, reachable=False)  # the period ends (the box went away, came back)
    quiet_ticks(watcher, 601, 700)
    await watcher.wait()
    assert len(runs(marker)) == 2


async def test_a_command_that_no_longer_exists_is_an_event_not_a_storm(store: Store, script: Path,
                                                                     tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    watcher = with_rule(store, command=f"{script} {marker} 0")
    script.unlink()  # it was there when the rule was set
    quiet_ticks(watcher, 0, 300)
    await watcher.wait()
    [failed] = [m for m in idle_events(store) if "could not start" in m]
    assert str(script) in failed and "No such file" in failed and "next idle period" in failed
    assert not marker.exists()


async def test_host_data_never_reaches_a_shell(store: Store, script: Path, tmp_path: Path) -> None:
    marker, pwned = tmp_path / "marker", tmp_path / "pwned"
    watcher = with_rule(store, command=f"{script} '{marker}' 0")
    address = f"box.example; touch {pwned} $(touch {pwned})"
    quiet_ticks(watcher, 0, 60, address=address)
    await watcher.wait()
    [run] = runs(marker)
    assert run["address"] == address and not pwned.exists()


def test_bad_rules_are_refused_with_what_to_fix(script: Path, tmp_path: Path) -> None:
    def refused(removable: bool = True, **fields: Any) -> str:
        rule = IdleRuleRecord(host="box", after_seconds=60, util_threshold=5, **fields)
        with pytest.raises(BadRequest) as error:
            check_rule(rule, removable=removable)
        return str(error.value)

    assert "not a program" in refused(command="no-such-program-anywhere --now")
    assert "not a program" in refused(command=f"{tmp_path / 'missing.sh'}")
    (tmp_path / "plain.txt").write_text("not executable")
    assert "not executable" in refused(command=str(tmp_path / "plain.txt"))
    assert "No closing quotation" in refused(command=f"{script} 'unbalanced")
    assert "the command is empty" in refused(command="   ")
    assert "cannot be removed" in refused(removable=False, remove=True)
    assert "does not exist" in refused(command=str(script), cwd=str(tmp_path / "nowhere"))
    ok = IdleRuleRecord(host="box", after_seconds=60, util_threshold=5, command=f"{script.name} a 'b c'",
                        cwd=str(tmp_path))
    with pytest.raises(BadRequest):  # a bare name is looked up on PATH, not in the folder
        check_rule(ok, removable=True)
    relative = IdleRuleRecord(host="box", after_seconds=60, util_threshold=5,
                              command=f"./{script.name} 'b c'", cwd=str(tmp_path))
    assert check_rule(relative, removable=True) == [f"./{script.name}", "b c"]
