"""The agent's model cache on its own (no agent process): content-addressed files, one manifest per
version, read-only trees, resume and checksums of arriving files, the size limit with LRU eviction,
refusing what cannot fit, and a disk that fills up mid-file (a small tmpfs as the cache)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from workbench.agent.models.store import ChecksumMismatch, DiskFull, ModelStore, NoRoom

from workbench.weights.resolve import version_id
from workbench.wire.errors import Conflict
from workbench.wire.model_cache import ModelFile, ModelManifest

MB = 1 << 20


def manifest_of(name: str, files: dict[str, bytes]) -> ModelManifest:
    entries = [ModelFile(path=p, size=len(d), sha256=hashlib.sha256(d).hexdigest()) for p, d in files.items()]
    identity = {"kind": "files", "files": [[f.path, f.size, f.sha256] for f in entries]}
    return ModelManifest(id=version_id(identity), name=name, source=f"./{name}", files=entries)


def put(store: ModelStore, manifest: ModelManifest, files: dict[str, bytes], in_use: set[str] | None = None,
        ) -> list[str]:
    """Send what the store lacks through its writer (as PUT /v1/models/blobs does); the sha256s sent."""
    answer = store.prepare(manifest, in_use or set())
    by_sha = {hashlib.sha256(d).hexdigest(): d for d in files.values()}
    for sha in answer.missing:
        writer = store.open_writer(sha, len(by_sha[sha]), answer.partial.get(sha, 0))
        writer.write(by_sha[sha][writer.offset:])
        writer.finish()
    store.commit(manifest)
    return answer.missing


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    cache = ModelStore(tmp_path / "models")
    cache.ensure_dirs()
    return cache


def test_files_are_kept_once_by_sha256_and_versions_share_them(store: ModelStore) -> None:
    shared = os.urandom(MB)
    one = {"model.bin": shared, "config.json": b'{"v": 1}'}
    two = {"weights/model.bin": shared, "config.json": b'{"v": 2}'}
    first, second = manifest_of("one", one), manifest_of("two", two)
    assert len(put(store, first, one)) == 2
    sent = put(store, second, two)
    assert sent == [hashlib.sha256(b'{"v": 2}').hexdigest()]  # the shared file is not sent again
    assert len(list(store.blobs.iterdir())) == 3
    tree = store.tree(second.id)
    assert (tree / "weights" / "model.bin").read_bytes() == shared
    blob = store.blob_path(hashlib.sha256(shared).hexdigest())
    assert (tree / "weights" / "model.bin").stat().st_ino == blob.stat().st_ino
    assert store.prepare(first, set()).complete
    assert {m.id for m in store.manifests_all()} == {first.id, second.id}
    # read-only for everyone: files 0444, folders 0555
    assert oct((tree / "config.json").stat().st_mode & 0o777) == "0o444"
    assert oct((tree / "weights").stat().st_mode & 0o777) == "0o555"


def test_a_file_cut_short_resumes_and_a_wrong_one_is_discarded(store: ModelStore) -> None:
    data = os.urandom(3 * MB)
    sha = hashlib.sha256(data).hexdigest()
    writer = store.open_writer(sha, len(data), 0)
    writer.write(data[:MB])
    writer.close()  # the link dropped: what arrived stays
    state = store.blob_state(sha)
    assert (state.size, state.complete) == (MB, False)
    with pytest.raises(Conflict, match=f"resume from {MB}"):
        store.open_writer(sha, len(data), 0)
    writer = store.open_writer(sha, len(data), MB)
    writer.write(data[MB:])
    assert writer.finish().complete
    assert store.blob_path(sha).read_bytes() == data

    other = os.urandom(MB)
    claimed = hashlib.sha256(b"something else").hexdigest()
    writer = store.open_writer(claimed, len(other), 0)
    writer.write(other)
    with pytest.raises(ChecksumMismatch, match="discarded"):
        writer.finish()
    assert not store.partial_path(claimed).exists() and not store.has_blob(claimed)


def test_limit_evicts_the_least_recently_used_unused_version(store: ModelStore) -> None:
    models = {name: {f"{name}.bin": os.urandom(4 * MB)} for name in ("a", "b", "c")}
    manifests = {name: manifest_of(name, files) for name, files in models.items()}
    store.set_limit(9 * MB)
    put(store, manifests["a"], models["a"])
    put(store, manifests["b"], models["b"])
    store.touch(manifests["a"].id)  # a was used after b
    answer = store.prepare(manifests["c"], in_use=set())
    assert answer.evicted == [manifests["b"].id]
    put(store, manifests["c"], models["c"])
    assert {m.name for m in store.manifests_all()} == {"a", "c"}
    assert store.used_bytes()[0] == 8 * MB


def test_a_version_that_cannot_fit_is_refused_before_anything_is_sent(store: ModelStore) -> None:
    small = {"s.bin": os.urandom(2 * MB)}
    put(store, manifest_of("s", small), small)
    store.set_limit(5 * MB)
    big = manifest_of("big", {"big.bin": os.urandom(6 * MB)})
    before = sorted(p.name for p in store.blobs.iterdir())
    with pytest.raises(NoRoom, match=r"cache-limit") as refused:
        store.prepare(big, in_use=set())
    assert refused.value.status == 413
    assert sorted(p.name for p in store.blobs.iterdir()) == before  # nothing evicted, nothing partial
    assert not list(store.partial.iterdir())
    # a version a replica uses is never evicted to make room
    store.set_limit(7 * MB)
    with pytest.raises(NoRoom):
        store.prepare(manifest_of("five", {"f.bin": os.urandom(5 * MB + 1)}),
                      in_use={manifest_of("s", small).id})
    assert store.complete(manifest_of("s", small).id)


def test_removing_a_version_in_use_is_refused(store: ModelStore) -> None:
    files = {"w.bin": os.urandom(MB)}
    manifest = manifest_of("w", files)
    put(store, manifest, files)
    with pytest.raises(Conflict, match="used by a replica"):
        store.remove(manifest.id, in_use={manifest.id})
    store.remove(manifest.id, in_use=set())
    assert not store.complete(manifest.id) and not list(store.blobs.iterdir())


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_disk_that_fills_mid_file_removes_the_partial_file(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    with tmpfs(tmp_path / "small", "6m") as root:
        store = ModelStore(root / "models")
        store.ensure_dirs()
        data = os.urandom(12 * MB)
        sha = hashlib.sha256(data).hexdigest()
        writer = store.open_writer(sha, len(data), 0)
        with pytest.raises(DiskFull, match="filled up") as full:
            for offset in range(0, len(data), MB):
                writer.write(data[offset:offset + MB])
        assert full.value.status == 413
        assert not store.partial_path(sha).exists() and not store.has_blob(sha)
        assert not list(store.partial.iterdir())
        # asked first (as every transfer does), the store refuses what the disk cannot hold
        with pytest.raises(NoRoom, match="free on the disk"):
            store.prepare(manifest_of("big", {"big.bin": data}), in_use=set())
