"""workbench.serving.app: endpoints, predictor calling conventions, errors, readiness."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from workbench.serving import create_app
from workbench.serving.predictor import PredictorHandle

from .conftest import runtime_config, wait_ready_async

AppClient = Callable[..., Any]


async def test_healthz_readyz_metrics(app_client: AppClient) -> None:
    client = await app_client("class Predictor:\n    def predict(self, payload):\n        return 1\n")
    assert (await client.get("/healthz")).json() == {"ok": True}
    assert (await client.get("/readyz")).json() == {"ready": True, "state": "ready"}
    assert (await client.get("/metrics")).status_code == 200


async def test_unknown_paths_and_methods(app_client: AppClient) -> None:
    client = await app_client("class Predictor:\n    def predict(self, payload):\n        return 1\n")
    assert (await client.get("/nope")).status_code == 404
    assert (await client.post("/predict")).status_code == 404
    assert (await client.get("/")).status_code == 405
    assert (await client.post("/healthz")).status_code == 405
    assert (await client.get("/docs")).status_code == 404


async def test_query_params_and_headers_injected(app_client: AppClient) -> None:
    code = """
    class Predictor:
        def predict(self, payload, query_params, headers):
            return {"q": query_params, "h": headers["x-thing"], "lower": all(k == k.lower() for k in headers)}
    """
    client = await app_client(code)
    response = await client.post("/?a=1&b=two", json={}, headers={"X-Thing": "v"})
    assert response.json() == {"q": {"a": "1", "b": "two"}, "h": "v", "lower": True}


async def test_config_absent_from_init(app_client: AppClient) -> None:
    code = """
    class Predictor:
        def __init__(self):
            self.n = 7
        def predict(self, payload):
            return self.n
    """
    client = await app_client(code, config={"ignored": True})
    assert (await client.post("/")).json() == 7


async def test_config_passed(app_client: AppClient) -> None:
    code = """
    class Predictor:
        def __init__(self, config):
            self.config = config
        def predict(self, payload):
            return self.config
    """
    client = await app_client(code, config={"model": "m", "n": 2})
    assert (await client.post("/")).json() == {"model": "m", "n": 2}


async def test_async_predict(app_client: AppClient) -> None:
    code = """
    import asyncio, threading
    class Predictor:
        async def predict(self, payload, headers):
            await asyncio.sleep(0)
            return {"payload": payload, "main": threading.current_thread() is threading.main_thread()}
    """
    client = await app_client(code)
    assert (await client.post("/", json=[1])).json() == {"payload": [1], "main": True}


async def test_sync_predict_runs_in_thread(app_client: AppClient) -> None:
    code = """
    import threading
    class Predictor:
        def predict(self, payload):
            return threading.current_thread() is threading.main_thread()
    """
    client = await app_client(code)
    assert (await client.post("/")).json() is False


async def test_python_predictor_fallback(app_client: AppClient) -> None:
    code = "class PythonPredictor:\n    def predict(self, payload):\n        return 'cortex'\n"
    client = await app_client(code)
    assert (await client.post("/")).text == "cortex"


async def test_user_exception_is_500_and_server_keeps_serving(app_client: AppClient, capfd: Any) -> None:
    code = """
    class Predictor:
        def predict(self, payload):
            if payload == {"fail": True}:
                raise ValueError("bad input")
            return "fine"
    """
    client = await app_client(code)
    response = await client.post("/", json={"fail": True})
    assert response.status_code == 500
    assert response.json() == {"error": "ValueError: bad input"}
    assert (await client.post("/", json={})).text == "fine"
    err = capfd.readouterr().err
    assert "Traceback" in err and "predict failed: ValueError: bad input" in err


async def test_http_exception_passthrough(app_client: AppClient) -> None:
    code = """
    from fastapi import HTTPException
    from starlette.exceptions import HTTPException as StarletteHTTPException
    class Predictor:
        async def predict(self, payload):
            if payload == 1:
                raise HTTPException(status_code=422, detail={"field": "x"}, headers={"x-why": "y"})
            raise StarletteHTTPException(status_code=404, detail="no such thing")
    """
    client = await app_client(code)
    response = await client.post("/", json=1)
    assert response.status_code == 422
    assert response.json() == {"detail": {"field": "x"}}
    assert response.headers["x-why"] == "y"
    response = await client.post("/", json=2)
    assert response.status_code == 404 and response.json() == {"detail": "no such thing"}


async def test_post_predict_runs_after_response(app_client: AppClient, tmp_path: Path) -> None:
    out = tmp_path / "post.txt"
    code = f"""
    class Predictor:
        def predict(self, payload):
            return {{"doubled": payload * 2}}
        def post_predict(self, response, payload, query_params, headers):
            with open({str(out)!r}, "a") as f:
                f.write(f"{{response}}|{{payload}}|{{query_params}}|{{headers['x-h']}}\\n")
    """
    client = await app_client(code)
    response = await client.post("/?q=1", json=21, headers={"x-h": "hv"})
    assert response.json() == {"doubled": 42}
    # ASGITransport returns after background tasks ran
    assert out.read_text() == "{'doubled': 42}|21|{'q': '1'}|hv\n"


async def test_async_post_predict_errors_are_logged(app_client: AppClient, capfd: Any) -> None:
    code = """
    class Predictor:
        def predict(self, payload):
            return "ok"
        async def post_predict(self, response, payload):
            raise RuntimeError("post boom")
    """
    client = await app_client(code)
    assert (await client.post("/")).text == "ok"
    assert (await client.post("/")).text == "ok"
    assert "post_predict failed: RuntimeError: post boom" in capfd.readouterr().err


async def test_request_timeout_is_504(app_client: AppClient) -> None:
    code = """
    import time
    class Predictor:
        def predict(self, payload):
            time.sleep(payload)
            return "done"
    """
    client = await app_client(code, serving={"request_timeout": 0.2})
    response = await client.post("/", json=2)
    assert response.status_code == 504
    assert "timed out" in response.json()["error"]


async def test_user_timeout_error_is_500_not_504(app_client: AppClient) -> None:
    code = "class Predictor:\n    def predict(self, payload):\n        raise TimeoutError('mine')\n"
    client = await app_client(code)
    response = await client.post("/")
    assert response.status_code == 500 and response.json() == {"error": "TimeoutError: mine"}


async def test_readyz_503_while_loading_then_200(tmp_path: Path) -> None:
    gate = threading.Event()

    class Slow:
        def predict(self, payload: Any) -> str:
            return "loaded"

    def loader(cfg: Any) -> PredictorHandle:
        assert gate.wait(30)
        return PredictorHandle(Slow())

    app = create_app(runtime_config(tmp_path), loader=loader)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://r") as client:
            response = await client.get("/readyz")
            assert response.status_code == 503
            assert response.json() == {"ready": False, "state": "loading"}
            assert (await client.get("/healthz")).status_code == 200
            early = await client.post("/")
            assert early.status_code == 503 and early.headers["retry-after"] == "1"
            gate.set()
            await wait_ready_async(client)
            assert (await client.post("/")).text == "loaded"


async def test_failed_load_reported(tmp_path: Path, capfd: Any) -> None:
    fatal: list[BaseException] = []

    def loader(cfg: Any) -> PredictorHandle:
        raise OSError("disk gone")

    app = create_app(runtime_config(tmp_path), loader=loader, on_fatal=fatal.append)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://r") as client:
            for _ in range(500):
                if fatal:
                    break
                await asyncio.sleep(0.01)
            assert isinstance(fatal[0], OSError)
            response = await client.get("/readyz")
            assert response.status_code == 503
            assert response.json() == {"ready": False, "state": "failed", "error": "OSError: disk gone"}
    assert "workbench: predictor failed to load: OSError: disk gone" in capfd.readouterr().err


async def test_draining_readyz(app_client: AppClient) -> None:
    client = await app_client("class Predictor:\n    def predict(self, payload):\n        return 1\n")
    client.app.state.runtime.begin_drain()
    response = await client.get("/readyz")
    assert response.status_code == 503 and response.json()["state"] == "draining"
    assert (await client.post("/")).status_code == 200  # in-flight connections still served
