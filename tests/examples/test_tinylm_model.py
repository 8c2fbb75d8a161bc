"""examples/tinylm's parts without HTTP: the corpus, training, sampling, stop strings, the device
choice, the engine's batching and aborts, the settings."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from tests.support.real_parts import EXAMPLES

TINYLM = EXAMPLES / "tinylm"


@pytest.fixture(scope="module")
def tinylm() -> Iterator[ModuleType]:
    """The example's package, imported from its folder (it is not part of workbench)."""
    sys.path.insert(0, str(TINYLM))
    try:
        import tinylm

        yield tinylm
    finally:
        sys.path.remove(str(TINYLM))


@pytest.fixture(scope="module")
def small_model(tinylm: ModuleType) -> Any:
    from tinylm.corpus import book_text
    from tinylm.train import train

    return train(book_text()[:20_000], seed=1, epochs=1)


def test_the_book_trains_without_its_licence_and_the_file_keeps_it(tinylm: ModuleType) -> None:
    from tinylm.corpus import CORPUS, book_text

    raw = CORPUS.read_text(encoding="utf-8-sig")
    assert "This eBook is for the use of anyone anywhere" in raw.replace("ebook", "eBook")
    assert "*** END OF THE PROJECT GUTENBERG EBOOK" in raw and "Project Gutenberg License" in raw
    assert len(CORPUS.read_bytes()) < 300_000
    text = book_text()
    assert text.startswith("Alice\u2019s Adventures in Wonderland")
    assert "Gutenberg" not in text and "[Illustration]" not in text
    assert "Alice was beginning to get very tired of sitting by her sister on the bank," in text


def test_training_is_deterministic_for_a_seed(tinylm: ModuleType, small_model: Any) -> None:
    from tinylm.corpus import book_text
    from tinylm.train import train

    again = train(book_text()[:20_000], seed=1, epochs=1)
    other = train(book_text()[:20_000], seed=2, epochs=1)
    for name, weights in small_model.weights.items():
        assert np.array_equal(weights, again.weights[name])
    assert not np.array_equal(small_model.weights["w_out"], other.weights["w_out"])
    assert small_model.info["held_out_loss"] < np.log(len(small_model.vocab))  # it learnt something


def test_a_saved_model_loads_the_same(tinylm: ModuleType, small_model: Any, tmp_path: Any) -> None:
    from tinylm.model import TinyLM

    path = tmp_path / "model.npz"
    small_model.save(path)
    loaded = TinyLM.load(path)
    assert loaded.vocab == small_model.vocab and loaded.shape == small_model.shape
    assert all(np.array_equal(loaded.weights[name], small_model.weights[name]) for name in loaded.weights)
    (tmp_path / "other.npz").write_bytes(b"not a model")
    with pytest.raises(ValueError):
        TinyLM.load(tmp_path / "other.npz")


def test_sampling_greedy_top_p_and_seeds(tinylm: ModuleType) -> None:
    from tinylm.model import sample_token

    logits = np.array([0.0, 3.0, 1.0, 2.9], dtype=np.float32)
    rng = np.random.default_rng(0)
    assert sample_token(logits, 0.0, 1.0, rng) == 1
    assert {sample_token(logits, 1.0, 0.01, rng) for _ in range(50)} == {1}  # top-p keeps only the best
    assert {sample_token(logits, 1.0, 0.6, rng) for _ in range(200)} == {1, 3}
    draws = [sample_token(logits, 1.0, 1.0, np.random.default_rng(5)) for _ in range(3)]
    assert len(set(draws)) == 1
    spread = {sample_token(logits, 2.0, 1.0, rng) for _ in range(500)}
    assert spread == {0, 1, 2, 3}


