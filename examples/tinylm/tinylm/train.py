"""Train tinylm on the bundled book with numpy (minibatch Adam, hand-written backward pass).

    python -m tinylm.train --out model.npz [--seed 0] [--epochs 4]

Deterministic for a seed on one machine; a few seconds on two CPU cores.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import time
from pathlib import Path

import numpy as np

from tinylm.corpus import CORPUS, book_text
from tinylm.model import PARAMETERS, ModelShape, TinyLM

log = logging.getLogger("tinylm")


def windows(tokens: np.ndarray, context: int, pad: int) -> np.ndarray:
    """Row i holds the `context` tokens before token i (padded at the start of the text)."""
    padded = np.concatenate([np.full(context, pad, dtype=tokens.dtype), tokens])
    return np.lib.stride_tricks.sliding_window_view(padded, context)[: len(tokens)]


def train(text: str, *, seed: int = 0, epochs: int = 4, batch_size: int = 128, learning_rate: float = 3e-3,
          shape: ModelShape | None = None) -> TinyLM:
    shape = shape or ModelShape()
    rng = np.random.default_rng(seed)
    vocab = "".join(sorted(set(text)))
    model = TinyLM.initialise(vocab, shape, rng)
    tokens = np.array(model.encode(text), dtype=np.int64)
    inputs, targets = windows(tokens, shape.context, model.pad), tokens
    held_out = len(tokens) // 20  # the last 5 % measures the loss, never trains
    train_rows = np.arange(len(tokens) - held_out)
    weights = model.weights
    moments = {name: np.zeros_like(weights[name]) for name in PARAMETERS}
    squares = {name: np.zeros_like(weights[name]) for name in PARAMETERS}
    beta1, beta2, step = 0.9, 0.999, 0
    started = time.monotonic()
    for epoch in range(epochs):
        order = rng.permutation(train_rows)
        rate = learning_rate * (0.5 ** epoch)  # halve the step each epoch
        for first in range(0, len(order), batch_size):
            rows = order[first:first + batch_size]
            grads = _gradients(weights, inputs[rows], targets[rows], shape)
            step += 1
            for name in PARAMETERS:
                moments[name] = beta1 * moments[name] + (1 - beta1) * grads[name]
                squares[name] = beta2 * squares[name] + (1 - beta2) * grads[name] ** 2
                corrected = rate * np.sqrt(1 - beta2 ** step) / (1 - beta1 ** step)
                weights[name] -= corrected * moments[name] / (np.sqrt(squares[name]) + 1e-8)
        loss = _loss(weights, inputs[-held_out:], targets[-held_out:], shape)
        log.info("epoch %d/%d: held-out loss %.3f nats/char (%.1f s)", epoch + 1, epochs, loss,
                 time.monotonic() - started)
    model.info = {"seed": seed, "epochs": epochs, "held_out_loss": round(float(loss), 4),
                  "train_seconds": round(time.monotonic() - started, 2),
                  "corpus_sha256": hashlib.sha256(text.encode()).hexdigest(), "characters": len(text)}
    return model


def _forward(weights: dict[str, np.ndarray], contexts: np.ndarray,
             shape: ModelShape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    flat = weights["embedding"][contexts].reshape(len(contexts), shape.context * shape.embedding)
    hidden = np.tanh(flat @ weights["w_hidden"] + weights["b_hidden"])
    logits = hidden @ weights["w_out"] + weights["b_out"]
    return flat, hidden, logits


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _loss(weights: dict[str, np.ndarray], contexts: np.ndarray, targets: np.ndarray,
          shape: ModelShape) -> float:
    probabilities = _softmax(_forward(weights, contexts, shape)[2])
    return float(-np.log(probabilities[np.arange(len(targets)), targets] + 1e-12).mean())


def _gradients(weights: dict[str, np.ndarray], contexts: np.ndarray, targets: np.ndarray,
               shape: ModelShape) -> dict[str, np.ndarray]:
    flat, hidden, logits = _forward(weights, contexts, shape)
    d_logits = _softmax(logits)
    d_logits[np.arange(len(targets)), targets] -= 1.0
    d_logits /= len(targets)
    d_hidden = (d_logits @ weights["w_out"].T) * (1.0 - hidden ** 2)
    d_flat = d_hidden @ weights["w_hidden"].T
    d_embedding = np.zeros_like(weights["embedding"])
    np.add.at(d_embedding, contexts.reshape(-1), d_flat.reshape(-1, shape.embedding))
    return {"embedding": d_embedding, "w_hidden": flat.T @ d_hidden, "b_hidden": d_hidden.sum(axis=0),
            "w_out": hidden.T @ d_logits, "b_out": d_logits.sum(axis=0)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinylm.train", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("model.npz"), help="where to write the model")
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="a Project Gutenberg plain-text eBook")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1, not {args.epochs}")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    text = book_text(args.corpus)
    log.info("training on %s: %d characters, seed %d", args.corpus.name, len(text), args.seed)
    model = train(text, seed=args.seed, epochs=args.epochs)
    model.save(args.out)
    log.info("wrote %s: %d parameters, %d-character vocabulary, held-out loss %.3f nats/char",
             args.out, model.parameter_count, len(model.vocab), model.info["held_out_loss"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
