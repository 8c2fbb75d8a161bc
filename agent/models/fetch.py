"""A host that can reach a model's source gets it itself: each file from its URL (a hub repo's
`/{repo}/resolve/{commit}/{path}`, or the https URL), several at once, resumed with a Range request
after a dropped connection, checked on arrival (sha256; a hub file's git blob id), filed in the
cache and the version committed.

The standard library only (the agent installs on boxes without the workstation's HTTP clients).
The hub token goes in the Authorization header to the source's own host, never to a host it
redirects to (a CDN), and is never logged or kept. One fetch runs per version: a second request
for it follows the first. Certificates are checked against the system's CAs (SSL_CERT_FILE /
SSL_CERT_DIR name others, as OpenSSL reads them); one that is not trusted fails at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from workbench.agent.models.store import CHUNK, ChecksumMismatch, ModelStore, _disk_full, _sha256_of

from workbench import __version__
from workbench.wire.errors import BadRequest, Failed, NotFound, TooLarge, Unauthorized, WorkbenchError
from workbench.wire.model_cache import Meter, ModelEvent, ModelFile, ModelManifest, ProbeAnswer

log = logging.getLogger("workbench.agent.models.fetch")

PARALLEL = 4
ATTEMPTS = 6  # connection attempts per file (each resumes where the last stopped)
TIMEOUT = 30.0
USER_AGENT = f"workbench-agent/{__version__}"


class _SameHostAuth(urllib.request.HTTPRedirectHandler):
    """Follow redirects; the Authorization header only to the host it was meant for."""

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urlsplit(newurl).netloc != urlsplit(req.full_url).netloc:
            new.remove_header("Authorization")
        return new


def _opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(_SameHostAuth(), urllib.request.HTTPSHandler(
        context=ssl.create_default_context()))


def _request(url: str, token: str | None, method: str = "GET", start: int = 0) -> urllib.request.Request:
    request = urllib.request.Request(url, method=method, headers={"User-Agent": USER_AGENT})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if start:
        request.add_header("Range", f"bytes={start}-")
    return request


def refused(status: int, url: str, what: str) -> WorkbenchError:
    """The source's 401/403/404 as the family's error, naming the fix."""
    host = urlsplit(url).netloc
    if status in (401, 403):
        return Unauthorized(f"{host} refused {what} ({status}): set HF_TOKEN on the workstation to a token "
                            "that may read it (gated repos: accept the terms on the hub first)",
                            status=status)
    if status == 404:
        return NotFound(f"{host} has no {what} (404): check the repo, revision and file names")
    return Failed(f"{host} answered {status} for {what}")


def probe(url: str, token: str | None, timeout: float) -> ProbeAnswer:
    """Whether this host reaches `url` itself (any HTTP answer counts as reached)."""
    try:
        with _opener().open(_request(url, token, "HEAD"), timeout=timeout) as response:
            return ProbeAnswer(reachable=True, status=response.status, detail="answered")
    except urllib.error.HTTPError as error:
        return ProbeAnswer(reachable=True, status=error.code, detail=f"answered {error.code}")
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        return ProbeAnswer(reachable=False, detail=f"cannot reach {urlsplit(url).netloc}: {reason}")


def git_blob_id(size: int) -> hashlib._Hash:
    """The start of a git blob id (sha1 of 'blob <size>\\0' + content): a hub file's ETag."""
    digest = hashlib.sha1(usedforsecurity=False)
    digest.update(f"blob {size}\0".encode())
    return digest


@dataclass
class Fetch:
    """One version being fetched: its progress, its end, and who waits for it."""

    manifest: ModelManifest
    token: str | None = field(repr=False)
    meter: Meter = field(init=False)
    done: threading.Event = field(default_factory=threading.Event)
    error: WorkbenchError | None = None
    result: ModelManifest | None = None
    message: str = ""

    def __post_init__(self) -> None:
        self.meter = Meter(self.manifest.size or None)

    def events(self, period: float = 0.5) -> Iterator[ModelEvent]:
        """Progress every `period` seconds, then one done or error (blocking)."""
        while not self.done.wait(period):
            yield self._event("progress")
        if self.error is not None:
            yield ModelEvent(kind="error", id=self.manifest.id, message=str(self.error),
                             bytes_done=self.meter.done, bytes_total=self.meter.total, via="fetch")
        else:
            yield self._event("done")

    def _event(self, kind: str) -> ModelEvent:
        return ModelEvent(kind=kind, id=self.manifest.id, message=self.message,
                          bytes_done=self.meter.done, bytes_total=self.meter.total, rate=self.meter.rate,
                          via="fetch")


