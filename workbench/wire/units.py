"""The quantities people type: durations (``30m``, ``7d``, ``1h30m``), prices per hour (``2.40``),
currencies (``USD``) and GPU utilization thresholds (``5``). Each parses here and only here, for the
CLI, the control API's bodies and the controller's settings alike; a bad value raises ValueError
whose message says what is accepted (pydantic turns it into the control API's 400).

Money is exact: prices are Decimal, stored as integer micro-units per hour; amounts are rounded
only when shown (:func:`money`).

Imported on every box (the wire): the standard library only.
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

__all__ = [
    "DEFAULT_CURRENCY",
    "MAX_PRICE",
    "MICROS",
    "format_duration",
    "from_micros",
    "money",
    "parse_currency",
    "parse_duration",
    "parse_price",
    "parse_threshold",
    "to_micros",
]

DEFAULT_CURRENCY = "USD"
MICROS = 1_000_000  # micro-units per unit of a currency
MAX_PRICE = Decimal(1_000_000)  # per hour: anything above is a typo
MAX_DURATION_SECONDS = 10 * 365 * 86400.0

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_DURATION_HELP = "use a number and a unit (s, m, h, d, w), e.g. 90s, 30m, 1h30m or 7d"
_CURRENCY = re.compile(r"[A-Z]{3}")
_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}


def parse_duration(value: object) -> float:
    """Seconds in a duration: ``30m``, ``1h30m``, ``7d``, ``2w``, ``45s``, or a plain number of
    seconds (as dstack's ``idle_duration`` takes them). Positive and at most ten years."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, not a boolean; {_DURATION_HELP}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            seconds = float(text)
        elif text and _DURATION.sub("", text) == "":
            seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION.findall(text))
        else:
            raise ValueError(f"{value!r} is not a duration; {_DURATION_HELP}")
    else:
        raise ValueError(f"expected a duration such as 30m, not {type(value).__name__}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{value!r}: a duration must be more than zero; {_DURATION_HELP}")
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"{value!r}: a duration of more than ten years is surely a typo")
    return seconds


def format_duration(seconds: float) -> str:
    """The short form people type: 45s, 30m, 1h30m, 7d, 2d3h (whole seconds)."""
    left = max(round(seconds), 0)
    if left == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, left = divmod(left, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts[:2])  # the two largest units are precise enough to read


def parse_price(value: object) -> Decimal:
    """A price per hour: a number at or above zero with at most six decimals (micro-units),
    e.g. ``2.40``; a currency is given on its own (:func:`parse_currency`)."""
    if isinstance(value, bool):
        raise ValueError("expected a price per hour such as 2.40, not a boolean")
    if isinstance(value, float):
        value = repr(value)  # 2.4 -> Decimal("2.4"), not its binary expansion
    if isinstance(value, str):
        value = value.strip().lstrip("$€£¥")  # "$2.40" is what people copy from a provider
    try:
        price = Decimal(value) if isinstance(value, str | int | Decimal) else None
    except InvalidOperation:
        price = None
    if price is None or not price.is_finite():
        raise ValueError(f"{value!r} is not a price; give the price per hour as a number, e.g. 2.40")
    if price < 0:
        raise ValueError(f"{value!r}: a price cannot be negative (0 for a machine that costs nothing)")
    if price > MAX_PRICE:
        raise ValueError(f"{value!r} per hour is more than {MAX_PRICE:,}; is it a monthly price?")
    if price != price.quantize(Decimal(1).scaleb(-6), rounding=ROUND_HALF_EVEN):
        raise ValueError(f"{value!r}: at most six decimals (a micro-unit) in a price")
    return price


def parse_currency(value: object) -> str:
    """An ISO 4217 code, e.g. USD or EUR (case does not matter)."""
    text = value.strip().upper() if isinstance(value, str) else ""
    if not _CURRENCY.fullmatch(text):
        raise ValueError(f"{value!r} is not a currency; use a three-letter code such as USD or EUR")
    return text


def parse_threshold(value: object) -> float:
    """A GPU utilization threshold in percent, 0 to 100."""
    if isinstance(value, bool):
        raise ValueError("expected a utilization in percent (0-100), not a boolean")
    text = value.strip().rstrip("%") if isinstance(value, str) else value
    try:
        number = float(text) if isinstance(text, str | int | float) else math.nan
    except ValueError:
        raise ValueError(f"{value!r} is not a utilization; give a percentage from 0 to 100, e.g. 5") from None
    if not math.isfinite(number) or not 0 <= number <= 100:
        raise ValueError(f"{value!r}: a utilization threshold is a percentage from 0 to 100")
    return number


def to_micros(price: Decimal) -> int:
    """A parsed price as integer micro-units (exact: parse_price allows six decimals at most)."""
    return int(price * MICROS)


def from_micros(micros: int) -> Decimal:
    return (Decimal(micros) / MICROS).quantize(Decimal(1).scaleb(-6))


def money(amount: Decimal | None, currency: str = DEFAULT_CURRENCY, places: int = 2) -> str:
    """An amount as shown: ``$3.60``, ``12.50 EUR``; small amounts keep two significant digits
    (``$0.0042``) so that a cheap API does not read as free; ``-`` for None."""
    if amount is None:
        return "-"
    shown = amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    if shown == 0 and amount != 0:
        exponent = amount.copy_abs().adjusted()  # 0.0042 -> -3
        shown = amount.quantize(Decimal(1).scaleb(exponent - 1), rounding=ROUND_HALF_EVEN)
    symbol = _SYMBOLS.get(currency)
    sign, shown = ("-" if shown < 0 else ""), shown.copy_abs()
    return f"{sign}{symbol}{shown}" if symbol else f"{sign}{shown} {currency}"
