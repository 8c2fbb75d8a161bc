"""Which GPUs the agent has pinned to which replicas, and whether a new request may have them.

A GPU given to a replica is its alone, unless every replica on it asked for fractional
sharing (`gpu_share`) and the shares add up to at most one whole GPU.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

EPSILON = 1e-9


@dataclass(frozen=True)
class Allocation:
    replica_id: str
    gpu_ids: tuple[str, ...]
    share: float | None  # None: whole GPUs

    @property
    def amount(self) -> float:
        return 1.0 if self.share is None else self.share


def by_gpu(allocations: Iterable[Allocation]) -> dict[str, list[Allocation]]:
    table: dict[str, list[Allocation]] = {}
    for a in allocations:
        for gpu in a.gpu_ids:
            table.setdefault(gpu, []).append(a)
    return table


def conflict(wanted: Allocation, existing: Iterable[Allocation]) -> str | None:
    """Why `wanted` cannot have its GPUs, or None when it can."""
    if len(set(wanted.gpu_ids)) != len(wanted.gpu_ids):
        return f"gpu_ids {list(wanted.gpu_ids)} name a GPU twice"
    table = by_gpu(a for a in existing if a.replica_id != wanted.replica_id)
    for gpu in wanted.gpu_ids:
        holders = table.get(gpu, [])
        if not holders:
            continue
        names = ", ".join(h.replica_id for h in holders)
        if wanted.share is None or any(h.share is None for h in holders):
            return (f"GPU {gpu} is already allocated to replica {names}; a GPU is shared only when "
                    "every replica on it asks for a fraction (compute.gpu below 1)")
        total = wanted.amount + sum(h.amount for h in holders)
        if total > 1 + EPSILON:
            return f"GPU {gpu} is already shared by replica {names}: {total:g} of 1 GPU would be allocated"
    return None


def resolve(gpu_id: str, indices: dict[int, str | None]) -> int | None:
    """The GPU index `gpu_id` names (an index or a UUID), or None when no such GPU exists."""
    if gpu_id.isdigit() and int(gpu_id) in indices:
        return int(gpu_id)
    for index, uuid in indices.items():
        if uuid is not None and uuid == gpu_id:
            return index
    return None
