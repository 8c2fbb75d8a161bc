"""The predictor runtime: the HTTP server inside every replica (container or process).

Imports only the stdlib, FastAPI/Starlette/uvicorn/anyio, pydantic, prometheus_client and
``workbench.wire.agent``: it is copied alone into images. Run it with
``python -m workbench.serving``; see :mod:`workbench.serving.__main__`.
"""

from .app import PredictorRuntime, create_app

__all__ = ["PredictorRuntime", "create_app"]
