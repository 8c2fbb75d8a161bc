"""examples/tinylm as the model server the tests of container APIs deploy: real HTTP against the
server run as a plain process (`python -m tinylm`) and as a container built from its Dockerfile,
with the real `openai` package as the client."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.base_image import available_base_image
from tests.support.real_parts import EXAMPLES, free_port, require_docker, wait_until

TINYLM = EXAMPLES / "tinylm"
TOKEN_DELAY = 0.02
LOAD_DELAY = 1.5  # long enough to see /health answer 503 while the model "loads"
LABEL = "workbench.test=tinylm-server"


@dataclass
class Served:
    """A running tinylm: where it listens, the model name it serves, its log, what it said while loading."""

    url: str
    model: str
    logs: Callable[[], str]
    while_loading: dict[str, httpx.Response] = field(default_factory=dict)

    _client: openai.OpenAI | None = None

    def client(self) -> openai.OpenAI:
        if self._client is None:
            self._client = openai.OpenAI(base_url=f"{self.url}/v1", api_key="unused", max_retries=0,
                                         timeout=30)
        return self._client

    def metric(self, name: str, **labels: str) -> float:
        """One sample of the server's /metrics, e.g. tinylm_requests_running."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        raise AssertionError(f"{name} {labels} is not in /metrics:\n{text}")


