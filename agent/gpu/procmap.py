"""Map host PIDs on a GPU to our replicas.

Docker replicas: /proc/<pid>/cgroup names the container (a 64-hex id, cgroup v1 or v2, docker
or containerd naming); it is ours when one of our replicas has that container id. Process
replicas: the replica's own PID, or any process in its session/process group (the runtime
starts each replica with start_new_session, so workers it forks stay in that session), or a
descendant of it.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

_CONTAINER_ID = re.compile(r"(?<![0-9a-f])([0-9a-f]{64})(?![0-9a-f])")


@dataclass(frozen=True)
class ReplicaRef:
    replica_id: str
    api: str
    pid: int | None = None
    container_id: str | None = None


@dataclass(frozen=True)
class Owner:
    replica_id: str | None = None
    api: str | None = None
    container_id: str | None = None


def container_of(pid: int, proc: Path = Path("/proc")) -> str | None:
    """The container id in /proc/<pid>/cgroup, or None (not containerised, or gone)."""
    try:
        text = (proc / str(pid) / "cgroup").read_text()
    except OSError:
        return None
    found = _CONTAINER_ID.findall(text)
    return found[-1] if found else None


def _session_ids(pid: int) -> set[int]:
    ids: set[int] = set()
    for fn in (os.getsid, os.getpgid):
        with contextlib.suppress(OSError):
            ids.add(fn(pid))
    return ids


def _ancestors(pid: int) -> set[int]:
    try:
        return {p.pid for p in psutil.Process(pid).parents()}
    except psutil.Error:
        return set()


class ProcMap:
    """Built once per report from the agent's replicas; `owner(pid)` resolves one GPU process."""

    def __init__(self, replicas: Iterable[ReplicaRef], proc: Path = Path("/proc")) -> None:
        self.proc = proc
        self.by_pid: dict[int, ReplicaRef] = {}
        self.by_container: dict[str, ReplicaRef] = {}
        for r in replicas:
            if r.pid:
                self.by_pid[r.pid] = r
            if r.container_id:
                self.by_container[r.container_id] = r

    def owner(self, pid: int) -> Owner:
        cid = container_of(pid, self.proc)
        if cid is not None:
            r = self.by_container.get(cid)
            return Owner(r.replica_id if r else None, r.api if r else None, cid)
        r = self.by_pid.get(pid)
        if r is None:
            for candidate in _session_ids(pid) | _ancestors(pid):
                if candidate in self.by_pid:
                    r = self.by_pid[candidate]
                    break
        return Owner(r.replica_id, r.api, None) if r else Owner()
