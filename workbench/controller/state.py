"""The controller's single source of truth: one SQLite file (WAL) of hosts, APIs, history, events."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from workbench.spec.models import ApiSpec, TrafficSplitterSpec

SCHEMA = """
CREATE TABLE IF NOT EXISTS hosts (
    name TEXT PRIMARY KEY,
    address TEXT NOT NULL,
    state TEXT NOT NULL,
    last_seen REAL,
    info TEXT,
    message TEXT
);
CREATE TABLE IF NOT EXISTS remote_hosts (
    name TEXT PRIMARY KEY,
    target TEXT NOT NULL,            -- [user@]host[:port] or an ~/.ssh/config alias
    identity TEXT,                   -- private key path (-i); never the key itself
    jump TEXT,
    kind TEXT NOT NULL,              -- ssh | direct
    agent_port INTEGER,
    agent_version TEXT,              -- the agent's token is NOT stored: it is read over SSH at connect
    added_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS apis (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,              -- api | traffic_splitter
    spec TEXT NOT NULL,              -- desired spec (JSON)
    project_dir TEXT,
    runtime TEXT,
    artifact TEXT,
    image_hash TEXT,
    spec_hash TEXT,                  -- identity of an up-to-date replica
    desired_replicas INTEGER NOT NULL DEFAULT 0,
    version INTEGER NOT NULL,        -- history row this desired state came from
    rollout_from INTEGER,            -- version rolled out from (0: first deploy); NULL: settled
    message TEXT,                    -- why the API is pending / in error
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS api_history (
    api TEXT NOT NULL,
    version INTEGER NOT NULL,
    record TEXT NOT NULL,            -- the apis row as deployed (JSON)
    deployed_at REAL NOT NULL,
    PRIMARY KEY (api, version)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    api TEXT,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS events_api ON events (api, id);
"""

Kind = Literal["api", "traffic_splitter"]


@dataclass(frozen=True)
class ApiRecord:
    """One API's (or splitter's) desired state."""

    name: str
    kind: Kind
    spec: dict[str, Any]
    project_dir: str | None = None
    runtime: str | None = None
    artifact: str | None = None
    image_hash: str | None = None
    spec_hash: str | None = None
    desired_replicas: int = 0
    version: int = 0
    rollout_from: int | None = None
    message: str | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)

    def api_spec(self) -> ApiSpec:
        return ApiSpec.model_validate(self.spec)

    def splitter_spec(self) -> TrafficSplitterSpec:
        return TrafficSplitterSpec.model_validate(self.spec)

    def evolve(self, **changes: Any) -> ApiRecord:
        return replace(self, **changes)


@dataclass(frozen=True)
class HostRecord:
    name: str
    address: str
    state: str
    last_seen: float | None = None
    info: dict[str, Any] | None = None
    message: str | None = None


@dataclass(frozen=True)
class RemoteRecord:
    """A registered box: how to reach it (the agent token is re-read over SSH, never stored)."""

    name: str
    target: str
    identity: str | None = None
    jump: str | None = None
    kind: str = "ssh"
    agent_port: int | None = None
    agent_version: str | None = None
    added_at: float = field(default_factory=time.time)


_REMOTE_COLUMNS = ("name", "target", "identity", "jump", "kind", "agent_port", "agent_version", "added_at")


@dataclass(frozen=True)
class EventRecord:
    id: int
    at: float
    api: str | None
    kind: str
    message: str
    data: dict[str, Any]


_API_COLUMNS = ("name", "kind", "spec", "project_dir", "runtime", "artifact", "image_hash", "spec_hash",
                "desired_replicas", "version", "rollout_from", "message", "created_at", "updated_at")


def _api_from_row(row: sqlite3.Row) -> ApiRecord:
    values = dict(row)
    values["spec"] = json.loads(values["spec"])
    return ApiRecord(**values)


def _api_to_row(record: ApiRecord) -> tuple[Any, ...]:
    values = {**record.__dict__, "spec": json.dumps(record.spec, sort_keys=True)}
    return tuple(values[column] for column in _API_COLUMNS)


class Store:
    """Thread-safe access to state.db; every call is one short transaction."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._db.execute(sql, args).fetchall())

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        with self._lock:
            cursor = self._db.execute(sql, args)
            return int(cursor.lastrowid or 0)

    # -- hosts -------------------------------------------------------------------------------
    def put_host(self, host: HostRecord) -> None:
        self._run("INSERT OR REPLACE INTO hosts VALUES (?, ?, ?, ?, ?, ?)",
                  (host.name, host.address, host.state, host.last_seen,
                   json.dumps(host.info) if host.info is not None else None, host.message))

    def hosts(self) -> list[HostRecord]:
        rows = self._all("SELECT * FROM hosts ORDER BY name")
        return [HostRecord(name=r["name"], address=r["address"], state=r["state"], last_seen=r["last_seen"],
                           info=json.loads(r["info"]) if r["info"] else None, message=r["message"])
                for r in rows]

    def delete_host(self, name: str) -> None:
        self._run("DELETE FROM hosts WHERE name = ?", (name,))

    # -- registered remote hosts ---------------------------------------------------------------
    def put_remote(self, record: RemoteRecord) -> None:
        marks = ", ".join("?" * len(_REMOTE_COLUMNS))
        self._run(f"INSERT OR REPLACE INTO remote_hosts ({', '.join(_REMOTE_COLUMNS)}) VALUES ({marks})",
                  tuple(getattr(record, column) for column in _REMOTE_COLUMNS))

    def remote_hosts(self) -> list[RemoteRecord]:
        return [RemoteRecord(**dict(r)) for r in self._all("SELECT * FROM remote_hosts ORDER BY name")]

    def get_remote(self, name: str) -> RemoteRecord | None:
        rows = self._all("SELECT * FROM remote_hosts WHERE name = ?", (name,))
        return RemoteRecord(**dict(rows[0])) if rows else None

    def delete_remote(self, name: str) -> None:
        self._run("DELETE FROM remote_hosts WHERE name = ?", (name,))

    # -- apis --------------------------------------------------------------------------------
    def put_api(self, record: ApiRecord) -> None:
        marks = ", ".join("?" * len(_API_COLUMNS))
        self._run(f"INSERT OR REPLACE INTO apis ({', '.join(_API_COLUMNS)}) VALUES ({marks})",
                  _api_to_row(record))

    def get_api(self, name: str) -> ApiRecord | None:
        rows = self._all("SELECT * FROM apis WHERE name = ?", (name,))
        return _api_from_row(rows[0]) if rows else None

    def apis(self) -> list[ApiRecord]:
        return [_api_from_row(r) for r in self._all("SELECT * FROM apis ORDER BY name")]

    def delete_api(self, name: str) -> None:
        self._run("DELETE FROM apis WHERE name = ?", (name,))

    # -- history -----------------------------------------------------------------------------
    def next_version(self, name: str) -> int:
        rows = self._all("SELECT MAX(version) AS v FROM api_history WHERE api = ?", (name,))
        return int(rows[0]["v"] or 0) + 1

    def add_history(self, record: ApiRecord) -> None:
        body = dict(zip(_API_COLUMNS, _api_to_row(record), strict=True))
        self._run("INSERT OR REPLACE INTO api_history VALUES (?, ?, ?, ?)",
                  (record.name, record.version, json.dumps(body), time.time()))

    def recent_artifacts(self, name: str, count: int) -> list[str]:
        """The artifacts of `name`'s last `count` versions that had one, newest first."""
        found: list[str] = []
        for row in self._all("SELECT record FROM api_history WHERE api = ? ORDER BY version DESC", (name,)):
            artifact = json.loads(row["record"]).get("artifact")
            if artifact and artifact not in found:
                found.append(artifact)
                if len(found) == count:
                    break
        return found

    def history(self, name: str, version: int) -> ApiRecord | None:
        rows = self._all("SELECT record FROM api_history WHERE api = ? AND version = ?", (name, version))
        if not rows:
            return None
        values = json.loads(rows[0]["record"])
        values["spec"] = json.loads(values["spec"])
        return ApiRecord(**values)

    def versions(self, name: str) -> list[int]:
        return [int(r["version"]) for r in
                self._all("SELECT version FROM api_history WHERE api = ? ORDER BY version", (name,))]

    # -- events ------------------------------------------------------------------------------
    def add_event(self, at: float, api: str | None, kind: str, message: str, data: dict[str, Any]) -> int:
        return self._run("INSERT INTO events (at, api, kind, message, data) VALUES (?, ?, ?, ?, ?)",
                         (at, api, kind, message, json.dumps(data, default=str)))

    def events(self, api: str | None = None, limit: int = 100,
               since: float | None = None) -> list[EventRecord]:
        """The last `limit` events (of `api`; at or after `since`), oldest first."""
        where: list[str] = []
        args: list[Any] = []
        if api is not None:
            where.append("api = ?")
            args.append(api)
        if since is not None:
            where.append("at >= ?")
            args.append(since)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        rows = self._all(f"SELECT * FROM events {clause}ORDER BY id DESC LIMIT ?", (*args, limit))
        return [EventRecord(id=r["id"], at=r["at"], api=r["api"], kind=r["kind"], message=r["message"],
                            data=json.loads(r["data"])) for r in reversed(rows)]
