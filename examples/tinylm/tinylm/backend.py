"""Where the forward pass runs: torch on a GPU when torch is installed and a GPU is visible,
numpy on the CPU otherwise (or when TINYLM_DEVICE says so)."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from tinylm.model import TinyLM

DEVICES = ("auto", "cpu", "cuda")
_NO_GPU_VALUES = ("", "-1", "none", "void", "nodevfiles")


class Backend(Protocol):
    device: str
    description: str

    def logits(self, contexts: np.ndarray) -> np.ndarray:
        """(batch, context) token ids → (batch, vocab) float32 logits on the CPU."""
        ...


class NumpyBackend:
    def __init__(self, model: TinyLM, reason: str) -> None:
        self.device = "cpu"
        self.description = f"cpu with numpy {np.__version__} ({reason})"
        self._shape = model.shape
        self._weights = model.weights

    def logits(self, contexts: np.ndarray) -> np.ndarray:
        weights, shape = self._weights, self._shape
        flat = weights["embedding"][contexts].reshape(len(contexts), shape.context * shape.embedding)
        hidden = np.tanh(flat @ weights["w_hidden"] + weights["b_hidden"])
        return np.asarray(hidden @ weights["w_out"] + weights["b_out"], dtype=np.float32)


class TorchBackend:
    def __init__(self, model: TinyLM, torch: Any, device: str) -> None:
        self.device = device
        name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
        self.description = f"{device} ({name}) with torch {torch.__version__}"
        self._torch = torch
        self._shape = model.shape
        self._weights = {key: torch.from_numpy(value).to(device) for key, value in model.weights.items()}

    def logits(self, contexts: np.ndarray) -> np.ndarray:
        torch, weights, shape = self._torch, self._weights, self._shape
        with torch.inference_mode():
            ids = torch.from_numpy(np.ascontiguousarray(contexts, dtype=np.int64)).to(self.device)
            flat = weights["embedding"][ids].reshape(len(contexts), shape.context * shape.embedding)
            hidden = torch.tanh(flat @ weights["w_hidden"] + weights["b_hidden"])
            logits = hidden @ weights["w_out"] + weights["b_out"]
            return np.asarray(logits.float().cpu().numpy(), dtype=np.float32)


@dataclass(frozen=True)
class DeviceChoice:
    device: str  # "cpu" or "cuda"
    torch: Any  # the torch module when it is used
    reason: str


def choose_device(requested: str = "auto", environ: dict[str, str] | None = None) -> DeviceChoice:
    """`cuda` when torch imports and sees a GPU that CUDA_VISIBLE_DEVICES does not hide; `cpu`
    names why not. `requested="cuda"` without one is an error, not a silent fall back."""
    if requested not in DEVICES:
        raise ValueError(f"device {requested!r} is not one of {', '.join(DEVICES)}")
    environ = dict(os.environ) if environ is None else environ
    if requested == "cpu":
        return DeviceChoice("cpu", None, "TINYLM_DEVICE=cpu")
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip().lower() in _NO_GPU_VALUES:
        reason = f"CUDA_VISIBLE_DEVICES={visible!r} names no GPU"
    else:
        try:
            torch = importlib.import_module("torch")
        except ImportError:
            reason = "torch is not installed"
        else:
            if torch.cuda.is_available():
                return DeviceChoice("cuda", torch, "torch sees a GPU")
            reason = f"torch {torch.__version__} sees no GPU"
    if requested == "cuda":
        raise RuntimeError(f"TINYLM_DEVICE=cuda but {reason}: install torch with CUDA and give "
                           "the process a GPU, or set TINYLM_DEVICE=auto")
    return DeviceChoice("cpu", None, reason)


def make_backend(model: TinyLM, choice: DeviceChoice) -> Backend:
    if choice.device == "cuda":
        return TorchBackend(model, choice.torch, "cuda")
    return NumpyBackend(model, choice.reason)
