"""pydantic's validation errors in the user's words, on one line.

``1 validation error for ScaleRequest\\nreplicas\\n  Input should be greater than or equal to 0 …
errors.pydantic.dev`` becomes ``--replicas must be 0 or more`` when the caller names the field as
its user knows it (a CLI flag, a form's label); other fields keep their dotted path.

Imported by the CLI, the TUI and the servers' error handlers: pydantic only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails


def _field(item: ErrorDetails | Mapping[str, Any], names: Mapping[str, str]) -> str:
    path = ".".join(str(part) for part in item.get("loc", ()) if part not in ("body", "query", "path"))
    return names.get(path, path)


def _words(item: ErrorDetails | Mapping[str, Any]) -> str:
    kind = str(item.get("type", ""))
    ctx: Mapping[str, Any] = item.get("ctx") or {}
    value = item.get("input")
    if kind == "greater_than_equal":
        return f"must be {ctx.get('ge')} or more"
    if kind == "greater_than":
        return f"must be more than {ctx.get('gt')}"
    if kind == "less_than_equal":
        return f"must be {ctx.get('le')} or less"
    if kind == "less_than":
        return f"must be less than {ctx.get('lt')}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"must be a whole number, not {value!r}"
    if kind in ("float_parsing", "float_type"):
        return f"must be a number, not {value!r}"
    if kind in ("bool_parsing", "bool_type"):
        return f"must be true or false, not {value!r}"
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known field"
    if kind == "string_pattern_mismatch":
        return f"{value!r} does not match {ctx.get('pattern')}"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    if kind == "literal_error":
        return f"must be {ctx.get('expected')}, not {value!r}"
    message = str(item.get("msg", "is invalid"))
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def describe(items: Sequence[ErrorDetails | Mapping[str, Any]], names: Mapping[str, str] | None = None,
             hints: Mapping[str, str] | None = None) -> str:
    """Each error as ``field words`` (``--replicas must be 0 or more``), joined by ``; ``.
    `names` maps a field's dotted path to what the user calls it; `hints` adds a plain-words
    explanation after a field's error (e.g. what a pattern allows)."""
    names, hints = names or {}, hints or {}
    parts = []
    for item in items:
        field = _field(item, names)
        words = _words(item)
        text = f"{field} {words}" if field else words
        path = ".".join(str(part) for part in item.get("loc", ()) if part not in ("body", "query", "path"))
        if path in hints:
            text += f" ({hints[path]})"
        parts.append(text)
    return "; ".join(parts) or "invalid input"


def in_words(error: ValidationError, names: Mapping[str, str] | None = None,
             hints: Mapping[str, str] | None = None) -> str:
    """A model's ValidationError as one line in the user's words (see :func:`describe`)."""
    return describe(error.errors(), names, hints)
