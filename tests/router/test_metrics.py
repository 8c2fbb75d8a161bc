"""The rolling window behind traffic()."""

from __future__ import annotations

from workbench.router.metrics import Rolling


def test_rate_and_quantiles():
    rolling = Rolling()
    for i in range(1000):
        rolling.record(0.010 if i < 990 else 0.500, 100.0 + i / 100)  # 10 s of 100 req/s
    now = 110.0
    assert 85 <= rolling.rate(now) <= 101
    p50, p99 = rolling.quantiles(now, (0.5, 0.99))
    assert p50 is not None and abs(p50 - 0.010) < 0.001
    assert p99 is not None and abs(p99 - 0.010) < 0.001
    (p999,) = rolling.quantiles(now, (0.999,))
    assert p999 is not None and abs(p999 - 0.5) < 0.03


def test_old_samples_leave_the_window():
    rolling = Rolling()
    rolling.record(0.1, 100.0)
    assert rolling.quantiles(200.0, (0.5,)) == [None]
    assert rolling.rate(200.0) == 0.0
