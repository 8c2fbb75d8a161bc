"""One background thread samples the probe at 1 Hz into a ring buffer per GPU."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from workbench.agent.gpu.probe import GpuProbe, Reading

from workbench.wire.agent import GpuSample

log = logging.getLogger("workbench.agent.gpu")

DEFAULT_INTERVAL = 1.0
DEFAULT_HISTORY_SECONDS = 600.0


class GpuSampler:
    """Keeps the latest reading and ~history_seconds of samples; thread-safe snapshots."""

    def __init__(
        self,
        probe: GpuProbe,
        interval: float = DEFAULT_INTERVAL,
        history_seconds: float = DEFAULT_HISTORY_SECONDS,
    ) -> None:
        self.probe = probe
        self.interval = interval
        self.maxlen = max(1, round(history_seconds / interval))
        self._history: dict[int, deque[GpuSample]] = {}
        self._latest: Reading | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: CPU seconds the sampler thread has used (time.thread_time), for the cost benchmark.
        self.cpu_seconds = 0.0
        self.samples = 0

    def start(self) -> None:
        if self._thread is None:
            self.sample_once()  # a first reading before the API answers
            self._thread = threading.Thread(target=self._run, name="gpu-sampler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.probe.close()

    def _run(self) -> None:
        next_at = time.monotonic() + self.interval
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            cpu0 = time.thread_time()
            self.sample_once()
            self.cpu_seconds += time.thread_time() - cpu0
            next_at += self.interval
            if next_at < time.monotonic():  # fell behind (suspended): do not burst
                next_at = time.monotonic() + self.interval

    def sample_once(self) -> Reading:
        try:
            reading = self.probe.read()
        except Exception as e:  # a probe must not raise; if it does, keep sampling
            log.warning("GPU probe failed: %s", e)
            reading = Reading(at=time.time(), note=f"GPU probe failed: {e}")
        with self._lock:
            self._latest = reading
            for g in reading.gpus:
                info = g.info
                ring = self._history.get(info.index)
                if ring is None:
                    ring = self._history[info.index] = deque(maxlen=self.maxlen)
                ring.append(
                    GpuSample(
                        at=reading.at,
                        utilization_gpu=info.utilization_gpu,
                        memory_used_bytes=info.memory_used_bytes,
                        temperature_c=info.temperature_c,
                        power_draw_w=info.power_draw_w,
                    )
                )
            self.samples += 1
        return reading

    def latest(self) -> Reading | None:
        with self._lock:
            return self._latest

    def history(self, since: float | None = None) -> dict[int, list[GpuSample]]:
        """Samples per GPU, oldest first; only those taken after `since` (a Unix time) when given,
        so that a client polling every second fetches one new sample instead of ten minutes."""
        with self._lock:
            if since is None:
                return {index: list(ring) for index, ring in self._history.items()}
            out: dict[int, list[GpuSample]] = {}
            for index, ring in self._history.items():
                newer: list[GpuSample] = []
                for sample in reversed(ring):  # newest first: stop at the first old one
                    if sample.at <= since:
                        break
                    newer.append(sample)
                newer.reverse()
                out[index] = newer
            return out
