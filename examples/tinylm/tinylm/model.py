"""A character-level language model: the last `context` characters, embedded and concatenated,
through one tanh layer to the next character's logits (Bengio et al. 2003, at toy scale).

The weights are plain numpy arrays; `backend.py` runs the forward pass with numpy on the CPU or
with torch on a GPU. Sampling (temperature, top-p) is numpy on the CPU with a generator per
request, so a seed gives the same text on either backend's logits.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

PARAMETERS = ("embedding", "w_hidden", "b_hidden", "w_out", "b_out")


@dataclass(frozen=True)
class ModelShape:
    context: int = 12
    embedding: int = 16
    hidden: int = 256


@dataclass
class TinyLM:
    """The vocabulary, the shape and the weights; `pad` starts every context (a paragraph break)."""

    vocab: str
    shape: ModelShape
    weights: dict[str, np.ndarray]
    info: dict[str, object]

    def __post_init__(self) -> None:
        self._index = {char: i for i, char in enumerate(self.vocab)}
        self.pad = self._index.get("\n", 0)
        self._unknown = self._index.get(" ", 0)

    @classmethod
    def initialise(cls, vocab: str, shape: ModelShape, rng: np.random.Generator) -> TinyLM:
        size, width = len(vocab), shape.context * shape.embedding

        def uniform(fan_in: int, *dims: int) -> np.ndarray:
            bound = 1.0 / np.sqrt(fan_in)
            return rng.uniform(-bound, bound, dims).astype(np.float32)

        weights = {
            "embedding": rng.normal(0.0, 1.0, (size, shape.embedding)).astype(np.float32),
            "w_hidden": uniform(width, width, shape.hidden),
            "b_hidden": np.zeros(shape.hidden, np.float32),
            "w_out": uniform(shape.hidden, shape.hidden, size),
            "b_out": np.zeros(size, np.float32),
        }
        return cls(vocab=vocab, shape=shape, weights=weights, info={})

    @property
    def parameter_count(self) -> int:
        return sum(int(array.size) for array in self.weights.values())

    def encode(self, text: str) -> list[int]:
        """One token per character; a character the book never uses reads as a space."""
        return [self._index.get(char, self._unknown) for char in text]

    def decode(self, tokens: list[int]) -> str:
        return "".join(self.vocab[token] for token in tokens)

    def context_of(self, tokens: list[int]) -> list[int]:
        """The last `context` tokens, padded on the left."""
        tail = tokens[-self.shape.context:]
        return [self.pad] * (self.shape.context - len(tail)) + tail

    def save(self, path: Path) -> None:
        meta = {"vocab": self.vocab, "shape": asdict(self.shape), "info": self.info}
        temporary = path.with_name(path.name + ".tmp.npz")
        arrays = {"meta": np.array(json.dumps(meta)), **self.weights}
        np.savez(temporary, allow_pickle=False, **arrays)
        temporary.replace(path)

    @classmethod
    def load(cls, path: Path) -> TinyLM:
        with np.load(path, allow_pickle=False) as archive:
            missing = [name for name in ("meta", *PARAMETERS) if name not in archive]
            if missing:
                raise ValueError(f"{path} is not a tinylm model (it lacks {', '.join(missing)}): "
                                 "train one with `python -m tinylm.train`")
            meta = json.loads(str(archive["meta"]))
            weights = {name: archive[name].astype(np.float32) for name in PARAMETERS}
        return cls(vocab=meta["vocab"], shape=ModelShape(**meta["shape"]), weights=weights,
                   info=meta.get("info", {}))


def sample_token(logits: np.ndarray, temperature: float, top_p: float, rng: np.random.Generator) -> int:
    """The next token from one row of logits: greedy at temperature 0, else softmax(logits / T)
    cut to the smallest set of tokens whose probability reaches `top_p`."""
    if temperature <= 0.0:
        return int(np.argmax(logits))
    scaled = logits.astype(np.float64) / temperature
    probabilities = np.exp(scaled - scaled.max())
    probabilities /= probabilities.sum()
    if top_p < 1.0:
        order = np.argsort(-probabilities, kind="stable")
        cumulative = np.cumsum(probabilities[order])
        keep = order[: int(np.searchsorted(cumulative, top_p)) + 1]
        kept = probabilities[keep] / probabilities[keep].sum()
        return int(keep[rng.choice(len(keep), p=kept)])
    return int(rng.choice(len(probabilities), p=probabilities))
