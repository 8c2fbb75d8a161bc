"""`--since` values as `docker logs` takes them: a duration back from now or a point in time."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_since(text: str, now: float | None = None) -> float:
    """A Unix time from ``10m``, ``1h30m``, ``45s``, ``2d`` (that long ago), an RFC 3339 / ISO 8601
    time (``2026-01-02T13:23:37Z``; without a zone: local time) or a Unix timestamp. ValueError
    with the forms it takes otherwise."""
    value = text.strip()
    now = time.time() if now is None else now
    if value and _DURATION.sub("", value) == "" and _DURATION.match(value):
        return now - sum(float(number) * _UNIT[unit] for number, unit in _DURATION.findall(value))
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"--since {text!r} is not a duration (10m, 1h30m, 2d) or a time "
                         "(2026-01-02T13:23:37Z, or a Unix timestamp)") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # local time, as docker reads it
    return moment.astimezone(UTC).timestamp()
