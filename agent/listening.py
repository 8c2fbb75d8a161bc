"""Which TCP ports a replica's server listens on: a container's network namespace read from
/proc/<pid>/net/tcp{,6}, a process tree's sockets through psutil.

The supervisor asks while a container API's replica is not healthy yet, so that a server bound to
another port than the one the spec names is an error that names both, not a silent timeout."""

from __future__ import annotations

from pathlib import Path

import psutil

_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's "st" column


def parse_proc_net_tcp(text: str) -> set[int]:
    """The local ports of the LISTEN sockets in one /proc/net/tcp or tcp6 table."""
    ports: set[int] = set()
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != _LISTEN:
            continue
        _, _, port = fields[1].rpartition(":")
        try:
            ports.add(int(port, 16))
        except ValueError:
            continue
    return ports


def namespace_ports(pid: int, proc: Path = Path("/proc")) -> set[int] | None:
    """Ports listened on in the network namespace of `pid` (a container's init); None when that
    cannot be read (gone, or not allowed)."""
    ports: set[int] = set()
    read = False
    for table in ("tcp", "tcp6"):
        try:
            ports |= parse_proc_net_tcp((proc / str(pid) / "net" / table).read_text())
            read = True
        except OSError:
            continue
    return ports if read else None


def process_tree_ports(pid: int) -> set[int] | None:
    """Ports the process `pid` and its descendants listen on; None when it cannot be read."""
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    ports: set[int] = set()
    for process in tree:
        try:
            connections = process.net_connections(kind="tcp")
        except psutil.Error:
            continue
        ports |= {c.laddr.port for c in connections if c.status == psutil.CONN_LISTEN and c.laddr}
    return ports