def _wait_ready(url: str, logs: Callable[[], str], model: str,
                alive: Callable[[], bool]) -> dict[str, httpx.Response]:
    """Poll /health until 200; keep the first 503 and a completion asked for while loading."""
    seen: dict[str, httpx.Response] = {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if not alive():
            raise AssertionError(f"tinylm exited before it was ready:\n{logs()}")
        try:
            health = httpx.get(f"{url}/health", timeout=2)
        except httpx.TransportError:
            time.sleep(0.05)
            continue
        if health.status_code == 200:
            return seen
        if health.status_code == 503 and "health" not in seen:
            seen["health"] = health
            seen["completion"] = httpx.post(f"{url}/v1/completions", json={"model": model, "prompt": "x"},
                                            timeout=5)
        time.sleep(0.05)
    raise AssertionError(f"tinylm was not healthy within 120 s:\n{logs()}")


@contextlib.contextmanager
def _as_process(tmp_path: Path) -> Iterator[Served]:
    """`python -m tinylm` with PORT; no model file yet, so it trains one while /health says 503."""
    port = free_port()
    log_path = tmp_path / "tinylm.log"
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1",
           "TINYLM_MODEL_PATH": str(tmp_path / "model.npz"),
           "TINYLM_TOKEN_DELAY": str(TOKEN_DELAY), "TINYLM_MAX_CONCURRENCY": "2",
           "TINYLM_LOAD_DELAY": str(LOAD_DELAY), "PYTHONUNBUFFERED": "1"}
    env.pop("TINYLM_MODEL_NAME", None)
    with log_path.open("wb") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "tinylm"], cwd=TINYLM, env=env, stdout=log_file,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def logs() -> str:
        return log_path.read_text(errors="replace")

    try:
        seen = _wait_ready(url, logs, "tinylm", lambda: process.poll() is None)
        yield Served(url=url, model="tinylm", logs=logs, while_loading=seen)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def _docker(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


@contextlib.contextmanager
def _as_container(tmp_path: Path) -> Iterator[Served]:
    """The image built from examples/tinylm/Dockerfile (training during the build), run with -p."""
    from workbench.images.certs import find_ca_bundle

    context = tmp_path / "context"
    shutil.copytree(TINYLM, context, ignore=shutil.ignore_patterns("model.npz", "__pycache__", "*.pyc"))
    ca_bundle = find_ca_bundle()
    if ca_bundle is not None:  # a TLS-intercepting proxy between the build and PyPI
        (context / "certs").mkdir()
        shutil.copy(ca_bundle, context / "certs" / "ca.pem")
    tag = f"workbench-test/tinylm:{uuid.uuid4().hex[:12]}"
    container = ""
    try:
        started = time.monotonic()
        _docker("build", "-q", "--force-rm", "--build-arg", f"BASE_IMAGE={available_base_image()}",
                "--label", LABEL, "-t", tag, str(context), timeout=900)
        built = time.monotonic() - started
        size = int(_docker("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip())
        print(f"\ntinylm image: built in {built:.1f} s, {size / 1e6:.0f} MB")
        model = "tinylm-test"
        container = _docker(
            "run", "-d", "--label", LABEL, "-p", "127.0.0.1::8080", "-e", f"TINYLM_MODEL_NAME={model}",
            "-e", f"TINYLM_TOKEN_DELAY={TOKEN_DELAY}", "-e", "TINYLM_MAX_CONCURRENCY=2",
            "-e", f"TINYLM_LOAD_DELAY={LOAD_DELAY}", tag).stdout.strip()
        published = _docker("port", container, "8080/tcp").stdout.splitlines()[0].strip()
        url = f"http://{published}"

        def logs() -> str:
            result = _docker("logs", container, check=False)
            return result.stdout + result.stderr

        def alive() -> bool:
            state = _docker("inspect", "--format", "{{.State.Running}}", container, check=False)
            return state.stdout.strip() == "true"

        seen = _wait_ready(url, logs, model, alive)
        yield Served(url=url, model=model, logs=logs, while_loading=seen)
    finally:
        if container:
            _docker("rm", "-f", container, check=False)
        _docker("rmi", "-f", tag, check=False)


@pytest.fixture(scope="module", params=["process", pytest.param("docker", marks=pytest.mark.docker)])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    if request.param == "docker":
        require_docker()
    start = _as_container if request.param == "docker" else _as_process
    with start(tmp_path_factory.mktemp(f"tinylm-{request.param}")) as server:
        yield server


def _error(response: httpx.Response, status: int, param: str | None = None, code: str | None = None) -> str:
    """The OpenAI error body, checked; its message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    assert body["error"]["message"] and body["error"]["type"]
    assert (body["error"]["param"], body["error"]["code"]) == (param, code), body
    return str(body["error"]["message"])


def test_health_503_while_loading_then_models(served: Served) -> None:
    loading = served.while_loading
    assert loading["health"].status_code == 503 and loading["health"].json() == {"status": "loading"}
    _error(loading["completion"], 503, code="model_loading")
    assert loading["completion"].headers["retry-after"] == "1"
    health = httpx.get(f"{served.url}/health", timeout=5)
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "model": served.model, "device": "cpu"}
    assert "on cpu with numpy" in served.logs()  # which device it uses is in its start-up log
    models = served.client().models.list()
    assert [model.id for model in models.data] == [served.model]
    assert models.data[0].object == "model" and models.data[0].owned_by == "tinylm"
    assert served.client().models.retrieve(served.model).id == served.model
    with pytest.raises(openai.NotFoundError):
        served.client().models.retrieve("gpt-4")


def test_completion(served: Served) -> None:
    client = served.client()
    answer = client.completions.create(model=served.model, prompt="Alice was", max_tokens=24, seed=7)
    assert answer.object == "text_completion" and answer.id.startswith("cmpl-")
    assert answer.model == served.model
    assert abs(answer.created - time.time()) < 60
    [choice] = answer.choices
    assert choice.index == 0 and choice.finish_reason == "length" and len(choice.text) == 24
    assert answer.usage is not None
    usage = answer.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (9, 24, 33)
    again = client.completions.create(model=served.model, prompt="Alice was", max_tokens=24, seed=7)
    assert again.choices[0].text == choice.text  # a seed gives the same text
    assert again.system_fingerprint == answer.system_fingerprint

    stopped = client.completions.create(model=served.model, prompt="Alice", max_tokens=300, temperature=0,
                                        stop=[" ", "e"])
    assert stopped.choices[0].finish_reason == "stop"
    assert " " not in stopped.choices[0].text and "e" not in stopped.choices[0].text
    assert stopped.usage is not None and stopped.usage.completion_tokens == len(stopped.choices[0].text) + 1


def test_chat_completion(served: Served) -> None:
    messages: Any = [{"role": "system", "content": "You are a book."},
                     {"role": "user", "content": "Who is the Queen of Hearts?"}]
    answer = served.client().chat.completions.create(model=served.model, messages=messages, max_tokens=20,
                                                     seed=1, temperature=0.8, top_p=0.9)
    assert answer.object == "chat.completion" and answer.id.startswith("chatcmpl-")
    [choice] = answer.choices
    assert choice.message.role == "assistant" and len(choice.message.content or "") == 20
    assert choice.finish_reason == "length"
    prompt_tokens = len("You are a book.\n\nWho is the Queen of Hearts?\n\n")
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (prompt_tokens, 20)
    assert answer.usage.total_tokens == prompt_tokens + 20


def test_chat_streams_one_chunk_per_token(served: Served) -> None:
    started = time.monotonic()
    stream = served.client().chat.completions.create(
        model=served.model, messages=[{"role": "user", "content": "Tell me a story."}], max_tokens=30,
        stream=True, stream_options={"include_usage": True})
    arrivals: list[tuple[float, Any]] = [(time.monotonic(), chunk) for chunk in stream]
    assert time.monotonic() - started < 20  # a hang bound; the pace itself is 30 tokens, 20 ms apart
    chunks = [chunk for _, chunk in arrivals]
    assert all(chunk.object == "chat.completion.chunk" and chunk.id == chunks[0].id for chunk in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    content = [chunk for chunk in chunks[1:] if chunk.choices and chunk.choices[0].delta.content]
    assert len(content) == 30 and all(len(chunk.choices[0].delta.content) == 1 for chunk in content)
    final = [chunk for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason]
    assert [chunk.choices[0].finish_reason for chunk in final] == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 30
    # chunk by chunk: most of them arrived well before the last one (not all at the end)
    last = arrivals[-1][0]
    assert sum(1 for at, _ in arrivals if at < last - 0.15) >= 10


def test_completion_stream_is_openai_sse(served: Served) -> None:
    """The raw wire: `data: {json}` events, one per token, the finish reason, then `data: [DONE]`."""
    body = {"model": served.model, "prompt": "The Cat", "max_tokens": 12, "stream": True}
    with httpx.stream("POST", f"{served.url}/v1/completions", json=body, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-request-id"].startswith("cmpl-")
        events = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in events) and events[-1] == "data: [DONE]"
    chunks = [json.loads(line[len("data: "):]) for line in events[:-1]]
    assert all(chunk["object"] == "text_completion" for chunk in chunks)
    assert [len(chunk["choices"][0]["text"]) for chunk in chunks] == [1] * 12 + [0]
    assert [chunk["choices"][0]["finish_reason"] for chunk in chunks] == [None] * 12 + ["length"]

    answer = served.client().completions.create(model=served.model, prompt="The Cat", max_tokens=12, seed=3)
    streamed = served.client().completions.create(model=served.model, prompt="The Cat", max_tokens=12,
                                                  seed=3, stream=True)
    assert "".join(chunk.choices[0].text for chunk in streamed) == answer.choices[0].text


def _open_stream(served: Served, max_tokens: int) -> Any:
    return served.client().completions.create(model=served.model, prompt="Alice", max_tokens=max_tokens,
                                              stream=True)


def test_gauges_count_running_and_waiting(served: Served) -> None:
    """TINYLM_MAX_CONCURRENCY=2: a third request waits, and counts as waiting, until a slot frees."""
    tokens_before = served.metric("tinylm_generated_tokens_total")
    streams = [_open_stream(served, 60) for _ in range(3)]
    try:
        wait_until(lambda: (served.metric("tinylm_requests_running"),
                            served.metric("tinylm_requests_waiting")) == (2.0, 1.0),
                   timeout=5, interval=0.02, what="2 running and 1 waiting")
        texts = ["".join(chunk.choices[0].text for chunk in stream) for stream in streams]
    finally:
        for stream in streams:
            stream.close()
    assert [len(text) for text in texts] == [60, 60, 60]
    assert (served.metric("tinylm_requests_running"), served.metric("tinylm_requests_waiting")) == (0.0, 0.0)
    assert served.metric("tinylm_generated_tokens_total") - tokens_before == 180


def test_client_disconnect_stops_generation(served: Served) -> None:
    cancelled = served.metric("tinylm_requests_cancelled_total")
    tokens_before = served.metric("tinylm_generated_tokens_total")
    stream = _open_stream(served, 2000)  # 40 s if nobody stopped it
    read = 0
    for chunk in stream:
        read += len(chunk.choices[0].text)
        if read >= 5:
            break
    before_close = served.metric("tinylm_generated_tokens_total")
    stream.close()
    wait_until(lambda: served.metric("tinylm_requests_cancelled_total") == cancelled + 1, timeout=2,
               interval=0.02, what="the server to see the disconnect")
    assert served.metric("tinylm_requests_running") == 0.0
    at_disconnect = served.metric("tinylm_generated_tokens_total")
    assert before_close - tokens_before >= read
    assert at_disconnect - before_close <= 3  # a token or two in flight at most (one every 20 ms)
    time.sleep(10 * TOKEN_DELAY)
    assert served.metric("tinylm_generated_tokens_total") == at_disconnect  # generation stopped

    # a request still waiting for a slot, and a non-streaming one, are aborted the same way
    busy = [_open_stream(served, 2000) for _ in range(2)]
    try:
        wait_until(lambda: served.metric("tinylm_requests_running") == 2.0, timeout=5, interval=0.02,
                   what="both slots taken")
        queued = _open_stream(served, 50)
        wait_until(lambda: served.metric("tinylm_requests_waiting") == 1.0, timeout=5, interval=0.02,
                   what="a waiting request")
        queued.close()
        wait_until(lambda: served.metric("tinylm_requests_waiting") == 0.0, timeout=2, interval=0.02,
                   what="the waiting request to leave the queue")
    finally:
        for stream in busy:
            stream.close()
    wait_until(lambda: served.metric("tinylm_requests_cancelled_total") == cancelled + 4, timeout=2,
               interval=0.02, what="three more cancellations")

    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{served.url}/v1/completions",
                   json={"model": served.model, "prompt": "A", "max_tokens": 2000},
                   timeout=httpx.Timeout(10, read=0.3))
    wait_until(lambda: served.metric("tinylm_requests_cancelled_total") == cancelled + 5, timeout=2,
               interval=0.02, what="the non-streaming request's cancellation")
    assert served.metric("tinylm_requests_running") == 0.0
    assert served.metric("tinylm_requests_finished_total", finish_reason="cancelled") >= 5


def test_bad_input_is_an_openai_error_and_changes_nothing(served: Served) -> None:
    url, model = served.url, served.model
    tokens = served.metric("tinylm_generated_tokens_total")
    chat = f"{url}/v1/chat/completions"
    _error(httpx.post(chat, content=b'{"model": ', timeout=5), 400)
    _error(httpx.post(chat, content=b"\xff\xfe", timeout=5), 400)
    _error(httpx.post(chat, json=["not", "an", "object"], timeout=5), 400)
    assert "'messages'" in _error(httpx.post(chat, json={"model": model}, timeout=5), 400, "messages",
                                  "missing_required_parameter")
    _error(httpx.post(chat, json={"model": model, "messages": []}, timeout=5),
           400, "messages", "invalid_value")
    wizard = {"model": model, "messages": [{"role": "wizard", "content": "hi"}]}
    _error(httpx.post(chat, json=wizard, timeout=5), 400, "messages.0.role", "invalid_value")
    other = {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}
    message = _error(httpx.post(chat, json=other, timeout=5), 400, "model", "model_not_found")
    assert "gpt-4" in message and model in message
    completions = f"{url}/v1/completions"
    negative = {"model": model, "prompt": "A", "max_tokens": -1}
    response = httpx.post(completions, json=negative, timeout=5)
    assert "-1" in _error(response, 400, "max_tokens", "invalid_value")
    for field_name, value in [("temperature", 3), ("top_p", -0.5), ("stop", ["", "x"]), ("stream", "often"),
                              ("n", 2), ("prompt", 42)]:
        body = {"model": model, "prompt": "A", field_name: value}
        response = httpx.post(completions, json=body, timeout=5)
        assert response.status_code == 400 and response.json()["error"]["param"].startswith(field_name), body
    _error(httpx.post(completions, content=b"x" * (2 << 20), timeout=10), 413, code="body_too_large")
    assert "/v1/nothing" in _error(httpx.get(f"{url}/v1/nothing", timeout=5), 404)
    _error(httpx.get(chat, timeout=5), 405)
    with pytest.raises(openai.BadRequestError) as raised:
        served.client().chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}])
    assert raised.value.code == "model_not_found" and raised.value.param == "model"
    assert served.metric("tinylm_generated_tokens_total") == tokens
    assert (served.metric("tinylm_requests_running"), served.metric("tinylm_requests_waiting")) == (0.0, 0.0)
    assert httpx.get(f"{url}/health", timeout=5).status_code == 200


def test_concurrent_streams_arrive_interleaved(served: Served) -> None:
    """Two streams at once are generated in one batch: both progress together, neither waits."""
    firsts: dict[int, float] = {}
    lasts: dict[int, float] = {}

    def consume(index: int) -> None:
        for _chunk in _open_stream(served, 25):
            firsts.setdefault(index, time.monotonic())
            lasts[index] = time.monotonic()

    threads = [threading.Thread(target=consume, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert set(firsts) == {0, 1}
    assert max(firsts.values()) < min(lasts.values())  # each started before the other ended


def _run_to_exit(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tinylm", *args], cwd=TINYLM, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PORT": str(free_port()), **env})


def test_a_server_without_its_model_exits_and_says_how_to_make_one(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model.npz"
    result = _run_to_exit({"TINYLM_MODEL_PATH": str(missing), "TINYLM_NO_TRAIN": "1"})
    assert result.returncode == 1, result.stderr
    assert f"{missing} does not exist" in result.stderr and "python -m tinylm.train" in result.stderr
    assert not missing.parent.exists()


def test_bad_settings_exit_before_listening(tmp_path: Path) -> None:
    result = _run_to_exit({"TINYLM_TOKEN_DELAY": "fast"})
    assert result.returncode == 2 and "TINYLM_TOKEN_DELAY" in result.stderr and "'fast'" in result.stderr
    result = _run_to_exit({}, "--port", "0")
    assert result.returncode == 2 and "PORT" in result.stderr
