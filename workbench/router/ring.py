"""Consistent hashing with bounded loads (Mirrokni, Thorup and Zadimoghaddam, 2018), as Vimeo's
and HAProxy's balancers: a key goes to the first replica clockwise from its hash on a ring of
virtual nodes, unless that replica already has its bound of requests in flight, ``ceil(c x (all in
flight + 1) / replicas)``; then to the next one on the ring. A replica joining or leaving moves
only the keys of its own arcs; no replica ever takes more than c x the average load.
"""

from __future__ import annotations

import math
from bisect import bisect
from collections.abc import Collection
from hashlib import blake2b

from .pool import EndpointState

VIRTUAL_NODES = 100  # per replica: with 4 replicas the largest arc is within ~15% of the mean


def key_hash(data: bytes) -> int:
    """64 bits of BLAKE2b: stable across processes (Python's own str hash is not)."""
    return int.from_bytes(blake2b(data, digest_size=8).digest(), "big")


class Ring:
    """The ring of one set of endpoints (rebuilt when the set changes: see `members`)."""

    __slots__ = ("_owners", "_points", "members")

    def __init__(self, members: list[EndpointState], vnodes: dict[str, list[int]]) -> None:
        """`vnodes`: the positions of each replica id's virtual nodes, kept across rebuilds."""
        self.members = members
        points: list[tuple[int, int]] = []
        for index, state in enumerate(members):
            positions = vnodes.get(state.replica_id)
            if positions is None:
                name = state.replica_bytes
                positions = vnodes[state.replica_id] = [key_hash(name + b"#%d" % i)
                                                       for i in range(VIRTUAL_NODES)]
            points.extend((p, index) for p in positions)
        points.sort()
        self._points = [p for p, _ in points]
        self._owners = [members[i] for _, i in points]

    def pick(self, key: int, load_factor: float, tried: Collection[EndpointState]) -> EndpointState | None:
        """The replica for `key`: the first clockwise with room under the bound and not in `tried`
        (None when every member was tried)."""
        members = self.members
        n = len(members)
        if n == 0:
            return None
        total = 0
        for state in members:
            total += state.in_flight
        bound = math.ceil(load_factor * (total + 1) / n)
        owners = self._owners
        size = len(owners)
        start = bisect(self._points, key)
        visited: set[int] = set()
        fallback: EndpointState | None = None
        for step in range(size):
            state = owners[(start + step) % size]
            if id(state) in visited:
                continue
            visited.add(id(state))
            if state not in tried:
                if state.in_flight < bound:
                    return state
                if fallback is None:
                    fallback = state
            if len(visited) == n:
                break
        return fallback  # (every untried member at its bound: can only be so when some were tried)
