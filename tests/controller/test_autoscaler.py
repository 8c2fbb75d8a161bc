"""The autoscaler against a fake clock: samples once a second, one recommendation per second."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import pytest

from workbench.controller.autoscaler import Autoscaler, Decision
from workbench.spec.models import AutoscalingSpec

Load = Callable[[float], float]


def spec(**overrides: Any) -> AutoscalingSpec:
    return AutoscalingSpec(**overrides)


def simulate(
    scaler: Autoscaler, load: Load, *, current: int, end: float, start: float = 0.0, step: float = 1.0,
) -> list[tuple[float, Decision]]:
    """Feed `load(t)` each `step` and apply every decision, as the controller does."""
    ticks: list[tuple[float, Decision]] = []
    t = start
    while t <= end:
        scaler.record(load(t), t)
        decision = scaler.recommend(current, t)
        ticks.append((t, decision))
        current = decision.desired
        t += step
    return ticks


def changes(ticks: list[tuple[float, Decision]]) -> list[tuple[float, int, int]]:
    return [(t, d.current, d.desired) for t, d in ticks if d.changed]


def constant(value: float) -> Load:
    return lambda t: value


def step_load(before: float, after: float, at: float) -> Load:
    return lambda t: before if t < at else after


# -- steady state --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "in_flight", "target"),
    [(1, 1.0, 1.0), (4, 4.0, 1.0), (3, 6.0, 2.0), (10, 10.4, 1.0), (10, 9.6, 1.0)],
)
def test_steady_load_at_target_never_changes(current: int, in_flight: float, target: float) -> None:
    scaler = Autoscaler(spec(target_concurrency=target))
    ticks = simulate(scaler, constant(in_flight), current=current, end=900)
    assert changes(ticks) == []
    assert ticks[-1][1].desired == current


def test_not_enough_samples_holds() -> None:
    scaler = Autoscaler(spec(upscale_stabilization_period=0), min_history=5)
    scaler.record(50, 0.0)
    decision = scaler.recommend(1, 1.0)
    assert not decision.changed
    assert "only 1 s of samples (need 5 s)" in decision.reason
    assert decision.raw_recommendation is None
    empty = Autoscaler(spec()).recommend(2, 0.0)
    assert (empty.desired, empty.avg_in_flight) == (2, None)
    assert "no in-flight samples" in empty.reason


def test_samples_older_than_the_window_are_ignored() -> None:
    scaler = Autoscaler(spec(window=10, upscale_stabilization_period=0, downscale_stabilization_period=0))
    for t in range(0, 30):
        scaler.record(100 if t < 10 else 2, float(t))
    decision = scaler.recommend(2, 29.0)
    assert decision.avg_in_flight == 2
    assert decision.inputs["samples"] == 10


# -- scaling up ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("upscale_period", "expected_steps"),
    [
        # no stabilization: one factor per tick, 2 → 3 → 5 → 6
        (0.0, [(2, 3), (3, 5), (5, 6)]),
        # 60 s: same steps, each one only after a minute of higher recommendations
        (60.0, [(2, 3), (3, 5), (5, 6)]),
    ],
)
def test_step_up_is_capped_by_max_upscale_factor_then_grows_in_steps(
    upscale_period: float, expected_steps: list[tuple[int, int]]
) -> None:
    scaler = Autoscaler(
        spec(window=1, upscale_stabilization_period=upscale_period, max_upscale_factor=1.5),
    )
    ticks = simulate(scaler, step_load(2, 6, at=100), current=2, end=500)
    steps = changes(ticks)
    assert [(old, new) for _, old, new in steps] == expected_steps
    assert steps[0][0] >= 100 + upscale_period
    for (t1, _, _), (t2, _, _) in itertools.pairwise(steps):
        assert t2 - t1 >= max(upscale_period, 1)
    first = next(d for _, d in ticks if d.changed)
    assert first.raw_recommendation == 6
    assert "capped by max_upscale_factor 1.5 → 3" in first.reason


def test_upscale_always_allows_one_more_replica() -> None:
    scaler = Autoscaler(spec(window=1, upscale_stabilization_period=0, max_upscale_factor=1.1))
    ticks = simulate(scaler, constant(5), current=1, end=10)
    assert [(old, new) for _, old, new in changes(ticks)][:3] == [(1, 2), (2, 3), (3, 4)]


def test_upscale_stabilization_ignores_a_short_spike() -> None:
    load = lambda t: 20.0 if 100 <= t < 130 else 1.0  # noqa: E731
    scaler = Autoscaler(spec(window=10, upscale_stabilization_period=60))
    ticks = simulate(scaler, load, current=1, end=400)
    assert changes(ticks) == []
    during = next(d for t, d in ticks if t == 125)
    assert during.inputs["recommendation"] == 2  # it wanted more
    assert "lowest recommendation over the last 60 s is 1" in during.reason


def test_no_upscale_during_the_first_stabilization_period() -> None:
    scaler = Autoscaler(spec(window=1, upscale_stabilization_period=30))
    ticks = simulate(scaler, constant(10), current=1, end=40)
    first_change = changes(ticks)[0]
    assert first_change[0] == 30
    early = ticks[10][1]
    assert "no upscale in the first 30 s" in early.reason


# -- scaling down --------------------------------------------------------------------------


def test_downscale_waits_for_the_period_and_takes_the_highest_recommendation() -> None:
    load = lambda t: 10.0 if t < 400 else (6.0 if t < 500 else 1.0)  # noqa: E731
    scaler = Autoscaler(
        spec(window=1, min_replicas=1, downscale_stabilization_period=300, max_downscale_factor=0.1),
    )
    ticks = simulate(scaler, load, current=10, end=1000)
    # The last recommendation of 10 was at t=399: it holds until t=699, then the highest
    # recommendation left in the period is 6 (t=400..499); when those age out, 1.
    assert changes(ticks) == [(700.0, 10, 6), (800.0, 6, 1)]
    at_700 = next(d for t, d in ticks if t == 700)
    assert at_700.inputs["downscale_stabilization_floor"] == 6
    assert "highest recommendation over the last 300 s is 6" in at_700.reason


def test_downscale_is_capped_by_max_downscale_factor() -> None:
    scaler = Autoscaler(spec(window=1, downscale_stabilization_period=0, max_downscale_factor=0.5))
    ticks = simulate(scaler, constant(1), current=16, end=10)
    assert [(old, new) for _, old, new in changes(ticks)] == [(16, 8), (8, 4), (4, 2), (2, 1)]
    first = next(d for _, d in ticks if d.changed)
    assert "capped by max_downscale_factor 0.5 → 8" in first.reason


def test_no_downscale_during_the_first_stabilization_period() -> None:
    scaler = Autoscaler(spec(window=1, downscale_stabilization_period=120))
    ticks = simulate(scaler, constant(1), current=4, end=200)
    assert changes(ticks)[0][0] == 120
    assert "no downscale in the first 120 s" in ticks[50][1].reason


# -- tolerance -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "avg", "expected", "in_band"),
    [
        (20, 20.5, 20, True),  # ceil 21, but within +5 %
        (20, 21.5, 22, False),  # beyond +5 %
        (40, 38.5, 40, True),  # ceil 39, but within -5 %
        (40, 37.5, 38, False),  # beyond -5 %
        (20, 19.2, 20, False),  # ceil is 20 anyway
    ],
)
def test_tolerance_band(current: int, avg: float, expected: int, in_band: bool) -> None:
    scaler = Autoscaler(
        spec(window=1, upscale_stabilization_period=0, downscale_stabilization_period=0),
    )
    for t in range(6):
        scaler.record(avg, float(t))
    decision = scaler.recommend(current, 5.0)
    assert decision.desired == expected
    assert ("within tolerance" in decision.reason) is in_band


def test_wider_tolerance_holds_more() -> None:
    scaler = Autoscaler(
        spec(window=1, upscale_stabilization_period=0, upscale_tolerance=0.5),
    )
    ticks = simulate(scaler, constant(14), current=10, end=20)
    assert changes(ticks) == []


# -- bounds --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bounds", "load", "current", "expected"),
    [
        ({"min_replicas": 1, "max_replicas": 4}, 100.0, 1, 4),
        ({"min_replicas": 3, "max_replicas": 10}, 0.0, 8, 3),
        ({"min_replicas": 2, "max_replicas": 2}, 50.0, 2, 2),
        ({"min_replicas": 0, "max_replicas": 5}, 3.0, 3, 3),
    ],
)
def test_min_max_clamps(bounds: dict[str, int], load: float, current: int, expected: int) -> None:
    scaler = Autoscaler(spec(window=1, upscale_stabilization_period=0, downscale_stabilization_period=0,
                             **bounds))
    ticks = simulate(scaler, constant(load), current=current, end=60)
    assert ticks[-1][1].desired == expected
    desired = [d.desired for _, d in ticks]
    assert min(desired) >= bounds["min_replicas"]
    assert max(desired) <= bounds["max_replicas"]


def test_new_bounds_apply_at_once_despite_stabilization() -> None:
    scaler = Autoscaler(spec(window=1, max_replicas=10))
    simulate(scaler, constant(8), current=8, end=30)
    scaler.reconfigure(spec(window=1, max_replicas=5))
    lowered = scaler.recommend(8, 31.0)
    assert (lowered.desired, lowered.changed) == (5, True)
    assert "max_replicas 5" in lowered.reason
    scaler.reconfigure(spec(window=1, min_replicas=7, max_replicas=10))
    raised = scaler.recommend(5, 32.0)
    assert raised.desired == 7
    assert "min_replicas 7" in raised.reason


def test_below_min_replicas_is_raised_even_before_samples() -> None:
    decision = Autoscaler(spec(min_replicas=2)).recommend(0, 0.0)
    assert (decision.desired, decision.changed) == (2, True)
    assert "below min_replicas 2" in decision.reason


def test_target_defaults_to_the_constructor_argument() -> None:
    scaler = Autoscaler(spec(window=1, upscale_stabilization_period=0), default_target_concurrency=4)
    assert scaler.target_concurrency == 4
    ticks = simulate(scaler, constant(8), current=1, end=10)
    assert ticks[-1][1].desired == 2
    assert Autoscaler(spec(target_concurrency=3), default_target_concurrency=4).target_concurrency == 3


# -- zero ----------------------------------------------------------------------------------


def test_scale_from_zero_on_a_waiting_request_is_immediate() -> None:
    scaler = Autoscaler(spec(min_replicas=0, upscale_stabilization_period=600))
    scaler.record(0, 0.0)
    assert scaler.recommend(0, 0.0).desired == 0
    scaler.record(1, 0.5)
    decision = scaler.recommend(0, 1.0)
    assert (decision.desired, decision.changed) == (1, True)
    assert decision.reason.startswith("request waiting")
    assert "scale from zero" in decision.reason
    assert decision.inputs["woken"] is True


def test_a_request_between_ticks_counts_as_waiting() -> None:
    scaler = Autoscaler(spec(min_replicas=0))
    scaler.recommend(0, 0.0)
    scaler.record(2, 0.3)
    scaler.record(0, 0.6)
    assert scaler.recommend(0, 1.0).desired == 1


def test_wake_scales_from_zero_without_samples() -> None:
    scaler = Autoscaler(spec(min_replicas=0, max_replicas=3))
    scaler.wake()
    decision = scaler.recommend(0, 0.0)
    assert decision.desired == 1
    assert "woken by the router" in decision.reason
    # consumed: the next tick with nothing in flight does not wake it again
    assert scaler.recommend(0, 1.0).desired == 0


def test_after_a_wake_the_api_keeps_a_replica_for_the_downscale_period() -> None:
    scaler = Autoscaler(spec(min_replicas=0, window=1, downscale_stabilization_period=30))
    scaler.recommend(0, -100.0)  # running for a while, so no start-up hold
    for t in range(-100, 0):
        scaler.record(0, float(t))  # idle all along
    scaler.wake()
    assert scaler.recommend(0, 0.0).desired == 1
    ticks = simulate(scaler, constant(0), current=1, end=120, start=1.0)
    assert changes(ticks) == [(30.0, 1, 0)]
    held = next(d for t, d in ticks if t == 20)
    assert "not to zero: woken 20 s ago" in held.reason


def test_scale_to_zero_only_after_the_downscale_period_with_nothing_in_flight() -> None:
    load = step_load(1, 0, at=100)
    scaler = Autoscaler(spec(min_replicas=0, window=60, downscale_stabilization_period=300))
    ticks = simulate(scaler, load, current=1, end=1000)
    steps = changes(ticks)
    assert len(steps) == 1
    t_zero, old, new = steps[0]
    assert (old, new) == (1, 0)
    assert t_zero - 99 >= 300  # the last request in flight was at t=99
    assert t_zero <= 99 + 60 + 300 + 1  # window to average down, then the period


def test_scale_to_zero_waits_for_a_full_period_of_idle_samples() -> None:
    # A short window and a controller that only just started sampling: recommendations of 0
    # alone must not take the API to zero before a whole period of zero in-flight.
    scaler = Autoscaler(spec(min_replicas=0, window=1, downscale_stabilization_period=20))
    scaler.recommend(1, 0.0)  # started before the first sample
    ticks = simulate(scaler, constant(0), current=1, start=10.0, end=60)
    assert changes(ticks)[0][0] >= 30
    held = next(d for t, d in ticks if t == 25)
    assert "not to zero" in held.reason


def test_never_to_zero_with_min_replicas() -> None:
    scaler = Autoscaler(spec(min_replicas=1, window=1, downscale_stabilization_period=0))
    ticks = simulate(scaler, constant(0), current=3, end=100)
    assert ticks[-1][1].desired == 1
    assert min(d.desired for _, d in ticks) == 1


# -- decisions carry their reasons ---------------------------------------------------------


def test_reason_and_inputs_are_filled() -> None:
    scaler = Autoscaler(spec(target_concurrency=2, upscale_stabilization_period=0, window=60))
    for t in range(60):
        scaler.record(7.3, float(t))
    decision = scaler.recommend(2, 59.0)
    assert decision.reason == (
        "avg in-flight 7.3 over 60 s / target 2 → 4; capped by max_upscale_factor 1.5 → 3"
    )
    assert (decision.current, decision.desired, decision.raw_recommendation) == (2, 3, 4)
    assert decision.avg_in_flight == pytest.approx(7.3)
    for key in (
        "current", "now", "target_concurrency", "window", "samples", "avg_in_flight", "raw",
        "raw_recommendation", "min_replicas", "max_replicas", "downscale_tolerance",
        "upscale_tolerance", "max_downscale_factor", "max_upscale_factor",
        "downscale_factor_floor", "upscale_factor_ceil", "recommendation",
        "downscale_stabilization_period", "upscale_stabilization_period",
        "upscale_stabilization_ceil", "desired",
    ):
        assert key in decision.inputs, key
    assert decision.inputs["upscale_factor_ceil"] == 3
    assert decision.inputs["samples"] == 60


def test_no_change_says_so() -> None:
    scaler = Autoscaler(spec(window=1))
    ticks = simulate(scaler, constant(2), current=2, end=10)
    assert ticks[-1][1].reason == "avg in-flight 2 over 1 s / target 1 → 2; no change from 2"
    assert ticks[-1][1].changed is False


def test_decision_is_frozen() -> None:
    decision = Autoscaler(spec()).recommend(1, 0.0)
    with pytest.raises(AttributeError):
        decision.desired = 5  # type: ignore[misc]


# -- garbage -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [-1, -0.5, math.nan, math.inf, True, "3", None])
def test_bad_samples_are_rejected(value: Any) -> None:
    with pytest.raises(ValueError):
        Autoscaler(spec()).record(value, 0.0)


@pytest.mark.parametrize("now", [math.nan, math.inf, "0", None])
def test_bad_times_are_rejected(now: Any) -> None:
    scaler = Autoscaler(spec())
    with pytest.raises(ValueError):
        scaler.record(1, now)
    with pytest.raises(ValueError):
        scaler.recommend(1, now)


def test_time_going_backwards_is_rejected() -> None:
    scaler = Autoscaler(spec())
    scaler.record(1, 10.0)
    with pytest.raises(ValueError, match="monotonic"):
        scaler.record(1, 9.0)
    scaler.recommend(1, 10.0)
    with pytest.raises(ValueError, match="monotonic"):
        scaler.recommend(1, 5.0)


@pytest.mark.parametrize("current", [-1, 1.5, True, "2"])
def test_bad_current_is_rejected(current: Any) -> None:
    with pytest.raises(ValueError):
        Autoscaler(spec()).recommend(current, 0.0)


@pytest.mark.parametrize("target", [0, -1, math.nan])
def test_bad_default_target_is_rejected(target: float) -> None:
    with pytest.raises(ValueError):
        Autoscaler(spec(), default_target_concurrency=target)
