"""GarbagePacer: the collector off while the app runs, a full collection every FULL_EVERY polls,
and everything as it was afterwards."""

from __future__ import annotations

import gc

from workbench.tui import pacing


def test_collector_paced_and_restored(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    collected: list[int] = []
    monkeypatch.setattr(pacing.gc, "collect", lambda generation=2: collected.append(generation) or 0)
    assert gc.isenabled()
    pacer = pacing.GarbagePacer()
    pacer.start()
    try:
        assert not gc.isenabled()
        for _ in range(2 * pacing.FULL_EVERY):
            pacer.after_paint()
        assert len(collected) == 3  # the first poll (then frozen), and two full ones
        assert gc.get_freeze_count() > 0
    finally:
        pacer.stop()
    assert gc.isenabled() and gc.get_freeze_count() == 0
    pacer.after_paint()  # after stop: nothing
    assert len(collected) == 3
