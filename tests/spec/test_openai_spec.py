"""The spec of issue 12: openai.models, routing.policy: prefix and its affinity settings,
container.metrics and autoscaling.metric/target — each bad value named by file, line and field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from workbench.spec import SpecError, load_specs
from workbench.spec.models import ApiSpec


def problems(tmp_path: Path, spec: str) -> list[str]:
    (tmp_path / "workbench.yaml").write_text(textwrap.dedent(spec))
    with pytest.raises(SpecError) as caught:
        load_specs(tmp_path)
    file = str(tmp_path / "workbench.yaml")
    return [str(problem).removeprefix(file + ":") for problem in caught.value.problems]


def test_good_settings_load(tmp_path: Path) -> None:
    (tmp_path / "workbench.yaml").write_text(textwrap.dedent("""\
        name: llm
        container: {image: vllm/vllm-openai:v0.6.3, metrics: /metrics}
        openai: {models: [meta-llama/Llama-3-8B, llama:8b]}
        routing: {policy: prefix, affinity: header:X-Session-ID, affinity_prefix: 512,
                  affinity_load_factor: 1.5}
        autoscaling: {metric: "vllm:num_requests_waiting", target: 2}
        """))
    (loaded,) = load_specs(tmp_path)
    spec = loaded.spec
    assert spec.openai is not None and spec.openai.models == ["meta-llama/Llama-3-8B", "llama:8b"]
    assert spec.routing.affinity_header == "x-session-id" and spec.routing.affinity_prefix == 512
    assert spec.autoscaling is not None and spec.autoscaling.scraped and spec.autoscaling.target == 2
    assert spec.container is not None and spec.container.metrics == "/metrics"
    assert not ApiSpec(name="x").autoscaling and ApiSpec(name="x").routing.affinity_header is None


def test_openai_models_empty_or_bad(tmp_path: Path) -> None:
    assert problems(tmp_path, "name: a\nopenai:\n  models: []\n") == [
        "3: openai.models: name at least one model, e.g. models: [llama-3-8b]; or leave openai out"]
    assert "'a b' is not a model name" in problems(tmp_path, "name: a\nopenai: {models: [a b]}\n")[0]
    assert "'m' is named twice" in problems(tmp_path, "name: a\nopenai: {models: [m, m]}\n")[0]


def test_a_model_claimed_twice_in_a_file_names_the_first(tmp_path: Path) -> None:
    found = problems(tmp_path, """\
        - name: a
          openai: {models: [m]}
        - name: b
          container: {image: x}
          openai:
            models:
              - m
        """)
    assert found[-1:] == ["7: openai.models: model 'm' is claimed by API a (line 2) already; "
                     "a model name routes to one API"]


@pytest.mark.parametrize(("setting", "expected"), [
    ("affinity_prefix: 0", "routing.affinity_prefix: 0: the key's length in characters must be 1"),
    ("affinity_prefix: -5", "routing.affinity_prefix: -5: the key's length"),
    ("affinity_load_factor: 0", "routing.affinity_load_factor: 0.0: a replica's bound"),
    ("affinity_load_factor: -1", "routing.affinity_load_factor: -1.0: a replica's bound"),
    ("affinity: cookie", "routing.affinity: 'cookie': use prompt, or header:NAME"),
    ("affinity: 'header:'", "routing.affinity: 'header:': use prompt, or header:NAME"),
])
def test_prefix_policy_bad_settings(tmp_path: Path, setting: str, expected: str) -> None:
    (found,) = problems(tmp_path, f"name: a\nrouting:\n  policy: prefix\n  {setting}\n")
    assert found.startswith("4: " + expected), found


def test_affinity_settings_need_the_prefix_policy(tmp_path: Path) -> None:
    (found,) = problems(tmp_path, "name: a\nrouting:\n  affinity_prefix: 64\n")
    assert "affinity_prefix applies to policy: prefix (this API's policy is ewma)" in found


def test_scraped_metric_needs_a_target_and_a_name(tmp_path: Path) -> None:
    (found,) = problems(tmp_path, "name: a\nautoscaling:\n  metric: tgi_queue_size\n")
    assert "autoscaling on tgi_queue_size needs its per-replica target" in found
    (bad,) = problems(tmp_path, "name: a\nautoscaling: {metric: 'queue size', target: 1}\n")
    assert "'queue size' is not a Prometheus metric name" in bad
    (stray,) = problems(tmp_path, "name: a\nautoscaling: {target: 1}\n")
    assert "target_concurrency" in stray
    (path,) = problems(tmp_path, "name: a\ncontainer: {image: x, metrics: metrics}\n")
    assert "container.metrics: Value error, 'metrics' is not a URL path" in path or "not a URL path" in path


def test_openai_is_a_reserved_api_name(tmp_path: Path) -> None:
    (found,) = problems(tmp_path, "name: openai\n")
    assert "'openai' is reserved by workbench" in found
