import io

import pytest
from rich.console import Console

from workbench.images.progress import BuildFailed, parse_events, render_build
from workbench.models import BuildEvent


def _console(terminal: bool = False) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=terminal, width=120, color_system=None), out


EVENTS = [
    BuildEvent(kind="step", step=1, total_steps=3, message="FROM workbench/python:3.11-bookworm"),
    BuildEvent(kind="log", message="Collecting fastapi\nSaved fastapi.whl"),
    BuildEvent(kind="step", step=2, total_steps=3, message="RUN pip install"),
    BuildEvent(kind="step", step=3, total_steps=3, message="COPY project /app"),
    BuildEvent(kind="done", artifact="workbench/demo:0123456789abcdef", message="built"),
]


def test_plain_mode_prints_lines_and_returns_artifact() -> None:
    console, out = _console()
    assert render_build(EVENTS, console=console) == "workbench/demo:0123456789abcdef"
    text = out.getvalue()
    assert "Step 1/3: FROM workbench/python:3.11-bookworm" in text
    assert "  Collecting fastapi" in text and "Step 3/3: COPY project /app" in text
    assert "built workbench/demo:0123456789abcdef" in text


def test_ndjson_lines_are_accepted() -> None:
    lines = [event.model_dump_json() + "\n" for event in EVENTS]
    console, _ = _console()
    assert render_build([*lines[:2], "\n", *lines[2:]], console=console).startswith("workbench/demo")
    assert [e.kind for e in parse_events([line.encode() for line in lines])][-1] == "done"


def test_live_mode_renders_on_a_terminal() -> None:
    console, out = _console(terminal=True)
    cached = [*EVENTS[:-1], BuildEvent(kind="done", artifact="workbench/demo:1", cached=True)]
    assert render_build(cached, console=console) == "workbench/demo:1"
    assert "workbench/demo:1" in out.getvalue()


@pytest.mark.parametrize("live", [False, True])
def test_error_raises_with_the_log_tail(live: bool) -> None:
    console, _ = _console(terminal=live)
    logs = [BuildEvent(kind="log", message=f"line {n}") for n in range(30)]
    events = [EVENTS[0], *logs, BuildEvent(kind="error", message="pip install failed (exit 1)")]
    with pytest.raises(BuildFailed) as caught:
        render_build(events, console=console, live=live)
    assert caught.value.message == "pip install failed (exit 1)"
    assert caught.value.log_tail == [f"line {n}" for n in range(10, 30)]
    assert "line 29" in str(caught.value)


def test_stream_without_result_fails() -> None:
    console, _ = _console()
    with pytest.raises(BuildFailed, match="without a result"):
        render_build(EVENTS[:2], console=console)


def test_garbage_line_is_a_validation_error() -> None:
    console, _ = _console()
    with pytest.raises(ValueError):
        render_build(['{"kind": "nonsense"}'], console=console)
