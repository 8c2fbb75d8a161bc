"""The server's settings: command-line flags, each defaulting to an environment variable."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tinylm.backend import DEVICES

DEFAULT_MODEL_PATH = Path(__file__).resolve().parent.parent / "model.npz"
Number = TypeVar("Number", int, float)


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    model_path: Path = DEFAULT_MODEL_PATH
    model_name: str = "tinylm"
    token_delay: float = 0.02
    max_concurrency: int = 16
    device: str = "auto"
    load_delay: float = 0.0
    train_if_missing: bool = True
    access_log: bool = True


class SettingsError(ValueError):
    """A flag or environment variable with a value the server cannot use."""


def _number(kind: type[Number], name: str, text: str, minimum: Number,
            maximum: Number | None = None) -> Number:
    try:
        value = kind(text)
    except ValueError:
        raise SettingsError(f"{name}={text!r} is not a{'n integer' if kind is int else ' number'}") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise SettingsError(f"{name}={text!r} is out of range: it must be {bound}")
    return value


def parse_settings(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Flags win over environment variables, which win over the defaults."""
    env = os.environ if environ is None else environ
    defaults = Settings()
    parser = argparse.ArgumentParser(
        prog="python -m tinylm", description="A tiny character-level language model, served OpenAI-style.")
    parser.add_argument("--host", default=env.get("HOST", defaults.host),
                        help="address to listen on [$HOST, default 127.0.0.1; 0.0.0.0 in the image]")
    parser.add_argument("--port", default=env.get("PORT", str(defaults.port)), help="[$PORT, default 8080]")
    parser.add_argument("--model-path", default=env.get("TINYLM_MODEL_PATH", str(defaults.model_path)),
                        help="the trained model; trained there first when missing [$TINYLM_MODEL_PATH]")
    parser.add_argument("--model-name", default=env.get("TINYLM_MODEL_NAME", defaults.model_name),
                        help="the name served in /v1/models and expected in `model` [$TINYLM_MODEL_NAME]")
    parser.add_argument("--token-delay", default=env.get("TINYLM_TOKEN_DELAY", str(defaults.token_delay)),
                        help="seconds between generation steps, one token each [$TINYLM_TOKEN_DELAY, 0.02]")
    parser.add_argument("--max-concurrency",
                        default=env.get("TINYLM_MAX_CONCURRENCY", str(defaults.max_concurrency)),
                        help="requests generating at once; more wait [$TINYLM_MAX_CONCURRENCY, 16]")
    parser.add_argument("--device", default=env.get("TINYLM_DEVICE", defaults.device),
                        help="auto (cuda when torch sees a GPU), cpu or cuda [$TINYLM_DEVICE]")
    parser.add_argument("--load-delay", default=env.get("TINYLM_LOAD_DELAY", str(defaults.load_delay)),
                        help="extra seconds of loading, as a big model takes [$TINYLM_LOAD_DELAY, 0]")
    parser.add_argument("--no-train", action="store_true",
                        default=env.get("TINYLM_NO_TRAIN", "") not in ("", "0", "false"),
                        help="fail instead of training when the model file is missing [$TINYLM_NO_TRAIN]")
    parser.add_argument("--no-access-log", action="store_true",
                        default=env.get("TINYLM_ACCESS_LOG", "1") in ("0", "false"),
                        help="do not log each request [TINYLM_ACCESS_LOG=0]")
    args = parser.parse_args(argv)
    if args.device not in DEVICES:
        raise SettingsError(f"TINYLM_DEVICE / --device {args.device!r} must be one of {', '.join(DEVICES)}")
    if not args.model_name.strip():
        raise SettingsError("TINYLM_MODEL_NAME / --model-name must not be empty")
    return Settings(
        host=args.host,
        port=_number(int, "PORT / --port", args.port, 1, 65535),
        model_path=Path(args.model_path),
        model_name=args.model_name.strip(),
        token_delay=_number(float, "TINYLM_TOKEN_DELAY / --token-delay", args.token_delay, 0.0, 60.0),
        max_concurrency=_number(int, "TINYLM_MAX_CONCURRENCY / --max-concurrency", args.max_concurrency, 1,
                                100_000),
        device=args.device,
        load_delay=_number(float, "TINYLM_LOAD_DELAY / --load-delay", args.load_delay, 0.0, 86_400.0),
        train_if_missing=not args.no_train,
        access_log=not args.no_access_log,
    )
