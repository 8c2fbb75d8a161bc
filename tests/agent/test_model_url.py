"""`https://` model sources against a local HTTPS server whose certificate the test makes and
trusts through SSL_CERT_FILE: resolving (by the spec's sha256, else the server's ETag; neither is
a clear error), the host fetching the file into its cache, an untrusted certificate refused, and a
wrong sha256 — the file discarded, fetched once more, then a clear error with nothing left."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from workbench.agent.models.fetch import Fetcher
from workbench.agent.models.store import ChecksumMismatch, ModelStore

from tests.support.https_files import HttpsFiles, make_certificates
from workbench.spec.weights import ModelSpec
from workbench.weights.resolve import ModelSourceError, resolve
from workbench.wire.errors import ConnectionFailed, Failed
from workbench.wire.model_cache import ModelManifest

MB = 1 << 20
DATA = os.urandom(2 * MB + 17)
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HttpsFiles]:
    files = HttpsFiles(tmp_path / "tls", files={"ckpt.pt": DATA, "tagged.pt": DATA, "bare.pt": DATA},
                       etags={"tagged.pt": "v1-abc"})
    files.folder.mkdir()
    with files.running():
        monkeypatch.setenv("SSL_CERT_FILE", str(files.ca))
        yield files


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    cache = ModelStore(tmp_path / "models")
    cache.ensure_dirs()
    return cache


def fetch(store: ModelStore, manifest: ModelManifest) -> ModelManifest:
    running = Fetcher(store).start(manifest, None, set)
    assert running.done.wait(60)
    if running.error is not None:
        raise running.error
    assert running.result is not None
    return running.result


def test_a_url_with_its_sha256_resolves_and_the_host_fetches_it(server: HttpsFiles,
                                                                store: ModelStore) -> None:
    planned = resolve(ModelSpec(source=server.url("ckpt.pt"), sha256=SHA), Path("/"))
    manifest = planned.manifest
    assert [(f.path, f.size, f.sha256, f.url) for f in manifest.files] == [
        ("ckpt.pt", len(DATA), SHA, server.url("ckpt.pt"))]
    assert planned.mount == "/models/ckpt.pt" and not server.served  # resolving read no bytes (HEAD)
    result = fetch(store, manifest)
    assert (store.tree(result.id) / "ckpt.pt").read_bytes() == DATA
    assert server.served["ckpt.pt"] == len(DATA)


def test_a_url_without_sha256_goes_by_its_etag_and_is_checked_by_size(server: HttpsFiles,
                                                                       store: ModelStore) -> None:
    planned = resolve(ModelSpec(source=server.url("tagged.pt")), Path("/"))
    item = planned.manifest.files[0]
    assert item.sha256 is None and item.etag == "v1-abc" and item.size == len(DATA)
    server.etags["tagged.pt"] = "v2-def"  # a new version on the server is a new version here
    assert resolve(ModelSpec(source=server.url("tagged.pt")), Path("/")).id != planned.id
    result = fetch(store, planned.manifest)
    assert result.files[0].sha256 == SHA  # what arrived, filed by its sha256
    assert (store.blobs / SHA).read_bytes() == DATA
    with pytest.raises(ModelSourceError, match=r"no ETag .*sha256"):
        resolve(ModelSpec(source=server.url("bare.pt")), Path("/"))


def test_an_untrusted_certificate_is_refused(server: HttpsFiles, monkeypatch: pytest.MonkeyPatch,
                                             store: ModelStore, tmp_path: Path) -> None:
    planned = resolve(ModelSpec(source=server.url("ckpt.pt"), sha256=SHA), Path("/"))
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.setenv("SSL_CERT_FILE", str(make_certificates(other)[0]))  # another CA
    with pytest.raises(ConnectionFailed, match=r"certificate verify failed.*SSL_CERT_FILE"):
        resolve(ModelSpec(source=server.url("ckpt.pt"), sha256=SHA), Path("/"))
    with pytest.raises(Failed, match=r"certificate .* not trusted .*SSL_CERT_FILE"):
        fetch(store, planned.manifest)  # at once: a certificate does not become trusted by retrying
    assert not server.served and not list(store.blobs.iterdir())


def test_a_wrong_sha256_is_fetched_once_more_then_refused_leaving_nothing(server: HttpsFiles,
                                                                          store: ModelStore) -> None:
    server.corrupt["ckpt.pt"] = 1  # once: the second fetch is fine
    fetch(store, resolve(ModelSpec(source=server.url("ckpt.pt"), sha256=SHA), Path("/")).manifest)
    assert server.served["ckpt.pt"] == 2 * len(DATA) and (store.blobs / SHA).is_file()

    fresh = ModelStore(store.root.parent / "fresh")
    fresh.ensure_dirs()
    wrong = hashlib.sha256(b"another file").hexdigest()
    planned = resolve(ModelSpec(source=server.url("bare.pt"), sha256=wrong), Path("/"))
    with pytest.raises(ChecksumMismatch, match=r"bare\.pt from 127\.0\.0\.1:\d+ failed its check twice "
                                               r"\(bare\.pt has sha256 .* expected "):
        fetch(fresh, planned.manifest)
    assert server.served["bare.pt"] == 2 * len(DATA)  # discarded, fetched once more, then refused
    assert not list(fresh.blobs.iterdir()) and not list(fresh.partial.iterdir())
    assert not list(fresh.manifests.iterdir()) and not fresh.complete(planned.id)
