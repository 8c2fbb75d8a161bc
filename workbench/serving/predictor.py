"""A loaded user predictor: which arguments its methods take, and how to call them."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from workbench.wire.errors import Failed

#: Request details injected by parameter name into ``predict`` and ``post_predict``.
INJECTABLE = ("query_params", "headers")


class PredictorError(Failed):
    """The user's predictor object does not fit the interface."""


def wanted_params(fn: Callable[..., Any], names: tuple[str, ...] = INJECTABLE) -> frozenset[str]:
    """The names out of `names` that `fn` accepts (all of them if it takes ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return frozenset()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return frozenset(names)
    return frozenset(n for n in names if n in params)


def is_async(fn: Callable[..., Any]) -> bool:
    """Whether calling `fn` returns an awaitable (``async def``, also on ``__call__``)."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004
    )


class PredictorHandle:
    """Wraps the user's predictor instance.

    ``predict(payload, [query_params], [headers])`` and the optional
    ``post_predict(response, payload, [query_params], [headers])`` get the optional arguments
    only when their signature names them. With dynamic batching, ``payload``,
    ``query_params`` and ``headers`` given to ``predict`` are lists (one item per request,
    in order) and ``predict`` must return a list of the same length; ``post_predict`` is
    still called once per request, with that request's own response, payload,
    query_params and headers.
    """

    def __init__(self, instance: object) -> None:
        predict = getattr(instance, "predict", None)
        if not callable(predict):
            raise PredictorError(f"{type(instance).__name__} has no predict() method")
        self.instance = instance
        self._predict: Callable[..., Any] = predict
        self.predict_is_async = is_async(predict)
        #: calling it makes a generator and runs none of its code: no thread needed
        self.predict_is_generator = (inspect.isgeneratorfunction(predict)
                                     or inspect.isasyncgenfunction(predict))
        self._predict_wants = wanted_params(predict)
        post = getattr(instance, "post_predict", None)
        self._post: Callable[..., Any] | None = post if callable(post) else None
        self.post_is_async = self._post is not None and is_async(self._post)
        self._post_wants = wanted_params(self._post) if self._post else frozenset()
        self.wants_query_params = "query_params" in self._predict_wants | self._post_wants
        self.wants_headers = "headers" in self._predict_wants | self._post_wants

    @property
    def has_post_predict(self) -> bool:
        return self._post is not None

    def bind_predict(self, payload: Any, query_params: Any, headers: Any) -> Callable[[], Any]:
        """``predict`` with its arguments bound; call it (and await it if async)."""
        kwargs = _kwargs(self._predict_wants, query_params, headers)
        return functools.partial(self._predict, payload, **kwargs)

    def bind_post_predict(
        self, response: Any, payload: Any, query_params: Any, headers: Any
    ) -> Callable[[], Any]:
        """``post_predict`` with its arguments bound."""
        if self._post is None:
            raise PredictorError("predictor has no post_predict() method")
        kwargs = _kwargs(self._post_wants, query_params, headers)
        return functools.partial(self._post, response, payload, **kwargs)


def _kwargs(wants: frozenset[str], query_params: Any, headers: Any) -> dict[str, Any]:
    if not wants:
        return {}
    kwargs: dict[str, Any] = {}
    if "query_params" in wants:
        kwargs["query_params"] = query_params
    if "headers" in wants:
        kwargs["headers"] = headers
    return kwargs
