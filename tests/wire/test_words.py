"""pydantic's errors in the user's words, sizes as workbench.yaml writes them, `--since` values."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel, Field, ValidationError

from workbench.cli.times import parse_since
from workbench.wire.control import AddHostRequest, ScaleRequest
from workbench.wire.replica import ServingConfig
from workbench.wire.sizes import parse_bytes, size_text
from workbench.wire.validation import describe, in_words


def _error(model: type[BaseModel], **values: object) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        model(**values)
    return caught.value


def test_scale_errors_name_the_flag() -> None:
    flags = {"replicas": "--replicas", "min_replicas": "--min", "max_replicas": "--max"}
    assert in_words(_error(ScaleRequest, replicas=-1), flags) == "--replicas must be 0 or more"
    assert in_words(_error(ScaleRequest, replicas=-1)) == "replicas must be 0 or more"
    assert in_words(_error(ScaleRequest, max_replicas=0, min_replicas=-2), flags) == (
        "--min must be 0 or more; --max must be 1 or more")
    assert in_words(_error(ScaleRequest, replicas="many")) == "replicas must be a whole number, not 'many'"
    assert in_words(_error(ScaleRequest, bogus=1)) == "bogus is not a known field"


def test_a_pattern_error_shows_the_pattern_and_says_it_in_words() -> None:
    text = in_words(_error(AddHostRequest, name="UX_Bad", target="x"), {"name": "NAME"},
                    {"name": "lowercase letters, digits and '-'"})
    assert text == "NAME 'UX_Bad' does not match ^[a-z][a-z0-9-]{0,62}$ (lowercase letters, digits and '-')"


def test_other_errors_keep_their_message_without_pydantics_prefix() -> None:
    class Checked(BaseModel):
        size: int = Field(gt=0)

    assert describe([{"type": "value_error", "loc": ("body", "x"), "msg": "Value error, x is odd"}]) == (
        "x x is odd")
    assert in_words(_error(Checked, size=0)) == "size must be more than 0"
    assert describe([]) == "invalid input"


def test_sizes() -> None:
    assert parse_bytes("1Gi") == 2**30 and parse_bytes("10Mi") == 10 * 2**20 and parse_bytes(5) == 5
    assert ServingConfig(max_body_bytes="1Gi").max_body_bytes == 2**30  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        ServingConfig(max_body_bytes="lots")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        ServingConfig(max_body_bytes="4Gi")  # type: ignore[arg-type]  # over the 2 GiB limit
    assert size_text(10 * 2**20) == "10Mi (10485760 bytes)" and size_text(1000) == "1000 bytes"


def test_since_takes_durations_and_times() -> None:
    now = 1_000_000.0
    assert parse_since("10m", now) == now - 600
    assert parse_since("1h30m", now) == now - 5400
    assert parse_since("2d", now) == now - 2 * 86400
    assert parse_since("1500.5", now) == 1500.5
    assert parse_since("2026-01-02T13:23:37Z") == datetime(2026, 1, 2, 13, 23, 37, tzinfo=UTC).timestamp()
    local = datetime(2026, 1, 2, 13, 23, 37).astimezone().timestamp()
    assert parse_since("2026-01-02T13:23:37") == local  # no zone: local time, as docker reads it
    assert abs(parse_since("1s") - (time.time() - 1)) < 1
    for wrong in ("", "10x", "soon", "m10"):
        with pytest.raises(ValueError, match="is not a duration"):
            parse_since(wrong)
