"""OpenAI's wire format: the request bodies tinylm reads, the responses and stream chunks it writes,
and OpenAI's error body `{"error": {"message", "type", "param", "code"}}`."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

MAX_TOKENS_LIMIT = 8192
_UNION_TAGS = ("str", "int", "float", "bool", "list", "dict", "none")


class OpenAIError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class _Request(BaseModel):
    # Fields OpenAI defines that tinylm does not use (user, logprobs, penalties, ...) are ignored.
    model_config = ConfigDict(extra="ignore")

    model: str
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] = 1.0
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0
    n: Annotated[int, Field(ge=1, le=1)] = 1
    stop: str | Annotated[list[Annotated[str, Field(min_length=1)]], Field(max_length=4)] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, stop: str | list[str] | None) -> str | list[str] | None:
        if stop == "":
            raise ValueError("a stop string must not be empty")
        return stop

    def stop_strings(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatCompletionRequest(_Request):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_tokens: Annotated[int, Field(ge=1, le=MAX_TOKENS_LIMIT)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1, le=MAX_TOKENS_LIMIT)] | None = None

    def prompt(self) -> str:
        """The conversation as the model reads it: the messages as paragraphs, then a new one."""
        return "".join(message.text() + "\n\n" for message in self.messages)

    def token_budget(self, default: int) -> int:
        return self.max_completion_tokens or self.max_tokens or default


class CompletionRequest(_Request):
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)]
    max_tokens: Annotated[int, Field(ge=1, le=MAX_TOKENS_LIMIT)] | None = None
    echo: bool = False

    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    def token_budget(self, default: int) -> int:
        return self.max_tokens or default


RequestModel = TypeVar("RequestModel", bound=BaseModel)


def parse_body(raw: bytes, model: type[RequestModel]) -> RequestModel:
    """The JSON body as `model`, or the OpenAI-shaped 400 that names the first bad field."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as error:
        raise OpenAIError(400, f"We could not parse the JSON body of your request ({error}). The body "
                          "must be a JSON object such as {\"model\": ..., \"messages\": [...]}.") from None
    if not isinstance(data, dict):
        raise OpenAIError(400, f"The request body must be a JSON object, not {type(data).__name__}.")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise _validation_error(error) from None


def _validation_error(error: ValidationError) -> OpenAIError:
    first = error.errors(include_url=False)[0]
    location: list[str] = []
    for part in first["loc"]:  # stop at pydantic's union tags such as `str` or `list[str]`
        if isinstance(part, str) and (part in _UNION_TAGS or not part.isidentifier()):
            break
        location.append(str(part))
    param = ".".join(location) or None
    if first["type"] == "missing":
        return OpenAIError(400, f"Missing required parameter: '{param}'.", param=param,
                           code="missing_required_parameter")
    got = first.get("input")
    shown = json.dumps(got)[:80] if isinstance(got, str | int | float | bool | None) else type(got).__name__
    return OpenAIError(400, f"Invalid '{param}': {first['msg']} (got {shown}).", param=param,
                       code="invalid_value")


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def chat_completion(*, id: str, created: int, model: str, fingerprint: str, text: str, finish_reason: str,
                    prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {"id": id, "object": "chat.completion", "created": created, "model": model,
            "system_fingerprint": fingerprint,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "logprobs": None, "finish_reason": finish_reason}],
            "usage": usage(prompt_tokens, completion_tokens)}


def chat_chunk(*, id: str, created: int, model: str, fingerprint: str, delta: dict[str, str] | None,
               finish_reason: str | None = None, usage: dict[str, int] | None = None,
               with_usage: bool = False) -> dict[str, Any]:
    """A `chat.completion.chunk`; `delta=None` is the usage-only chunk (no choices)."""
    chunk: dict[str, Any] = {"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                             "system_fingerprint": fingerprint}
    chunk["choices"] = [] if delta is None else [
        {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
    if with_usage:
        chunk["usage"] = usage
    return chunk


def text_completion(*, id: str, created: int, model: str, fingerprint: str, text: str, finish_reason: str,
                    prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {"id": id, "object": "text_completion", "created": created, "model": model,
            "system_fingerprint": fingerprint,
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}],
            "usage": usage(prompt_tokens, completion_tokens)}


def text_chunk(*, id: str, created: int, model: str, fingerprint: str, text: str | None,
               finish_reason: str | None = None, usage: dict[str, int] | None = None,
               with_usage: bool = False) -> dict[str, Any]:
    """A streamed `text_completion`; `text=None` is the usage-only chunk (no choices)."""
    chunk: dict[str, Any] = {"id": id, "object": "text_completion", "created": created, "model": model,
                             "system_fingerprint": fingerprint}
    chunk["choices"] = [] if text is None else [
        {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}]
    if with_usage:
        chunk["usage"] = usage
    return chunk


def model_card(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "tinylm"}


def sse(data: dict[str, Any] | str) -> bytes:
    """One Server-Sent Event carrying `data` (JSON, or a literal such as [DONE])."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {payload}\n\n".encode()
