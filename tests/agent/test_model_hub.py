"""Hub repos through the real `huggingface_hub` against a local hub (tests/support/fake_hub.py):
resolving a revision, the host fetching the files itself (parallel, resumed after a cut), the
hub's cache layout that `huggingface_hub` reads offline, and the errors — unknown repo or revision,
401/403 naming HF_TOKEN, a corrupt file fetched once more then refused — with nothing corrupt left."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from workbench.agent.models.fetch import Fetcher
from workbench.agent.models.layout import replica_env
from workbench.agent.models.store import ChecksumMismatch, ModelStore

from tests.support.fake_hub import FakeHub
from workbench.spec.weights import ModelSpec
from workbench.weights.resolve import ModelSourceError, resolve
from workbench.wire.errors import Unauthorized, WorkbenchError
from workbench.wire.model_cache import ModelManifest, ModelMount

MB = 1 << 20
WEIGHTS = os.urandom(3 * MB)
FILES = {"config.json": b'{"model_type": "tiny"}', "model.safetensors": WEIGHTS, "README.md": b"# tiny\n",
         "sub/tokenizer.json": b'{"vocab": {}}'}


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    fake = FakeHub()
    repo = fake.add("org/tiny", FILES)
    repo.refs["v1"] = repo.commit
    with fake.running():
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")  # no token stored by `hf auth login`
        yield fake


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    cache = ModelStore(tmp_path / "models")
    cache.ensure_dirs()
    return cache


def fetch(store: ModelStore, manifest: ModelManifest, token: str | None = None) -> ModelManifest:
    fetcher = Fetcher(store)
    running = fetcher.start(manifest, token, set)
    assert running.done.wait(60)
    if running.error is not None:
        raise running.error
    assert running.result is not None
    return running.result


def test_a_revision_resolves_to_its_commit_and_files(hub: FakeHub) -> None:
    planned = resolve(ModelSpec(source="hf://org/tiny@v1", exclude=["*.md"]), Path("/"))
    manifest = planned.manifest
    assert manifest.commit == hub.repos["org/tiny"].commit and manifest.revision == "v1"
    assert sorted(f.path for f in manifest.files) == ["config.json", "model.safetensors",
                                                      "sub/tokenizer.json"]
    weights = next(f for f in manifest.files if f.path == "model.safetensors")
    assert weights.sha256 == hashlib.sha256(WEIGHTS).hexdigest() and weights.size == len(WEIGHTS)
    assert planned.mount == "/models/tiny"
    # the version is the commit and the files: the same for main (the same commit), another for a new one
    assert resolve(ModelSpec(source="hf://org/tiny", exclude=["*.md"]), Path("/")).id == planned.id
    hub.add("org/tiny", {**FILES, "config.json": b'{"model_type": "tiny", "v": 2}'})
    assert resolve(ModelSpec(source="hf://org/tiny", exclude=["*.md"]), Path("/")).id != planned.id


def test_the_host_fetches_a_repo_into_the_hub_layout_that_loads_offline(hub: FakeHub, store: ModelStore,
                                                                      tmp_path: Path) -> None:
    planned = resolve(ModelSpec(source="hf://org/tiny"), Path("/"))
    hub.cut_after["org/tiny/model.safetensors"] = MB  # the first download breaks off after 1 MB
    result = fetch(store, planned.manifest)
    assert all(f.sha256 for f in result.files)
    assert hub.served["org/tiny/model.safetensors"] == len(WEIGHTS)  # resumed: nothing sent twice
    # what a replica's environment says, with the tree where a container sees it
    mount = ModelMount.of(result, "/models/tiny")
    env = replica_env([mount], {result.id: str(store.tree(result.id))})
    assert env["HF_HUB_OFFLINE"] == "1" and env["HF_HOME"] == str(store.tree(result.id))
    assert Path(env["WORKBENCH_MODEL_DIR"], "model.safetensors").read_bytes() == WEIGHTS
    # huggingface_hub itself, offline and with the hub unreachable, finds every file by repo name
    script = ("import json, sys\nfrom huggingface_hub import hf_hub_download, snapshot_download\n"
              "folder = snapshot_download('org/tiny')\n"
              "path = hf_hub_download('org/tiny', 'sub/tokenizer.json', revision='main')\n"
              "print(json.dumps({'folder': folder, 'tokenizer': open(path).read()}))\n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    answer = subprocess.run([sys.executable, "-c", script], env={**clean, **env, "HF_ENDPOINT": "http://127.0.0.1:9"},
                            capture_output=True, text=True, timeout=120)
    assert answer.returncode == 0, answer.stderr
    found = json.loads(answer.stdout)
    assert found["tokenizer"] == '{"vocab": {}}'
    assert Path(found["folder"], "model.safetensors").read_bytes() == WEIGHTS


def test_an_unknown_repo_or_revision_is_a_clear_error(hub: FakeHub) -> None:
    with pytest.raises(ModelSourceError, match=r"no repo org/nope .*HF_TOKEN") as unknown:
        resolve(ModelSpec(source="hf://org/nope"), Path("/"))
    assert unknown.value.status == 400
    with pytest.raises(ModelSourceError, match=r"no revision 'v9' in org/tiny"):
        resolve(ModelSpec(source="hf://org/tiny@v9"), Path("/"))


@pytest.mark.parametrize("status", [401, 403])
def test_a_refusing_hub_names_hf_token_and_the_token_stays_out_of_the_manifest(
        hub: FakeHub, store: ModelStore, monkeypatch: pytest.MonkeyPatch, status: int) -> None:
    hub.add("org/private", FILES, token="hf_secret_token_123", refuse=status)
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    with pytest.raises(WorkbenchError, match="HF_TOKEN") as refused:
        resolve(ModelSpec(source="hf://org/private"), Path("/"))
    assert refused.value.status in (400, 401, 403)
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_123")
    planned = resolve(ModelSpec(source="hf://org/private"), Path("/"))
    assert "hf_secret" not in planned.manifest.model_dump_json()
    # a host fetching with a token the hub refuses: the error names HF_TOKEN, the cache has nothing
    with pytest.raises(Unauthorized, match="HF_TOKEN"):
        fetch(store, planned.manifest, token="hf_wrong")
    assert not list(store.blobs.iterdir()) and not list(store.manifests.iterdir())
    result = fetch(store, planned.manifest, token="hf_secret_token_123")
    assert "hf_secret" not in (store.manifests / f"{result.id}.json").read_text()
    assert all("hf_secret" not in path.read_text(errors="ignore")
               for path in store.root.rglob("*.json"))


def test_a_corrupt_file_is_fetched_once_more_then_refused(hub: FakeHub, store: ModelStore) -> None:
    planned = resolve(ModelSpec(source="hf://org/tiny", include=["model.safetensors"]), Path("/"))
    hub.corrupt["org/tiny/model.safetensors"] = 1  # once: the second try is fine
    fetch(store, planned.manifest)
    assert hub.served["org/tiny/model.safetensors"] == 2 * len(WEIGHTS)

    again = dict(FILES, **{"model.safetensors": os.urandom(2 * MB)})
    hub.add("org/broken", again)
    hub.corrupt["org/broken/model.safetensors"] = 2  # corrupt every time
    fresh = ModelStore(store.root.parent / "fresh")
    fresh.ensure_dirs()
    planned = resolve(ModelSpec(source="hf://org/broken", include=["*.safetensors"]), Path("/"))
    with pytest.raises(ChecksumMismatch, match="failed its check twice"):
        fetch(fresh, planned.manifest)
    assert hub.served["org/broken/model.safetensors"] == 2 * len(again["model.safetensors"])
    assert not list(fresh.blobs.iterdir()) and not list(fresh.partial.iterdir())
    assert not fresh.complete(planned.id)


def test_a_missing_local_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelSourceError, match=r"model weights: ./weights not found \(looked for "):
        resolve(ModelSpec(source="./weights"), tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelSourceError, match="holds no files"):
        resolve(ModelSpec(source="./empty"), tmp_path)