def test_numpy_backend_is_the_cpu_path_and_matches_training(tinylm: ModuleType, small_model: Any,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from tinylm.backend import NumpyBackend, choose_device, make_backend
    from tinylm.train import _forward

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    choice = choose_device("cpu")
    assert (choice.device, choice.torch) == ("cpu", None)
    backend = make_backend(small_model, choice)
    assert isinstance(backend, NumpyBackend) and backend.device == "cpu"
    assert "numpy" in backend.description and "TINYLM_DEVICE=cpu" in backend.description
    prompts = ("Alice", "", "the Queen")
    contexts = np.array([small_model.context_of(small_model.encode(text)) for text in prompts])
    logits = backend.logits(contexts)
    assert logits.shape == (3, len(small_model.vocab)) and logits.dtype == np.float32
    assert np.allclose(logits, _forward(small_model.weights, contexts, small_model.shape)[2], atol=1e-5)


def test_auto_device_says_why_it_is_the_cpu(tinylm: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    from tinylm.backend import choose_device

    hidden = choose_device("auto", {"CUDA_VISIBLE_DEVICES": ""})
    assert (hidden.device, hidden.reason) == ("cpu", "CUDA_VISIBLE_DEVICES='' names no GPU")
    assert choose_device("auto", {"CUDA_VISIBLE_DEVICES": "-1"}).device == "cpu"
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch → ImportError
    choice = choose_device("auto", {"CUDA_VISIBLE_DEVICES": "0"})
    assert (choice.device, choice.reason) == ("cpu", "torch is not installed")
    with pytest.raises(RuntimeError, match="TINYLM_DEVICE=cuda but torch is not installed"):
        choose_device("cuda", {})
    with pytest.raises(ValueError, match="'tpu'"):
        choose_device("tpu", {})


def test_auto_device_takes_the_gpu_torch_sees(tinylm: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cuda branch of the choice, with a stand-in for torch (no GPU on the test machines)."""
    from tinylm.backend import choose_device

    stand_in = ModuleType("torch")
    stand_in.__version__ = "0.0"  # type: ignore[attr-defined]
    stand_in.cuda = type("cuda", (), {"is_available": staticmethod(lambda: True)})  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", stand_in)
    choice = choose_device("auto", {})
    assert (choice.device, choice.torch) == ("cuda", stand_in)
    assert choose_device("auto", {"CUDA_VISIBLE_DEVICES": ""}).device == "cpu"
    stand_in.cuda = type("cuda", (), {"is_available": staticmethod(lambda: False)})  # type: ignore[attr-defined]
    assert choose_device("auto", {}).reason == "torch 0.0 sees no GPU"


def _accept_all(sequence: Any, text: str) -> Any:
    for char in text:
        finished = sequence.accept(0, char)
        if finished is not None:
            return finished
    return None


def _emitted(sequence: Any) -> list[str]:
    out = []
    while not sequence.events.empty():
        out.append(sequence.events.get_nowait().text)
    return out


def test_stop_strings_end_the_text_and_never_leak_a_prefix(tinylm: ModuleType) -> None:
    from tinylm.engine import SamplingParams, Sequence

    def sequence(stop: tuple[str, ...], max_tokens: int = 100) -> Any:
        return Sequence(request_id="t", prompt_tokens=0, tokens=[], rng=np.random.default_rng(0),
                        params=SamplingParams(max_tokens=max_tokens, stop=stop))

    stopped = sequence(("o w",))
    finished = _accept_all(stopped, "hello world")
    assert (finished.reason, finished.completion_tokens) == ("stop", 7)
    assert "".join(_emitted(stopped)) == "hell"

    no_stop = sequence(())
    assert _accept_all(no_stop, "abc") is None
    assert _emitted(no_stop) == ["a", "b", "c"]  # one event per token

    held = sequence(("xyz",), max_tokens=4)
    finished = _accept_all(held, "abxy")  # the budget ends while "xy" is held back: it is flushed
    assert finished.reason == "length" and "".join(_emitted(held)) == "abxy"


async def test_engine_batches_queues_and_aborts(tinylm: ModuleType, small_model: Any) -> None:
    from tinylm.backend import choose_device, make_backend
    from tinylm.engine import Delta, Engine, Finished, SamplingParams
    from tinylm.metrics import Metrics

    metrics = Metrics()
    engine = Engine(small_model, make_backend(small_model, choose_device("cpu")), metrics,
                    max_concurrency=2, token_delay=0.01)
    engine.start()

    def value(name: str) -> float | None:
        return metrics.registry.get_sample_value(name)

    try:
        params = SamplingParams(max_tokens=30, seed=11)
        first, second, third = (engine.submit(f"r{i}", "Alice", params) for i in range(3))
        assert (value("tinylm_requests_running"), value("tinylm_requests_waiting")) in ((0, 3), (2, 1))
        await asyncio.sleep(0.05)
        assert (value("tinylm_requests_running"), value("tinylm_requests_waiting")) == (2, 1)
        assert engine.release(third) is True and third.state == "aborted"
        assert engine.release(third) is False  # once
        assert value("tinylm_requests_waiting") == 0 and value("tinylm_requests_cancelled_total") == 1

        async def text_of(sequence: Any) -> tuple[str, Any]:
            parts = []
            while True:
                event = await asyncio.wait_for(sequence.events.get(), 10)
                if isinstance(event, Delta):
                    parts.append(event.text)
                else:
                    return "".join(parts), event

        (text1, end1), (text2, _) = await asyncio.gather(text_of(first), text_of(second))
        assert text1 == text2 and len(text1) == 30  # the same seed, the same text
        assert end1 == Finished("length", 30)
        assert value("tinylm_generated_tokens_total") == 60 and value("tinylm_requests_running") == 0
        greedy = engine.submit("g", "Alice", SamplingParams(max_tokens=12, temperature=0.0))
        assert (await text_of(greedy))[0] == (await text_of(engine.submit("h", "Alice", greedy.params)))[0]
    finally:
        await engine.stop()


def test_settings_from_flags_and_environment(tinylm: ModuleType) -> None:
    from tinylm.settings import SettingsError, parse_settings

    settings = parse_settings([], {"PORT": "9000", "TINYLM_MODEL_NAME": "alice", "TINYLM_TOKEN_DELAY": "0.5",
                                   "TINYLM_MAX_CONCURRENCY": "3"})
    assert (settings.port, settings.model_name, settings.token_delay, settings.max_concurrency) == (
        9000, "alice", 0.5, 3)
    assert settings.host == "127.0.0.1"
    assert parse_settings(["--port", "9100", "--host", "0.0.0.0"], {"PORT": "9000"}).port == 9100
    for environ, named in [({"PORT": "http"}, "PORT"), ({"PORT": "70000"}, "PORT"),
                           ({"TINYLM_TOKEN_DELAY": "-1"}, "TINYLM_TOKEN_DELAY"),
                           ({"TINYLM_MAX_CONCURRENCY": "0"}, "TINYLM_MAX_CONCURRENCY"),
                           ({"TINYLM_DEVICE": "gpu"}, "TINYLM_DEVICE"),
                           ({"TINYLM_MODEL_NAME": " "}, "TINYLM_MODEL_NAME")]:
        with pytest.raises(SettingsError, match=named):
            parse_settings([], environ)
