"""workbench: deploy ML models as HTTP APIs on the GPU machines you already have.

`workbench.Client` / `workbench.AsyncClient` call deployed APIs through the local router; their
errors (`workbench.APINotFound`, `PredictionError`, `Unavailable`, `Timeout`, `ConnectionFailed`,
`Unauthorized`, all `WorkbenchError`) are here too. They load lazily: this package is also the
predictor runtime inside every replica, which has no httpx.
"""

from typing import Any

__version__ = "0.1.0"
#: loaded from workbench.client on first use
_CLIENT_NAMES = ("APINotFound", "AsyncClient", "Client", "ConnectionFailed", "PredictionError", "Timeout",
                 "Unauthorized", "Unavailable", "WorkbenchError")
__all__ = [*_CLIENT_NAMES, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _CLIENT_NAMES:
        from workbench import client  # lazily: replicas and agents have no httpx

        return getattr(client, name)
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_CLIENT_NAMES})
