"""`model:` / `models:` in workbench.yaml: sources, defaults, and every bad one named by file, line
and field."""

from __future__ import annotations

from pathlib import Path

from tests.spec.test_loader import problems, project
from workbench.spec import load_specs


def test_sources_and_their_defaults(tmp_path: Path) -> None:
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "model.bin").write_bytes(b"w")
    [loaded] = load_specs(project(tmp_path, """\
        name: llm
        models:
          - source: ./weights
          - source: hf://Org/Tiny-Model@v1.0
            include: ["*.safetensors", config.json]
            mount: /opt/tiny
          - source: https://example.com/files/ckpt.pt
            sha256: sha256:%s
        """ % ("ab" * 32)))
    first, hub, url = loaded.spec.model_specs
    assert (first.model_name, first.mount_path, first.parsed.kind) == ("weights", "/models/weights", "local")
    assert (hub.parsed.repo, hub.parsed.revision, hub.model_name, hub.mount_path) == (
        "Org/Tiny-Model", "v1.0", "tiny-model", "/opt/tiny")
    assert (url.model_name, url.sha256, url.parsed.kind) == ("ckpt.pt", "ab" * 32, "url")


def test_a_missing_local_source_names_file_line_and_field(tmp_path: Path) -> None:
    [message] = problems(project(tmp_path, "name: x\nmodel:\n  source: ./weights\n"))
    assert "workbench.yaml:3: model.source: ./weights not found (looked for " in message
    first, second = problems(project(tmp_path, "name: x\nmodels:\n  - source: /data/none\n  - source: ./w\n"))
    assert ":3: models.0.source: /data/none not found" in first
    assert ":4: models.1.source: ./w not found" in second


def test_bad_models_are_named(tmp_path: Path) -> None:
    cases = {
        "model:\n  source: hf://not-a-repo\n": ("model.source", "is not a Hugging Face repo"),
        "model:\n  source: http://example.com/w.bin\n": ("model.source", "use an https:// URL"),
        "model:\n  source: s3://bucket/w.bin\n": ("model.source", "unknown scheme s3://"),
        "model:\n  source: https://user:pw@example.com/w.bin\n": ("model.source", "no credentials"),
        "model:\n  source: hf://org/name\n  mount: /usr\n": ("model.mount", "would hide"),
        "model:\n  source: hf://org/name\n  mount: models/x\n": ("model.mount", "absolute path"),
        f"model:\n  source: hf://org/name\n  sha256: '{'ab' * 32}'\n": ("model", "sha256 checks an https://"),
        "model:\n  source: https://e.com/w.bin\n  include: ['*']\n": ("model", "include and exclude"),
        "model:\n  source: hf://org/name\n  name: Bad Name\n": ("model.name", "is not a model name"),
        "models:\n  - source: hf://org/a\n    name: m\n  - source: hf://org/b\n    name: m\n": (
            "models", "two models are named 'm'"),
        "model:\n  source: hf://org/a\nmodels:\n  - source: hf://org/b\n": ("models", "not both"),
        "model:\n  source: hf://org/name\n  revision: v1\n": ("model", "revision"),
    }
    for text, (field, words) in cases.items():
        found = problems(project(tmp_path, "name: x\n" + text))
        assert any(f": {field}" in p and words in p and "workbench.yaml:" in p for p in found), (text, found)
