"""workbench.serving.predictor: argument injection by name."""

from __future__ import annotations

from typing import Any

import pytest

from workbench.serving.predictor import PredictorError, PredictorHandle, is_async, wanted_params


def test_wanted_params() -> None:
    def plain(payload: Any) -> None: ...
    def both(payload: Any, query_params: Any, headers: Any) -> None: ...
    def kw(payload: Any, **kwargs: Any) -> None: ...

    assert wanted_params(plain) == frozenset()
    assert wanted_params(both) == {"query_params", "headers"}
    assert wanted_params(kw) == {"query_params", "headers"}


def test_is_async() -> None:
    async def a() -> None: ...
    def s() -> None: ...

    assert is_async(a) and not is_async(s)


def test_bind_injects_only_named() -> None:
    class P:
        def predict(self, payload: Any, headers: Any) -> Any:
            return payload, headers

        def post_predict(self, response: Any, payload: Any, query_params: Any) -> Any:
            return response, payload, query_params

    handle = PredictorHandle(P())
    assert handle.wants_headers and handle.wants_query_params
    assert handle.bind_predict(1, {"q": "1"}, {"h": "2"})() == (1, {"h": "2"})
    assert handle.bind_post_predict("r", 1, {"q": "1"}, {"h": "2"})() == ("r", 1, {"q": "1"})


def test_no_injection_wanted() -> None:
    class P:
        async def predict(self, payload: Any) -> Any:
            return payload

    handle = PredictorHandle(P())
    assert handle.predict_is_async
    assert not handle.wants_headers and not handle.wants_query_params
    assert not handle.has_post_predict
    with pytest.raises(PredictorError):
        handle.bind_post_predict(1, 2, None, None)


def test_no_predict() -> None:
    with pytest.raises(PredictorError, match="no predict"):
        PredictorHandle(object())
