"""workbench: deploy ML models as HTTP APIs on the GPU machines you already have.

`workbench.Client` / `workbench.AsyncClient` call deployed APIs through the local router.
They load lazily: this package is also the predictor runtime inside every replica, which
has no httpx.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["AsyncClient", "Client", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Client", "AsyncClient"):
        from workbench import client

        return getattr(client, name)
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")
