"""state.Store (SQLite, WAL), the lock and the home."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from workbench.controller.home import ControllerHome
from workbench.controller.lock import AlreadyRunning, ControllerLock
from workbench.controller.state import ApiRecord, HostRecord, Store


def test_apis_history_events_and_hosts_round_trip(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    record = ApiRecord(name="echo", kind="api", spec={"name": "echo", "replicas": 2}, spec_hash="h1",
                       desired_replicas=2, version=store.next_version("echo"), rollout_from=0)
    store.put_api(record)
    store.add_history(record)
    assert store.get_api("echo") == record
    assert store.next_version("echo") == 2
    assert store.history("echo", 1) == record
    store.add_event(1.0, "echo", "deploy", "v1", {"a": 1})
    assert [e.message for e in store.events("echo")] == ["v1"]
    store.put_host(HostRecord(name="local", address="http://x", state="ready", info={"k": 1}))
    assert store.hosts()[0].info == {"k": 1}
    store.delete_api("echo")
    assert store.apis() == []
    assert store._all("PRAGMA journal_mode")[0][0] == "wal"
    store.close()


def test_lock_refuses_a_second_holder_and_token_is_private(tmp_path: Path) -> None:
    home = ControllerHome(tmp_path / "controller")
    first = ControllerLock(home)
    first.acquire()
    home.write_info(pid=123, host="127.0.0.1", port=9999)
    with pytest.raises(AlreadyRunning, match=r"another controller is running \(pid \d+ on port 9999\)"):
        ControllerLock(home).acquire()
    first.release()
    ControllerLock(home).acquire()
    token = home.token()
    assert token == home.token() and stat.S_IMODE(home.token_file.stat().st_mode) == 0o600
