"""Small pure pieces: build spec parsing, docker stream events, exit messages, log tails."""

from __future__ import annotations

from pathlib import Path

import pytest
from workbench.agent.buildctx import BadContext, dockerfile_base_default, parse_spec
from workbench.agent.logfiles import tail_lines
from workbench.agent.runtimes.base import check_artifact_name, describe_exit
from workbench.agent.runtimes.docker_build import events_from_stream


def test_parse_spec() -> None:
    assert parse_spec(None).requirements == []
    spec = parse_spec(
        b'{"requirements": ["r.txt"], "build_commands": [["echo", "hi"]],'
        b' "wheelhouse": null, "apt": ["curl"]}'
    )
    assert spec.requirements == ["r.txt"] and spec.build_commands == [["echo", "hi"]]
    for bad in (
        b"[1]",
        b'{"build_commands": "make"}',
        b'{"requirements": "r.txt"}',
        b'{"build_commands": [[]]}',
        b'{"ca_bundle": 3}',
    ):
        with pytest.raises(BadContext):
            parse_spec(bad)


def test_dockerfile_base_default() -> None:
    assert dockerfile_base_default("ARG BASE_IMAGE=python:3.11-slim\nFROM ${BASE_IMAGE}\n") == (
        "python:3.11-slim"
    )
    assert dockerfile_base_default("FROM debian\n") is None


def test_events_from_docker_stream() -> None:
    events = list(
        events_from_stream(
            iter(
                [
                    {"stream": "Step 1/3 : FROM x\n"},
                    {"stream": " ---> abc\n"},
                    {"aux": {"ID": "s"}},
                    {"errorDetail": {"message": "boom"}, "error": "boom"},
                    {"stream": "never"},
                ]
            )
        )
    )
    assert [(e.kind, e.step, e.total_steps, e.message) for e in events] == [
        ("step", 1, 3, "FROM x"),
        ("log", None, None, " ---> abc"),
        ("error", None, None, "boom"),
    ]


def test_describe_exit() -> None:
    assert "SIGKILL/OOM" in describe_exit(137)
    assert "predictor failed to load" in describe_exit(3)
    assert "unknown" in describe_exit(None)


def test_artifact_names() -> None:
    assert check_artifact_name("wb-api:abc123") is None
    assert check_artifact_name("reg/x/y:1") is None
    for bad in ("../x", "", "a b", "-x", "a/../b"):
        assert check_artifact_name(bad) is not None


def test_tail_lines(tmp_path: Path) -> None:
    f = tmp_path / "log"
    f.write_text("".join(f"line {i}\n" for i in range(10_000)))
    assert tail_lines(f, 3) == ["line 9997", "line 9998", "line 9999"]
    assert tail_lines(tmp_path / "missing", 3) == []
