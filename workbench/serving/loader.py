"""Finding, importing and constructing the user's predictor class."""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
import sys
from types import ModuleType
from typing import Any

from workbench.wire.errors import Failed
from workbench.wire.replica import RuntimeConfig

from .predictor import PredictorHandle

#: Class names tried, in order, when ``predictor_class`` is not set.
DEFAULT_CLASS_NAMES = ("Predictor", "PythonPredictor")


class LoadError(Failed):
    """The predictor file or class cannot be found."""


def load_predictor(cfg: RuntimeConfig) -> PredictorHandle:
    """Import ``cfg.predictor_path``, construct its predictor class with ``cfg.config``.

    ``cfg.project_dir`` goes first on ``sys.path``. Exceptions from the user's module
    or ``__init__`` propagate unchanged.
    """
    project_dir = os.path.abspath(cfg.project_dir)
    if project_dir not in sys.path:
        sys.path.insert(0, project_dir)
    module = import_file(os.path.join(project_dir, cfg.predictor_path))
    cls = find_class(module, cfg.predictor_class)
    return PredictorHandle(construct(cls, cfg.config))


def import_file(path: str) -> ModuleType:
    """Import the Python file at `path` as a module named after its stem."""
    if not os.path.isfile(path):
        raise LoadError(f"predictor file not found: {path}")
    name = re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0]) or "predictor"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise LoadError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def find_class(module: ModuleType, name: str | None) -> type:
    """`name` in `module`, else the first of :data:`DEFAULT_CLASS_NAMES` it defines."""
    names = (name,) if name else DEFAULT_CLASS_NAMES
    for candidate in names:
        cls = getattr(module, candidate, None)
        if inspect.isclass(cls):
            return cls
    where = module.__file__ or module.__name__
    raise LoadError(f"no class {' or '.join(names)} in {where}")


def construct(cls: type, config: dict[str, Any]) -> object:
    """``cls(config=config)``; positionally if its first parameter has another name;
    with no arguments if ``__init__`` takes none."""
    try:
        params = list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):
        return cls(config)
    kind = inspect.Parameter
    by_name = any(
        (p.name == "config" and p.kind is not kind.POSITIONAL_ONLY) or p.kind is kind.VAR_KEYWORD
        for p in params
    )
    if by_name:
        return cls(config=config)
    if params and params[0].kind in (
        kind.POSITIONAL_ONLY,
        kind.POSITIONAL_OR_KEYWORD,
        kind.VAR_POSITIONAL,
    ):
        return cls(config)
    return cls()
