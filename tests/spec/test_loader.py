"""workbench.yaml loading: good specs load, every bad one names file, line and field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from workbench.spec import SpecError, load_specs

PREDICTOR = "class Predictor:\n    def predict(self, payload):\n        return payload\n"


def project(tmp_path: Path, spec: str, predictor: str | None = PREDICTOR,
            name: str = "predictor.py") -> Path:
    (tmp_path / "workbench.yaml").write_text(textwrap.dedent(spec))
    if predictor is not None:
        (tmp_path / name).write_text(predictor)
    return tmp_path


def problems(path: Path) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_specs(path)
    return [str(problem) for problem in caught.value.problems]


def test_minimal_spec_gets_defaults(tmp_path: Path) -> None:
    [loaded] = load_specs(project(tmp_path, "name: echo\n"))
    spec = loaded.spec
    assert spec.name == "echo"
    assert spec.predictor.path == "predictor.py"
    assert spec.runtime == "auto"
    assert spec.image.base == "python:3.11-slim"
    assert spec.desired_replicas == 1
    assert loaded.project_dir == tmp_path.resolve()


def test_full_spec(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("six\n")
    [loaded] = load_specs(project(tmp_path, """
        name: full
        predictor:
          path: predictor.py
          class: Predictor
          config: {threshold: 0.5}
          requirements: requirements.txt
          env: {MODEL_SIZE: small, THREADS: 4}
        compute: {cpu: 0.5, mem: 512Mi, gpu: 1}
        autoscaling: {min_replicas: 0, max_replicas: 4, target_concurrency: 2}
        serving: {max_concurrency: 2, max_queue: 8, max_batch_size: 4, batch_timeout: 0.05}
        runtime: docker
        image: {apt: [libgomp1], pip: ["numpy>=1.26"], build_commands: [[python, -V]]}
    """))
    spec = loaded.spec
    assert spec.predictor.class_name == "Predictor"
    assert spec.predictor.env == {"MODEL_SIZE": "small", "THREADS": "4"}
    assert spec.compute.mem == 512 * 2**20
    assert spec.autoscaling is not None and spec.desired_replicas == 1
    assert spec.serving.max_batch_size == 4
    assert spec.image.build_commands == [["python", "-V"]]


def test_folder_with_spec_file_or_file_itself(tmp_path: Path) -> None:
    project(tmp_path, "name: a\n")
    assert load_specs(tmp_path)[0].spec.name == "a"
    assert load_specs(tmp_path / "workbench.yaml")[0].spec.name == "a"


def test_several_apis_in_one_file(tmp_path: Path) -> None:
    loaded = load_specs(project(tmp_path, "- name: one\n- name: two\n  replicas: 3\n"))
    assert [item.spec.name for item in loaded] == ["one", "two"]
    assert loaded[1].spec.desired_replicas == 3


def test_python_predictor_class_accepted(tmp_path: Path) -> None:
    code = "class PythonPredictor:\n    def predict(self, payload):\n        return 1\n"
    assert load_specs(project(tmp_path, "name: cortex\n", code))[0].spec.name == "cortex"


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    [message] = problems(project(tmp_path, "name: x\npredictor:\n  path: [unclosed\n"))
    assert "workbench.yaml:" in message and "YAML syntax error" in message


def test_unknown_field_names_line_field_and_allowed(tmp_path: Path) -> None:
    [message] = problems(project(tmp_path, "name: x\nserving:\n  max_concurency: 3\n"))
    assert f"{tmp_path.resolve() / 'workbench.yaml'}:3: serving.max_concurency: unknown field" in message
    assert "allowed: max_concurrency" in message


def test_wrong_type_names_line_and_field(tmp_path: Path) -> None:
    [message] = problems(project(tmp_path, "name: x\ncompute:\n  cpu: lots\n"))
    assert ":3: compute.cpu:" in message and "number" in message


def test_bad_literal_says_what_is_allowed(tmp_path: Path) -> None:
    [message] = problems(project(tmp_path, "name: x\nruntime: kubernetes\n"))
    assert ":2: runtime:" in message and "'docker'" in message and "'process'" in message


def test_bad_name_and_size_and_env(tmp_path: Path) -> None:
    found = problems(project(tmp_path, """
        - name: Bad_Name
        - name: ok
          compute: {mem: huge}
        - name: env
          predictor: {env: {"1BAD": x}}
    """))
    assert any("[0].name" in p and "lowercase" in p for p in found)
    assert any("[1].compute.mem" in p and "512Mi" in p for p in found)
    assert any("[2].predictor.env" in p and "environment variable" in p for p in found)


def test_missing_name(tmp_path: Path) -> None:
    [message] = problems(project(tmp_path, "predictor: {path: predictor.py}\n"))
    assert "name: required field is missing" in message


def test_missing_predictor_file(tmp_path: Path) -> None:
    [message] = problems(project(tmp_path, "name: x\npredictor:\n  path: model.py\n"))
    assert ":2: predictor.path: model.py not found" in message


def test_class_not_found_lists_classes(tmp_path: Path) -> None:
    code = "class Model:\n    pass\n"
    [message] = problems(project(tmp_path, "name: x\npredictor: {class: Predictor}\n", code))
    assert "class Predictor not found in predictor.py (classes there: Model)" in message


def test_no_default_class(tmp_path: Path) -> None:
    [message] = problems(project(tmp_path, "name: x\n", "def predict(payload):\n    return 1\n"))
    assert "neither Predictor nor PythonPredictor" in message


def test_predictor_syntax_error_points_into_the_predictor(tmp_path: Path) -> None:
    [message] = problems(project(tmp_path, "name: x\n", "class Predictor(:\n"))
    assert "predictor.py:1" in message and "syntax error" in message


def test_duplicate_api_names(tmp_path: Path) -> None:
    [message] = problems(project(tmp_path, "- name: a\n- name: a\n"))
    assert "defined twice (first on line 1)" in message


def test_duplicate_keys_rejected(tmp_path: Path) -> None:
    [message] = problems(project(tmp_path, "name: a\nname: b\n"))
    assert ":2:" in message and "duplicate key 'name'" in message


def test_replicas_and_autoscaling_exclusive(tmp_path: Path) -> None:
    [message] = problems(project(tmp_path, "name: a\nreplicas: 2\nautoscaling: {max_replicas: 3}\n"))
    assert "either replicas or autoscaling" in message


def test_autoscaling_bounds(tmp_path: Path) -> None:
    [message] = problems(project(tmp_path, "name: a\nautoscaling:\n  min_replicas: 5\n  max_replicas: 2\n"))
    assert ":2: autoscaling:" in message and "must not exceed" in message


def test_unsafe_image_inputs_rejected(tmp_path: Path) -> None:
    found = problems(project(tmp_path, """
        name: a
        image:
          apt: ["curl; rm -rf /"]
          pip: ["numpy && echo hi"]
          build_commands: [[]]
    """))
    assert any("image.apt" in p and "not a Debian package" in p for p in found)
    assert any("image.pip" in p and "not a pip requirement" in p for p in found)
    assert any("image.build_commands" in p and "must not be empty" in p for p in found)


def test_empty_file_and_missing_folder(tmp_path: Path) -> None:
    [message] = problems(project(tmp_path, ""))
    assert "empty" in message
    [message] = problems(tmp_path / "nowhere")
    assert "no such file or folder" in message
    empty = tmp_path / "empty"
    empty.mkdir()
    [message] = problems(empty)
    assert "no workbench.yaml" in message


def test_missing_requirements_and_wheelhouse(tmp_path: Path) -> None:
    found = problems(project(tmp_path, "name: a\npredictor: {requirements: reqs.txt}\n"
                                       "image: {wheelhouse: wheels}\n"))
    assert any("reqs.txt not found" in p for p in found)
    assert any("folder wheels not found" in p for p in found)


def test_path_escaping_project_rejected(tmp_path: Path) -> None:
    [message] = problems(project(tmp_path, "name: a\npredictor: {path: ../evil.py}\n"))
    assert "inside the project folder" in message


def test_examples_load() -> None:
    examples = Path(__file__).resolve().parents[2] / "examples"
    names = sorted(loaded.spec.name for folder in examples.iterdir() if folder.is_dir()
                   for loaded in load_specs(folder))
    assert names == ["digits-torch", "echo", "greeter", "iris", "tinylm"]


def test_traffic_splitter(tmp_path: Path) -> None:
    from workbench.spec.loader import load_spec_file

    loaded = load_spec_file(project(tmp_path, """
        - name: model-a
        - name: model-b
        - kind: traffic_splitter
          name: model
          apis:
            - {name: model-a, weight: 80}
            - {name: model-b, weight: 20}
            - {name: model-c, weight: 0, shadow: true}
    """))
    assert [a.spec.name for a in loaded.apis] == ["model-a", "model-b"]
    [splitter] = loaded.splitters
    assert splitter.spec.name == "model" and len(splitter.spec.apis) == 3


def test_traffic_splitter_errors(tmp_path: Path) -> None:
    found = problems(project(tmp_path, """
        - kind: traffic_splitter
          name: bad
          apis: [{name: a, weight: 50}, {name: b, weight: 20}]
        - kind: traffic_splitter
          name: loop
          apis: [{name: loop, weight: 100}]
        - kind: traffic_splitter
          name: typo
          apis: [{name: a, weight: 100, shadw: true}]
    """))
    assert any("[0]" in p and "add up to 100" in p for p in found)
    assert any("[1]" in p and "itself" in p for p in found)
    assert any("[2].apis.0.shadw: unknown field" in p and "allowed: name, weight, shadow" in p for p in found)


def test_reserved_names_and_update_and_routing(tmp_path: Path) -> None:
    found = problems(project(tmp_path, """
        - name: metrics
        - name: ok
          update: {max_surge: 0, max_unavailable: 0}
        - name: fine
          routing: {policy: fastest}
    """))
    assert any("[0].name" in p and "reserved" in p for p in found)
    assert any("[1].update" in p and "cannot both be 0" in p for p in found)
    assert any("[2].routing.policy" in p and "'ewma'" in p for p in found)