class Fetcher:
    """The fetches of one host's cache, one per version at a time."""

    def __init__(self, store: ModelStore, parallel: int = PARALLEL) -> None:
        self.store = store
        self.parallel = parallel
        self._fetches: dict[str, Fetch] = {}
        self._lock = threading.Lock()
        self._meter_lock = threading.Lock()

    def start(self, manifest: ModelManifest, token: str | None, in_use: Callable[[], set[str]]) -> Fetch:
        """The running fetch of this version, or a new one."""
        missing = [f.path for f in manifest.files
                   if not f.url and not (f.sha256 and self.store.has_blob(f.sha256))]
        if missing:
            raise BadRequest(f"{manifest.label}: no URL to fetch {', '.join(missing[:3])} from; "
                             "the workstation sends files of its own")
        with self._lock:
            running = self._fetches.get(manifest.id)
            if running is not None and not running.done.is_set():
                return running
            fetch = Fetch(manifest, token)
            self._fetches[manifest.id] = fetch
        thread = threading.Thread(target=self._run, args=(fetch, in_use), daemon=True,
                                  name=f"fetch-{manifest.short}")
        thread.start()
        return fetch

    def _run(self, fetch: Fetch, in_use: Callable[[], set[str]]) -> None:
        manifest = fetch.manifest
        started = time.monotonic()
        try:
            answer = self.store.prepare(manifest, in_use())
            if not answer.complete:
                todo = [f for f in manifest.files if not (f.sha256 and self.store.has_blob(f.sha256))]
                have = sum(f.size or 0 for f in manifest.files) - sum(f.size or 0 for f in todo)
                have += sum(p.stat().st_size for p in map(self._partial_of, todo) if p.is_file())
                fetch.meter.add(have)
                with ThreadPoolExecutor(self.parallel, thread_name_prefix=f"get-{manifest.short}") as pool:
                    files = list(pool.map(lambda item: self._file(fetch, item), todo))
                known = {f.path: f for f in files}
                files = [known.get(f.path, f) for f in manifest.files]
                manifest = manifest.model_copy(update={"files": files})
                self.store.commit(manifest)
            fetch.result = self.store.manifest(manifest.id)
            fetch.message = f"fetched in {time.monotonic() - started:.1f} s"
        except WorkbenchError as error:
            fetch.error = error
            log.warning("fetching %s failed: %s", manifest.label, error)
        except Exception as error:  # a fetch must end with a clear error, never hang
            log.exception("fetching %s failed", manifest.label)
            fetch.error = Failed(f"fetching {manifest.label} failed: {error}")
        finally:
            fetch.done.set()

    # -- one file ------------------------------------------------------------------------------
    def _file(self, fetch: Fetch, item: ModelFile) -> ModelFile:
        """Download, check and file one file; a checksum mismatch is fetched once more, then an
        error."""
        if item.sha256 and self.store.has_blob(item.sha256):
            return item
        assert item.url is not None
        partial = self._partial_of(item)
        for attempt in (1, 2):
            sha256 = self._download(fetch, item, partial)
            try:
                self._check(item, partial, sha256, hub=fetch.manifest.kind == "hf")
            except ChecksumMismatch as error:
                dropped = partial.stat().st_size if partial.is_file() else 0
                partial.unlink(missing_ok=True)
                with self._meter_lock:
                    fetch.meter.add(-dropped)
                if attempt == 2:
                    raise ChecksumMismatch(f"{fetch.manifest.label}: {item.path} from "
                                           f"{urlsplit(item.url).netloc} failed its check twice "
                                           f"({error}); the source is corrupt or changed. "
                                           "Nothing of it was kept") from None
                log.warning("%s: %s; fetching it once more", fetch.manifest.label, error)
                continue
            self.store.file_blob(partial, sha256)
            return item.model_copy(update={"sha256": sha256})
        raise AssertionError("unreachable")

    def _partial_of(self, item: ModelFile) -> Path:
        key = item.sha256 or hashlib.sha256(f"{item.url}\0{item.etag}".encode()).hexdigest()
        return self.store.partial_path(key)

    def _check(self, item: ModelFile, path: Path, sha256: str, *, hub: bool) -> None:
        size = path.stat().st_size
        if item.size is not None and size != item.size:
            raise ChecksumMismatch(f"{item.path} is {size} bytes, the source said {item.size}")
        if item.sha256 is not None and sha256 != item.sha256:
            raise ChecksumMismatch(f"{item.path} has sha256 {sha256[:12]}, expected {item.sha256[:12]}")
        if hub and item.sha256 is None and item.etag and len(item.etag) == 40:
            digest = git_blob_id(size)
            with path.open("rb") as handle:
                while block := handle.read(CHUNK):
                    digest.update(block)
            if digest.hexdigest() != item.etag:
                raise ChecksumMismatch(f"{item.path} has git blob id {digest.hexdigest()[:12]}, expected "
                                       f"{item.etag[:12]}")

    def _download(self, fetch: Fetch, item: ModelFile, partial: Path) -> str:
        """Append the rest of `item` to `partial` (resuming after dropped connections); its sha256."""
        assert item.url is not None
        self.store.partial.mkdir(parents=True, exist_ok=True)
        delay = 0.5
        last: Exception | None = None
        for _ in range(ATTEMPTS):
            start = partial.stat().st_size if partial.is_file() else 0
            if item.size is not None and start == item.size:
                return _sha256_of(partial).hexdigest()
            try:
                asked = _request(item.url, fetch.token, start=start)
                with _opener().open(asked, timeout=TIMEOUT) as response:
                    if start and response.status != 206:  # the server ignored the Range: start over
                        with self._meter_lock:
                            fetch.meter.add(-start)
                        start = 0
                    digest = _sha256_of(partial, start) if start else hashlib.sha256()
                    with partial.open("r+b" if start else "wb") as out:
                        out.seek(start)
                        out.truncate()
                        while block := response.read(CHUNK):
                            try:
                                out.write(block)
                            except OSError as error:
                                if _disk_full(error):
                                    out.close()
                                    partial.unlink(missing_ok=True)
                                    raise TooLarge(f"the disk under {self.store.root} filled up while "
                                                   f"fetching {item.path}; the partial file was removed. "
                                                   "Free disk space and try again") from None
                                raise
                            digest.update(block)
                            with self._meter_lock:
                                fetch.meter.add(len(block))
                        got = out.tell()
                    length = response.headers.get("Content-Length")
                    expected = start + int(length) if length and length.isdigit() else item.size
                    if expected is not None and got < expected:  # the connection closed early
                        raise ConnectionError(f"the download broke off after {got} of {expected} bytes")
                    return digest.hexdigest()
            except urllib.error.HTTPError as error:
                if error.code == 416 and item.size is not None and start >= item.size:
                    partial.unlink(missing_ok=True)  # longer than the file: start over
                    continue
                if error.code in (401, 403, 404):
                    raise refused(error.code, item.url, f"{fetch.manifest.label}'s {item.path}") from None
                last = error
            except (urllib.error.URLError, TimeoutError, ConnectionError, ssl.SSLError, OSError,
                    http.client.HTTPException) as error:
                if isinstance(error, OSError) and _disk_full(error):
                    raise
                reason = getattr(error, "reason", error)
                if isinstance(reason, ssl.SSLCertVerificationError):
                    host = urlsplit(item.url).netloc
                    raise Failed(f"cannot fetch {item.path} of {fetch.manifest.label}: the certificate of "
                                 f"{host} is not trusted here ({reason.verify_message}); "
                                 "if it is signed by a private CA, point SSL_CERT_FILE at that CA's "
                                 "certificate in the agent's environment") from None
                last = error
            log.info("%s: %s broke off (%s); resuming", fetch.manifest.label, item.path, last)
            time.sleep(delay)
            delay = min(delay * 2, 8.0)
        raise Failed(f"cannot fetch {item.path} of {fetch.manifest.label} from {urlsplit(item.url).netloc}: "
                     f"{last}")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._fetches.clear()
