"""One reconcile step for one API (pure): create/delete to reach N up-to-date ready replicas.

A rolling update honours `update.max_surge` (replicas above N) and `update.max_unavailable`
(ready replicas below N), as Kubernetes Deployments do: new replicas start first, an old one is
removed only when enough replicas stay ready. During a rollout a new replica that fails stops it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from workbench.spec.models import UpdateSpec
from workbench.wire.agent import ReplicaState


@dataclass(frozen=True)
class ReplicaView:
    id: str
    host: str
    spec_hash: str
    state: ReplicaState
    created_at: float
    reachable: bool = True

    @property
    def ready(self) -> bool:
        return self.reachable and self.state == ReplicaState.READY


@dataclass
class Step:
    create: int = 0
    delete: list[ReplicaView] = field(default_factory=list)
    failed: ReplicaView | None = None  # a new replica that failed during a rollout
    settled: bool = False  # N up-to-date ready replicas and nothing else
    new_ready: int = 0
    new_total: int = 0
    old_total: int = 0

    def progress(self, desired: int) -> str:
        text = f"{self.new_ready}/{desired} new replicas ready"
        return text + (f", {self.old_total} old left" if self.old_total else "")


def budgets(update: UpdateSpec, desired: int) -> tuple[int, int]:
    """(max surge, max unavailable) as replica counts; never both 0."""
    surge = UpdateSpec.resolve(update.max_surge, desired, round_up=True)
    unavailable = UpdateSpec.resolve(update.max_unavailable, desired, round_up=False)
    if surge == 0 and unavailable == 0:
        surge = 1
    return surge, unavailable


def _removal_order(replica: ReplicaView) -> tuple[bool, bool, float]:
    # unreachable first, then not ready, then the newest
    return (replica.reachable, replica.ready, -replica.created_at)


def plan(replicas: list[ReplicaView], spec_hash: str, desired: int, update: UpdateSpec,
         *, rolling_out: bool) -> Step:
    new = [r for r in replicas if r.spec_hash == spec_hash]
    old = [r for r in replicas if r.spec_hash != spec_hash]
    step = Step(new_ready=sum(r.ready for r in new), new_total=len(new), old_total=len(old))
    if rolling_out:
        step.failed = next((r for r in new if r.state == ReplicaState.FAILED), None)
        if step.failed is not None:
            return step
    if not old:
        if len(new) < desired:
            step.create = desired - len(new)
        elif len(new) > desired:
            step.delete = sorted(new, key=_removal_order)[: len(new) - desired]
        step.settled = len(new) == desired and step.new_ready == desired
        return step
    surge, unavailable = budgets(update, desired)
    total = len(new) + len(old)
    step.create = max(0, min(desired - len(new), desired + surge - total))
    unready_old = [r for r in old if not r.ready]
    ready_old = sorted((r for r in old if r.ready), key=lambda r: r.created_at)
    removable = step.new_ready + len(ready_old) - (desired - unavailable)
    step.delete = unready_old + ready_old[: max(0, removable)]
    if len(new) > desired:
        step.delete += sorted(new, key=_removal_order)[: len(new) - desired]
    return step
