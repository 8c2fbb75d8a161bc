"""The generation engine: a batch of running sequences stepped together, one token each per step,
at a steady pace; requests beyond the concurrency limit wait in line (vLLM's continuous batching
at toy scale). A sequence released before it finishes is aborted at once: it leaves the batch and
gets no further token, and its slot goes to the next in line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from tinylm.backend import Backend
from tinylm.metrics import Metrics
from tinylm.model import TinyLM, sample_token

log = logging.getLogger("tinylm")


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class Finished:
    reason: str  # "stop" or "length"
    completion_tokens: int


@dataclass(frozen=True)
class Failed:
    message: str


Event = Delta | Finished | Failed


@dataclass(eq=False)
class Sequence:
    """One request's generation. Events go to `events`; the engine alone changes the state."""

    request_id: str
    prompt_tokens: int
    tokens: list[int]
    params: SamplingParams
    rng: np.random.Generator
    events: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    state: str = "waiting"  # waiting → running → finished | aborted
    generated: int = 0
    submitted: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    _pending: str = ""  # text held back because it may begin a stop string

    @property
    def done(self) -> bool:
        return self.state in ("finished", "aborted")

    def accept(self, token: int, char: str) -> Finished | None:
        """Take one generated token; queue the text that can no longer be part of a stop string."""
        self.generated += 1
        self.tokens.append(token)
        self._pending += char
        for stop in self.params.stop:
            at = self._pending.find(stop)
            if at >= 0:
                self._emit(self._pending[:at])
                return Finished("stop", self.generated)
        held = _longest_stop_prefix(self._pending, self.params.stop)
        self._emit(self._pending[:len(self._pending) - held])
        self._pending = self._pending[len(self._pending) - held:]
        if self.generated >= self.params.max_tokens:
            self._emit(self._pending)
            return Finished("length", self.generated)
        return None

    def _emit(self, text: str) -> None:
        if text:
            self.events.put_nowait(Delta(text))


def _longest_stop_prefix(text: str, stops: tuple[str, ...]) -> int:
    """How many trailing characters of `text` begin one of `stops`."""
    best = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:size]):
                best = size
                break
    return best


class Engine:
    def __init__(self, model: TinyLM, backend: Backend, metrics: Metrics, *, max_concurrency: int,
                 token_delay: float) -> None:
        self.model = model
        self.backend = backend
        self.metrics = metrics
        self.max_concurrency = max_concurrency
        self.token_delay = token_delay
        self._waiting: deque[Sequence] = deque()
        self._running: list[Sequence] = []
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tinylm-step")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="tinylm-engine")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for sequence in [*self._running, *self._waiting]:
            self._finish(sequence, Failed("the server is shutting down"), "error")
        self._executor.shutdown(wait=False, cancel_futures=True)

    def submit(self, request_id: str, prompt: str, params: SamplingParams) -> Sequence:
        tokens = self.model.encode(prompt)
        sequence = Sequence(request_id=request_id, prompt_tokens=len(tokens), tokens=tokens, params=params,
                            rng=np.random.default_rng(params.seed))
        self._waiting.append(sequence)
        self.metrics.prompt_tokens.inc(len(tokens))
        self._update_gauges()
        self._wakeup.set()
        return sequence

    def release(self, sequence: Sequence) -> bool:
        """The caller is done with `sequence`; one still generating is aborted (the client left).
        True when this aborted it."""
        if sequence.done:
            return False
        if sequence.state == "waiting":
            self._waiting.remove(sequence)
        else:
            self._running.remove(sequence)
        sequence.state = "aborted"
        self.metrics.cancelled.inc()
        self.metrics.finished.labels(finish_reason="cancelled").inc()
        self._update_gauges()
        self._wakeup.set()
        log.info("%s: cancelled by the client after %d tokens", sequence.request_id, sequence.generated)
        return True

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_step = time.monotonic()
        while True:
            self._admit()
            if not self._running:
                self._wakeup.clear()
                await self._wakeup.wait()
                next_step = time.monotonic()
                continue
            batch = list(self._running)
            contexts = np.array([self.model.context_of(sequence.tokens) for sequence in batch],
                                dtype=np.int64)
            try:
                tokens = await loop.run_in_executor(self._executor, self._step, batch, contexts)
            except Exception as error:  # the backend failed: fail this batch, keep serving
                log.exception("generation step failed")
                for sequence in batch:
                    self._finish(sequence, Failed(f"generation failed: {error}"), "error")
                continue
            now = time.monotonic()
            for sequence, token in zip(batch, tokens, strict=True):
                if sequence.state != "running":  # released while the step ran: nothing more for it
                    continue
                if sequence.first_token_at is None:
                    sequence.first_token_at = now
                    self.metrics.time_to_first_token.observe(now - sequence.submitted)
                self.metrics.generated_tokens.inc()
                finished = sequence.accept(token, self.model.vocab[token])
                if finished is not None:
                    self._finish(sequence, finished, finished.reason)
            next_step += self.token_delay
            if next_step < now - self.token_delay:  # fell behind (slow step): keep the pace from now
                next_step = now
            await asyncio.sleep(max(0.0, next_step - time.monotonic()))

    def _step(self, batch: list[Sequence], contexts: np.ndarray) -> list[int]:
        """The forward pass of the whole batch, then one sample per sequence (executor thread)."""
        logits = self.backend.logits(contexts)
        return [sample_token(row, sequence.params.temperature, sequence.params.top_p, sequence.rng)
                for row, sequence in zip(logits, batch, strict=True)]

    def _admit(self) -> None:
        while self._waiting and len(self._running) < self.max_concurrency:
            sequence = self._waiting.popleft()
            sequence.state = "running"
            self._running.append(sequence)
        self._update_gauges()

    def _finish(self, sequence: Sequence, event: Finished | Failed, reason: str) -> None:
        if sequence.done:
            return
        if sequence in self._running:
            self._running.remove(sequence)
        elif sequence in self._waiting:
            self._waiting.remove(sequence)
        sequence.state = "finished"
        sequence.events.put_nowait(event)
        self.metrics.finished.labels(finish_reason=reason).inc()
        self._update_gauges()
        elapsed = time.monotonic() - sequence.submitted
        log.info("%s: finished (%s) with %d tokens in %.2f s", sequence.request_id, reason,
                 sequence.generated, elapsed)

    def _update_gauges(self) -> None:
        self.metrics.running.set(len(self._running))
        self.metrics.waiting.set(len(self._waiting))
