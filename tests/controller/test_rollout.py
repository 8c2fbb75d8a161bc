"""rollout.plan: surge/unavailable budgets, failure detection, scaling without a rollout."""

from __future__ import annotations

from workbench.controller.rollout import ReplicaView, budgets, plan
from workbench.spec.models import UpdateSpec
from workbench.wire.agent import ReplicaState

READY, STARTING, FAILED = ReplicaState.READY, ReplicaState.STARTING, ReplicaState.FAILED


def view(i: int, spec_hash: str, state: ReplicaState = READY) -> ReplicaView:
    return ReplicaView(id=f"r{i}", host="local", spec_hash=spec_hash, state=state, created_at=float(i))


def test_budgets_round_surge_up_and_unavailable_down() -> None:
    assert budgets(UpdateSpec(), 1) == (1, 0)
    assert budgets(UpdateSpec(), 4) == (1, 1)
    assert budgets(UpdateSpec(max_surge=0, max_unavailable="10%"), 1) == (1, 0)


def test_rolling_update_starts_new_before_removing_old() -> None:
    old = [view(1, "a"), view(2, "a")]
    step = plan(old, "b", 2, UpdateSpec(), rolling_out=True)
    assert step.create == 1 and step.delete == []
    step = plan([*old, view(3, "b", STARTING)], "b", 2, UpdateSpec(), rolling_out=True)
    assert step.create == 0 and step.delete == []
    step = plan([*old, view(3, "b")], "b", 2, UpdateSpec(), rolling_out=True)
    assert [r.id for r in step.delete] == ["r1"]
    step = plan([view(2, "a"), view(3, "b"), view(4, "b")], "b", 2, UpdateSpec(), rolling_out=True)
    assert [r.id for r in step.delete] == ["r2"]
    step = plan([view(3, "b"), view(4, "b")], "b", 2, UpdateSpec(), rolling_out=True)
    assert step.settled and step.create == 0 and step.delete == []


def test_max_unavailable_allows_removing_before_replacing() -> None:
    old = [view(i, "a") for i in range(4)]
    step = plan(old, "b", 4, UpdateSpec(max_surge=0, max_unavailable=2), rolling_out=True)
    assert step.create == 0 and len(step.delete) == 2


def test_a_failed_new_replica_stops_the_rollout() -> None:
    step = plan([view(1, "a"), view(2, "b", FAILED)], "b", 1, UpdateSpec(), rolling_out=True)
    assert step.failed is not None and step.failed.id == "r2" and step.create == 0
    step = plan([view(1, "a"), view(2, "b", FAILED)], "b", 1, UpdateSpec(), rolling_out=False)
    assert step.failed is None


def test_scaling_without_rollout() -> None:
    assert plan([view(1, "a")], "a", 3, UpdateSpec(), rolling_out=False).create == 2
    step = plan([view(1, "a"), view(2, "a", STARTING), view(3, "a")], "a", 1, UpdateSpec(), rolling_out=False)
    assert [r.id for r in step.delete] == ["r2", "r3"]
    assert plan([], "a", 0, UpdateSpec(), rolling_out=True).settled
