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
    updated_at REAL NOT NULL,
    models TEXT                      -- the model versions it mounts (JSON list), NULL: none
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
CREATE TABLE IF NOT EXISTS host_prices (
    host TEXT PRIMARY KEY,
    price_micros INTEGER NOT NULL,   -- per hour, in micro-units of the currency (exact)
    currency TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS idle_rules (
    host TEXT PRIMARY KEY,
    after_seconds REAL NOT NULL,
    util_threshold REAL NOT NULL,
    command TEXT,                    -- the user's command line (split with shlex when run)
    cwd TEXT,
    remove INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
-- per-minute rollups (workbench.controller.usage); times in milliseconds, shares in thousandths
CREATE TABLE IF NOT EXISTS usage_hosts (
    minute INTEGER NOT NULL,         -- Unix time of the minute's start, in minutes
    host TEXT NOT NULL,
    present_ms INTEGER NOT NULL DEFAULT 0,
    price_micros INTEGER,            -- per hour in that minute; NULL: not priced
    currency TEXT,
    gpu_count INTEGER NOT NULL DEFAULT 0,
    cpu_count INTEGER NOT NULL DEFAULT 0,
    mem_mib INTEGER NOT NULL DEFAULT 0,
    gpu_sampled_ms INTEGER NOT NULL DEFAULT 0,  -- summed over the host's GPUs
    gpu_busy_ms INTEGER NOT NULL DEFAULT 0,
    cpu_busy INTEGER,                -- milli-cores x ms, from the load average (NULL: unknown)
    requests INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (minute, host)
);
CREATE TABLE IF NOT EXISTS usage_apis (
    minute INTEGER NOT NULL,
    api TEXT NOT NULL,
    host TEXT NOT NULL,
    replica_ms INTEGER NOT NULL DEFAULT 0,
    gpu INTEGER NOT NULL DEFAULT 0,  -- thousandths of a GPU x ms reserved
    cpu INTEGER NOT NULL DEFAULT 0,  -- milli-cores x ms reserved
    mem INTEGER NOT NULL DEFAULT 0,  -- MiB x ms reserved
    requests INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (minute, api, host)
);
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
    #: the model versions this API version mounts, as resolved at its deploy (PlannedModel.to_json)
    models: list[dict[str, Any]] | None = None

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
class PriceRecord:
    """What a host costs per hour (micro-units: exact)."""

    host: str
    price_micros: int
    currency: str
    updated_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class IdleRuleRecord:
    """`workbench host idle NAME ...`: when the host counts as idle, and what then runs."""

    host: str
    after_seconds: float
    util_threshold: float
    command: str | None = None
    cwd: str | None = None
    remove: bool = False
    created_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class HostMinute:
    """One host's rollup for one minute (see the usage_hosts table); added to what is stored."""

    minute: int
    host: str
    present_ms: int = 0
    price_micros: int | None = None
    currency: str | None = None
    gpu_count: int = 0
    cpu_count: int = 0
    mem_mib: int = 0
    gpu_sampled_ms: int = 0
    gpu_busy_ms: int = 0
    cpu_busy: int | None = None
    requests: int = 0


@dataclass(frozen=True)
class ApiMinute:
    """One API's rollup on one host for one minute (see the usage_apis table)."""

    minute: int
    api: str
    host: str
    replica_ms: int = 0
    gpu: int = 0
    cpu: int = 0
    mem: int = 0
    requests: int = 0


_HOST_MINUTE = ("minute", "host", "present_ms", "price_micros", "currency", "gpu_count", "cpu_count",
                "mem_mib", "gpu_sampled_ms", "gpu_busy_ms", "cpu_busy", "requests")
_API_MINUTE = ("minute", "api", "host", "replica_ms", "gpu", "cpu", "mem", "requests")
#: a later write of the same minute adds its amounts; price and capacity are the latest seen
_HOST_MINUTE_UPSERT = (
    f"INSERT INTO usage_hosts ({', '.join(_HOST_MINUTE)}) VALUES ({', '.join('?' * len(_HOST_MINUTE))}) "
    "ON CONFLICT (minute, host) DO UPDATE SET present_ms = present_ms + excluded.present_ms, "
    "price_micros = CASE WHEN excluded.present_ms > 0 THEN excluded.price_micros ELSE price_micros END, "
    "currency = CASE WHEN excluded.present_ms > 0 THEN excluded.currency ELSE currency END, "
    "gpu_count = MAX(gpu_count, excluded.gpu_count), cpu_count = MAX(cpu_count, excluded.cpu_count), "
    "mem_mib = MAX(mem_mib, excluded.mem_mib), "
    "gpu_sampled_ms = gpu_sampled_ms + excluded.gpu_sampled_ms, "
    "gpu_busy_ms = gpu_busy_ms + excluded.gpu_busy_ms, "
    "cpu_busy = CASE WHEN cpu_busy IS NULL AND excluded.cpu_busy IS NULL THEN NULL "
    "ELSE IFNULL(cpu_busy, 0) + IFNULL(excluded.cpu_busy, 0) END, "
    "requests = requests + excluded.requests"
)
_API_MINUTE_UPSERT = (
    f"INSERT INTO usage_apis ({', '.join(_API_MINUTE)}) VALUES ({', '.join('?' * len(_API_MINUTE))}) "
    "ON CONFLICT (minute, api, host) DO UPDATE SET replica_ms = replica_ms + excluded.replica_ms, "
    "gpu = gpu + excluded.gpu, cpu = cpu + excluded.cpu, mem = mem + excluded.mem, "
    "requests = requests + excluded.requests"
)


@dataclass(frozen=True)
class EventRecord:
    id: int
    at: float
    api: str | None
    kind: str
    message: str
    data: dict[str, Any]


_API_COLUMNS = ("name", "kind", "spec", "project_dir", "runtime", "artifact", "image_hash", "spec_hash",
                "desired_replicas", "version", "rollout_from", "message", "created_at", "updated_at",
                "models")
#: columns added after the first release: (table, column, type), added to an older state.db on open
_ADDED_COLUMNS = (("apis", "models", "TEXT"),)


def _api_from_row(row: sqlite3.Row) -> ApiRecord:
    values = dict(row)
    values["spec"] = json.loads(values["spec"])
    values["models"] = json.loads(values["models"]) if values.get("models") else None
    return ApiRecord(**values)


def _api_to_row(record: ApiRecord) -> tuple[Any, ...]:
    values = {**record.__dict__, "spec": json.dumps(record.spec, sort_keys=True),
              "models": json.dumps(record.models, sort_keys=True) if record.models else None}
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
        for table, column, kind in _ADDED_COLUMNS:
            have = {row["name"] for row in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

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

    def _run_many(self, statements: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
        """Several statements in one transaction."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                for sql, rows in statements:
                    if rows:
                        self._db.executemany(sql, rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

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
        values["models"] = json.loads(values["models"]) if values.get("models") else None
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

    # -- prices ------------------------------------------------------------------------------
    def put_price(self, record: PriceRecord) -> None:
        self._run("INSERT OR REPLACE INTO host_prices VALUES (?, ?, ?, ?)",
                  (record.host, record.price_micros, record.currency, record.updated_at))

    def prices(self) -> dict[str, PriceRecord]:
        return {r["host"]: PriceRecord(**dict(r)) for r in self._all("SELECT * FROM host_prices")}

    def delete_price(self, host: str) -> None:
        self._run("DELETE FROM host_prices WHERE host = ?", (host,))

    # -- idle rules --------------------------------------------------------------------------
    def put_idle_rule(self, rule: IdleRuleRecord) -> None:
        self._run("INSERT OR REPLACE INTO idle_rules VALUES (?, ?, ?, ?, ?, ?, ?)",
                  (rule.host, rule.after_seconds, rule.util_threshold, rule.command, rule.cwd,
                   int(rule.remove), rule.created_at))

    def idle_rules(self) -> dict[str, IdleRuleRecord]:
        rows = self._all("SELECT * FROM idle_rules")
        return {r["host"]: IdleRuleRecord(**{**dict(r), "remove": bool(r["remove"])}) for r in rows}

    def delete_idle_rule(self, host: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM idle_rules WHERE host = ?", (host,)).rowcount > 0

    # -- usage rollups -----------------------------------------------------------------------
    def add_usage(self, hosts: list[HostMinute], apis: list[ApiMinute]) -> None:
        """Add per-minute amounts (a minute written twice adds up), in one transaction."""
        self._run_many([
            (_HOST_MINUTE_UPSERT, [tuple(getattr(h, c) for c in _HOST_MINUTE) for h in hosts]),
            (_API_MINUTE_UPSERT, [tuple(getattr(a, c) for c in _API_MINUTE) for a in apis]),
        ])

    def prune_usage(self, before_minute: int) -> None:
        """Forget the rollups of minutes before `before_minute` (the retention period)."""
        self._run_many([("DELETE FROM usage_hosts WHERE minute < ?", [(before_minute,)]),
                        ("DELETE FROM usage_apis WHERE minute < ?", [(before_minute,)])])

    def host_usage(self, since_minute: int, until_minute: int) -> list[sqlite3.Row]:
        """Host rollups summed per (host, price, currency, capacity) over [since, until)."""
        return self._all(
            "SELECT host, price_micros, currency, gpu_count, cpu_count, mem_mib, "
            "SUM(present_ms) AS present_ms, SUM(gpu_sampled_ms) AS gpu_sampled_ms, "
            "SUM(gpu_busy_ms) AS gpu_busy_ms, SUM(cpu_busy) AS cpu_busy, SUM(requests) AS requests "
            "FROM usage_hosts WHERE minute >= ? AND minute < ? "
            "GROUP BY host, price_micros, currency, gpu_count, cpu_count, mem_mib",
            (since_minute, until_minute))

    def api_usage(self, since_minute: int, until_minute: int) -> list[sqlite3.Row]:
        """API rollups summed per (api, host, the host's price and capacity that minute)."""
        return self._all(
            "SELECT a.api AS api, a.host AS host, h.price_micros AS price_micros, h.currency AS currency, "
            "IFNULL(h.gpu_count, 0) AS gpu_count, IFNULL(h.cpu_count, 0) AS cpu_count, "
            "IFNULL(h.mem_mib, 0) AS mem_mib, SUM(a.replica_ms) AS replica_ms, SUM(a.gpu) AS gpu, "
            "SUM(a.cpu) AS cpu, SUM(a.mem) AS mem, SUM(a.requests) AS requests "
            "FROM usage_apis a LEFT JOIN usage_hosts h ON h.minute = a.minute AND h.host = a.host "
            "WHERE a.minute >= ? AND a.minute < ? "
            "GROUP BY a.api, a.host, h.price_micros, h.currency, h.gpu_count, h.cpu_count, h.mem_mib",
            (since_minute, until_minute))
