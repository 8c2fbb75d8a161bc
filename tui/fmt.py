"""How the TUI writes values: ages, sizes, timings, and the frozen mode that makes screens stable.

Set ``WORKBENCH_TUI_FROZEN=1`` to replace every volatile value (ages, timings, ports, ids, memory
that moves, pids) with a fixed mask, so that snapshot tests of real screens do not drift.
"""

from __future__ import annotations

import os
import re
import time
from decimal import Decimal

from workbench.wire.units import money

NA = "N/A"


def frozen() -> bool:
    """True when WORKBENCH_TUI_FROZEN=1 (read each time so tests can set it)."""
    return os.environ.get("WORKBENCH_TUI_FROZEN", "") == "1"


def age(since: float | None, now: float | None = None) -> str:
    if since is None:
        return NA
    if frozen():
        return "··"
    seconds = max(int((now or time.time()) - since), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def ms(value: float | None) -> str:
    if value is None:
        return NA
    return "#ms" if frozen() else f"{value:.1f}ms"


def rate(value: float | None) -> str:
    if value is None:
        return NA
    return "#" if frozen() else f"{value:.1f}"


def gib(value: int | None) -> str:
    if value is None:
        return NA
    return f"{value / 2**30:.1f}"


def percent(value: float | None) -> str:
    return NA if value is None else f"{value:.0f}%"


def temp(value: float | None) -> str:
    return NA if value is None else f"{value:.0f}°C"


def watts(draw: float | None, limit: float | None = None) -> str:
    if draw is None:
        return NA
    return f"{draw:.0f}W" if limit is None else f"{draw:.0f}/{limit:.0f}W"


_PORT = re.compile(r"(?<=:)\d{2,5}\b")
_HEX_ID = re.compile(r"\b[0-9a-f]{8,}\b")
_SECONDS = re.compile(r"\b\d+\.\d+s\b")
_TUPLE_PORT = re.compile(r"(', )\d{2,5}(\))")
_PID = re.compile(r'("pid": ?)\d+')


def url(value: str | None) -> str:
    if not value:
        return NA
    return _PORT.sub("PORT", value) if frozen() else value


def short_id(value: str) -> str:
    return "xxxxxxxx" if frozen() else value[:12]


def mask(text: str) -> str:
    """Volatile parts of free text (log lines, messages) masked in frozen mode."""
    if not frozen():
        return text
    text = _HEX_ID.sub("xxxxxxxx", text)
    text = _PORT.sub("PORT", text)
    text = _TUPLE_PORT.sub(r"\1PORT\2", text)
    text = _SECONDS.sub("N.NNs", text)
    return _PID.sub(r"\1PID", text)


def cpu_mem(cpu_count: int | None, available: int | None, total: int | None) -> str:
    if cpu_count is None:
        return NA
    if frozen():
        return "N cpu · N/N GiB"
    used = None if available is None or total is None else total - available
    return f"{cpu_count} cpu · {gib(used)}/{gib(total)} GiB"


def price(value: Decimal | None, currency: str) -> str:
    """A price per hour, "$2.40/h"; "-" when the host has none."""
    return "-" if value is None else f"{money(value, currency)}/h"


def spend(amounts: dict[str, Decimal] | None) -> str:
    """Money spent (it grows every second: masked in frozen mode); "-" for nothing priced."""
    if not amounts:
        return "-"
    if frozen():
        return ", ".join(money(Decimal(0), currency).replace("0", "#") for currency in amounts)
    return ", ".join(money(value, currency) for currency, value in amounts.items())
