"""Sizes as people write them in workbench.yaml: ``512Mi``, ``2Gi``, ``1G``, or plain bytes.

Imported inside replicas (the `serving` block is the replica's settings): the standard library only.
"""

from __future__ import annotations

import re
from typing import Any

_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
          "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def parse_bytes(value: Any) -> Any:
    """Accept 512Mi, 2Gi, 1G, 1000000 or a plain int; leave anything else for pydantic."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 512Mi or 2Gi, not a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]i?)?[bB]?\s*", value)
        if not match:
            raise ValueError(f"{value!r} is not a size; use e.g. 512Mi, 2Gi or 1G")
        number, unit = match.groups()
        return int(float(number) * _UNITS[(unit or "").lower()])
    return value


def size_text(value: int) -> str:
    """A limit as workbench.yaml would write it, with its bytes: "10Mi (10485760 bytes)", or
    "1000 bytes" when no binary unit divides it."""
    for unit, size in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if value >= size and value % size == 0:
            return f"{value // size}{unit} ({value} bytes)"
    return f"{value} bytes"
