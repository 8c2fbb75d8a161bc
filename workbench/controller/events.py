"""Events: what happened to an API or host, stored in the DB and logged."""

from __future__ import annotations

import logging
import time
from typing import Any

from workbench.controller.state import Store

log = logging.getLogger("workbench.controller.events")


class Events:
    def __init__(self, store: Store):
        self.store = store

    def record(self, kind: str, message: str, *, api: str | None = None,
               data: dict[str, Any] | None = None, level: int = logging.INFO) -> None:
        log.log(level, "%s%s: %s", f"{api} " if api else "", kind, message)
        self.store.add_event(time.time(), api, kind, message, data or {})
