"""When the garbage collector runs: once a minute, right after a poll is on screen.

A poll of a large fleet parses tens of thousands of objects in the worker. Left to its allocation
counters, the collector runs at arbitrary moments and holds the GIL while it does: collections of
the young generations took 10-50 ms here, full ones 40-150 ms, and the keyboard waited each time.
Nearly all of the app's garbage is freed by reference counting (models, rows and strips hold no
cycles), so the automatic collector is switched off while the app runs and a full collection runs
every FULL_EVERY polls, just after that poll is painted. The objects alive after the first poll
(the app, its screens) are frozen out of those collections.

(A shorter GIL switch interval, tried for the same reason, made key latency no better here.)
"""

from __future__ import annotations

import gc

FULL_EVERY = 60  # polls between full collections (about a minute at the default 1 s)


class GarbagePacer:
    """Process-wide collector settings for as long as the app runs (restored by `stop`)."""

    def __init__(self) -> None:
        self._was_enabled = False
        self._started = False
        self._polls = 0

    def start(self) -> None:
        self._was_enabled = gc.isenabled()
        self._started = True
        gc.disable()

    def stop(self) -> None:
        if self._started:
            self._started = False
            gc.unfreeze()
            if self._was_enabled:
                gc.enable()

    def after_paint(self) -> None:
        """Call once a poll is on screen."""
        if not self._started:
            return
        self._polls += 1
        if self._polls == 1:
            gc.collect()
            gc.freeze()  # what exists now (the app, its screens) lives as long as the app
        elif self._polls % FULL_EVERY == 0:
            gc.collect()
