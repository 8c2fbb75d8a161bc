import json
import os
import tarfile
from pathlib import Path

import pytest
import yaml

from tests.images.conftest import MakeProject, reload
from workbench.images.context import make_context
from workbench.images.errors import ContextChanged, ContextError
from workbench.images.plan import Runtime, plan_build
from workbench.spec.loader import LoadedSpec

MANIFEST_KEYS = {"image_hash", "artifact", "runtime", "base_image", "apt", "requirements", "pip",
                 "runtime_requirements", "wheelhouse", "offline", "build_commands", "ca_bundle"}


@pytest.fixture(autouse=True)
def _ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One known CA bundle, whatever the workstation has."""
    ca = tmp_path / "corp-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n")
    monkeypatch.setenv("PIP_CERT", str(ca))
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    return ca


def hash_of(loaded: LoadedSpec, runtime: Runtime, offline: bool | None = None) -> str:
    return plan_build(loaded, runtime, offline).image_hash


def _members(loaded: LoadedSpec, **kwargs) -> tuple[dict, list[str], dict[str, bytes]]:
    plan = plan_build(loaded, kwargs.pop("runtime", "docker"), kwargs.pop("offline", None))
    with make_context(plan, **kwargs) as context:
        with tarfile.open(context.path) as tar:
            names = tar.getnames()
            files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
        assert context.size_bytes == context.path.stat().st_size
        path = context.path
    assert not path.exists()  # cleanup on exit
    return json.loads(files["workbench-build.json"]), names, files


def test_layout_and_manifest(make_project: MakeProject) -> None:
    loaded = make_project(
        {"image": {"apt": ["libgomp1"], "pip": ["numpy>=1.20"], "build_commands": [["python", "-V"]]}},
        {"requirements.txt": "requests\n", "pkg/util.py": "X = 1\n", ".git/HEAD": "ref",
         "__pycache__/p.cpython-311.pyc": "", ".venv/bin/python": "", "node_modules/x.js": ""},
    )
    manifest, names, files = _members(loaded)
    assert set(manifest) == MANIFEST_KEYS
    assert manifest["artifact"] == f"workbench/demo:{manifest['image_hash'][:16]}"
    assert manifest["requirements"] == ["project/requirements.txt"]
    assert manifest["runtime_requirements"] == "runtime/requirements.txt"
    assert manifest["apt"] == ["libgomp1"] and manifest["pip"] == ["numpy>=1.20"]
    assert manifest["build_commands"] == [["python", "-V"]]
    assert manifest["ca_bundle"] == "certs/ca.pem" and manifest["wheelhouse"] is None
    assert manifest["offline"] is False and manifest["base_image"] == "python:3.11-slim"
    project = sorted(n for n in names if n.startswith("project/"))
    # workbench.yaml stays out: its settings go to the replica at start, not into the image
    assert project == ["project/pkg", "project/pkg/util.py", "project/predictor.py",
                       "project/requirements.txt"]
    assert "runtime/workbench/wire/replica.py" in names and "runtime/workbench/serving/__init__.py" in names
    assert not any(n.startswith("wheelhouse") for n in names)
    assert files["certs/ca.pem"].startswith(b"-----BEGIN CERTIFICATE-----")
    assert b"fastapi==" in files["runtime/requirements.txt"]
    dockerfile = files["Dockerfile"].decode()
    assert f'LABEL workbench.image-hash="{manifest["image_hash"]}"' in dockerfile
    assert names == sorted(names)


def test_process_runtime_uses_same_layout(make_project: MakeProject) -> None:
    loaded = make_project()
    manifest, names, _ = _members(loaded, runtime="process")
    assert manifest["artifact"] == f"demo-{manifest['image_hash'][:16]}"
    assert "Dockerfile" in names and manifest["runtime"] == "process"
    assert hash_of(loaded, "process") != hash_of(loaded, "docker")


def test_hash_is_stable_and_matches_the_context(make_project: MakeProject) -> None:
    loaded = make_project(files={"requirements.txt": "requests\n"})
    first = hash_of(loaded, "docker")
    assert first == hash_of(reload(loaded), "docker")
    with make_context(plan_build(loaded, "docker")) as context:
        assert context.image_hash == first
        one = context.path.read_bytes()
    os.utime(loaded.project_dir / "predictor.py", (1, 1))
    assert hash_of(loaded, "docker") == first
    with make_context(plan_build(loaded, "docker")) as context:
        assert context.path.read_bytes() == one  # byte-identical tar


def _edit_spec(loaded: LoadedSpec, **changes: object) -> LoadedSpec:
    data = yaml.safe_load(loaded.file.read_text())
    for key, value in changes.items():
        section, _, field = key.partition("__")
        data.setdefault(section, {})[field] = value
    loaded.file.write_text(yaml.safe_dump(data))
    return reload(loaded)


def test_what_changes_the_hash(make_project: MakeProject, _ca: Path) -> None:
    loaded = make_project(files={"requirements.txt": "requests\n"})
    seen = {hash_of(loaded, "docker")}

    def changed(candidate: LoadedSpec) -> None:
        value = hash_of(candidate, "docker")
        assert value not in seen
        seen.add(value)

    (loaded.project_dir / "predictor.py").write_text("class Predictor:\n    pass\n")
    changed(loaded)
    (loaded.project_dir / "requirements.txt").write_text("requests==2.32.3\n")
    changed(loaded)
    changed(_edit_spec(loaded, image__base="workbench/python:3.11-bookworm"))
    changed(_edit_spec(loaded, image__apt=["curl"]))
    changed(_edit_spec(loaded, image__pip=["idna"]))
    changed(_edit_spec(loaded, image__build_commands=[["python", "-V"]]))
    _ca.write_text("another CA\n")
    changed(reload(loaded))
    (loaded.project_dir / "run.sh").write_text("#!/bin/sh\n")
    changed(loaded)
    (loaded.project_dir / "run.sh").chmod(0o755)
    changed(loaded)
    assert hash_of(loaded, "docker", offline=True) not in seen


def test_what_does_not_change_the_hash(make_project: MakeProject) -> None:
    loaded = make_project(files={".workbenchignore": "*.ckpt\nscratch/\n"})
    before = hash_of(loaded, "docker")
    (loaded.project_dir / "model.ckpt").write_bytes(b"\0" * 1000)
    (loaded.project_dir / "scratch").mkdir()
    (loaded.project_dir / "scratch" / "notes.txt").write_text("x")
    (loaded.project_dir / "__pycache__").mkdir()
    (loaded.project_dir / "__pycache__" / "predictor.cpython-311.pyc").write_bytes(b"pyc")
    assert hash_of(loaded, "docker") == before
    # the manifest says what predictor config, env and serving are: they go to the replica
    loaded.file.write_text(loaded.file.read_text() + yaml.safe_dump({
        "predictor": {"config": {"threshold": 0.3}, "env": {"MODEL": "big"}},
        "serving": {"max_concurrency": 4}, "replicas": 3,
    }))
    assert hash_of(reload(loaded), "docker") == before


def test_workbenchignore_keeps_files_out_of_the_tar(make_project: MakeProject) -> None:
    loaded = make_project(files={".workbenchignore": "data/\n*.bin\n", "data/big.csv": "1,2",
                                 "w.bin": "x", "keep.txt": "k"})
    _, names, _ = _members(loaded)
    assert "project/keep.txt" in names and "project/.workbenchignore" in names
    assert not any("data" in n or n.endswith(".bin") for n in names)


def test_no_ca_without_env(make_project: MakeProject, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIP_CERT")
    manifest, names, files = _members(make_project())
    assert manifest["ca_bundle"] is None and "certs/ca.pem" not in names
    assert b"PIP_CERT" not in files["Dockerfile"]


def test_named_and_nested_requirements(make_project: MakeProject) -> None:
    loaded = make_project({"predictor": {"requirements": "reqs/prod.txt"}},
                          {"reqs/prod.txt": "-r base.txt\nrequests\n", "reqs/base.txt": "idna\n",
                           "requirements.txt": "not-used\n"})
    manifest, _, files = _members(loaded)
    assert manifest["requirements"] == ["project/reqs/prod.txt"]
    dockerfile = files["Dockerfile"].decode()
    assert 'COPY ["project/reqs/base.txt", "/app/reqs/base.txt"]' in dockerfile
    assert '"-r", "/app/reqs/prod.txt"' in dockerfile and "/app/requirements.txt" not in dockerfile


def test_requirements_excluded_by_ignore_is_an_error(make_project: MakeProject) -> None:
    loaded = make_project(files={"requirements.txt": "x\n", ".dockerignore": "*.txt\n"})
    with pytest.raises(ContextError, match="excluded"):
        hash_of(loaded, "docker")


def test_requirements_outside_the_project_is_an_error(make_project: MakeProject, tmp_path: Path) -> None:
    (tmp_path / "outside.txt").write_text("x\n")
    loaded = make_project({"predictor": {"requirements": "../outside.txt"}})
    with pytest.raises(ContextError, match="inside the project"):
        hash_of(loaded, "docker")


def test_user_wheelhouse_is_copied_as_is(make_project: MakeProject) -> None:
    loaded = make_project({"image": {"wheelhouse": "wheels", "offline": True, "pip": ["demo-pkg"]}},
                          {"wheels/demo_pkg-1.0-py3-none-any.whl": "not really a wheel"})
    before = hash_of(loaded, "docker")
    manifest, names, files = _members(loaded)
    assert manifest["wheelhouse"] == "wheelhouse" and manifest["offline"] is True
    assert "wheelhouse/demo_pkg-1.0-py3-none-any.whl" in names
    assert not any(n.startswith("project/wheels") for n in names)
    assert '"--no-index", "--find-links", "/opt/wheelhouse"' in files["Dockerfile"].decode()
    (loaded.project_dir / "wheels" / "demo_pkg-1.0-py3-none-any.whl").write_text("changed")
    assert hash_of(loaded, "docker") != before


def test_offline_resolves_a_wheelhouse(make_project: MakeProject) -> None:
    lines: list[str] = []
    manifest, names, _ = _members(make_project(), offline=True, progress=lines.append)
    assert manifest["wheelhouse"] == "wheelhouse" and manifest["offline"] is True
    wheels = [n for n in names if n.startswith("wheelhouse/")]
    assert any(n.startswith("wheelhouse/fastapi-") and n.endswith(".whl") for n in wheels)
    assert any("pydantic_core-" in n and "x86_64" in n for n in wheels)
    assert "wheelhouse/.complete" not in names
    assert any("fastapi" in line for line in lines)  # pip's lines came through


def test_bad_runtime_and_bad_base(make_project: MakeProject) -> None:
    loaded = make_project({"image": {"base": "python:3.11 slim"}})
    with pytest.raises(ContextError, match="not a Docker image reference"):
        hash_of(loaded, "docker")
    with pytest.raises(ContextError, match="runtime"):
        hash_of(make_project(name="other"), "kubernetes")  # type: ignore[arg-type]


def test_the_context_is_the_plan_it_is_given(make_project: MakeProject, tmp_path: Path) -> None:
    loaded = make_project(files={"helper.py": "X = 1\n"})
    plan = plan_build(loaded, "docker")
    (loaded.project_dir / "notes.txt").write_text("added after the plan\n")
    out = tmp_path / "contexts"
    out.mkdir()
    with make_context(plan, directory=out) as context:  # the planned files, not today's folder
        assert (context.image_hash, context.artifact) == (plan.image_hash, plan.artifact)
        assert context.manifest["image_hash"] == plan.image_hash
        with tarfile.open(context.path) as tar:
            assert "project/notes.txt" not in tar.getnames() and "project/helper.py" in tar.getnames()
    (loaded.project_dir / "helper.py").write_text("X = 2\n")
    with pytest.raises(ContextChanged, match=r"helper\.py changed since the build was planned"):
        make_context(plan, directory=out)
    assert list(out.iterdir()) == []  # no partial context left


def test_extra_hash_inputs_change_the_hash_and_none_keep_it(make_project: MakeProject) -> None:
    loaded = make_project()
    plain = plan_build(loaded, "process")
    assert plan_build(loaded, "process", hash_inputs={}).image_hash == plain.image_hash
    model = plan_build(loaded, "process", hash_inputs={"model:weights": "sha256:aa"})
    other = plan_build(loaded, "process", hash_inputs={"model:weights": "sha256:bb"})
    assert len({plain.image_hash, model.image_hash, other.image_hash}) == 3
    assert model.artifact == f"demo-{model.image_hash[:16]}"
    two = {"a": "1", "b": "2"}
    assert (plan_build(loaded, "process", hash_inputs=two).image_hash
            == plan_build(loaded, "process", hash_inputs=dict(reversed(two.items()))).image_hash)
