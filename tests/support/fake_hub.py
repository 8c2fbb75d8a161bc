"""A local Hugging Face hub: the file API that `huggingface_hub` (model_info, hf_hub_download,
snapshot_download) and the agent's fetcher use, served from memory over real HTTP, since no hub is
reachable from the tests. Point HF_ENDPOINT at `FakeHub.url`.

Endpoints (as huggingface.co answers them):

    GET  /api/models/{org}/{name}[/revision/{rev}]?blobs=true   model info: sha, siblings (size,
                                                                blobId, lfs {sha256, size, pointerSize})
    HEAD|GET /{org}/{name}/resolve/{rev}/{path}                 the file, with X-Repo-Commit, ETag
                                                                (X-Linked-Etag/-Size for LFS files),
                                                                Content-Length, Range → 206

Errors carry the hub's X-Error-Code (RepoNotFound, RevisionNotFound, EntryNotFound). A repo can be
made to refuse (401/403), to serve corrupt bytes a number of times, or to break a download off
after some bytes once; the bytes each file served are counted.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

#: files at least this large are LFS files (as .safetensors and .bin files are on the hub)
LFS_FROM = 1 << 16


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


@dataclass
class Repo:
    files: dict[str, bytes]
    commit: str = ""
    refs: dict[str, str] = field(default_factory=dict)
    #: answer every request for this repo with this status (401, 403) unless the token matches
    token: str | None = None
    refuse: int = 401

    def __post_init__(self) -> None:
        if not self.commit:
            digest = hashlib.sha1(usedforsecurity=False)
            for path in sorted(self.files):
                digest.update(path.encode() + b"\0" + hashlib.sha256(self.files[path]).digest())
            self.commit = digest.hexdigest()
        self.refs.setdefault("main", self.commit)

    def sibling(self, path: str) -> dict[str, object]:
        data = self.files[path]
        entry: dict[str, object] = {"rfilename": path, "size": len(data), "blobId": git_blob_id(data)}
        if len(data) >= LFS_FROM:
            entry["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        return entry

    def etag(self, path: str) -> str:
        data = self.files[path]
        return hashlib.sha256(data).hexdigest() if len(data) >= LFS_FROM else git_blob_id(data)


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.served: Counter[str] = Counter()  # "org/name/path" -> bytes sent
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Authorization)
        self.corrupt: Counter[str] = Counter()  # "org/name/path" -> times to serve wrong bytes
        self.cut_after: dict[str, int] = {}  # "org/name/path" -> break off once after these bytes
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add(self, repo_id: str, files: dict[str, bytes], **options: object) -> Repo:
        repo = self.repos[repo_id] = Repo(files, **options)  # type: ignore[arg-type]
        return repo

    @contextmanager
    def running(self) -> Iterator[FakeHub]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                hub._answer(self, head=False)

            def do_HEAD(self) -> None:
                hub._answer(self, head=True)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()

    # -- answers ---------------------------------------------------------------------------------
    def _error(self, handler: BaseHTTPRequestHandler, status: int, code: str | None, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        handler.send_response(status)
        if code:
            handler.send_header("X-Error-Code", code)
        handler.send_header("X-Error-Message", message)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)

    def _repo(self, handler: BaseHTTPRequestHandler, repo_id: str) -> Repo | None:
        repo = self.repos.get(repo_id)
        if repo is None:
            self._error(handler, 401, "RepoNotFound", "Repository not found")
            return None
        if repo.token is not None and handler.headers.get("Authorization") != f"Bearer {repo.token}":
            given = handler.headers.get("Authorization") is not None
            if repo.refuse == 403:
                self._error(handler, 403, None, "Access to this repo is restricted")
            else:
                message = "Invalid credentials in Authorization header" if given else "Unauthorized"
                self._error(handler, 401, None, message)
            return None
        return repo

    def _commit(self, handler: BaseHTTPRequestHandler, repo: Repo, revision: str) -> str | None:
        if revision in repo.refs:
            return repo.refs[revision]
        if revision == repo.commit:
            return revision
        self._error(handler, 404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return None

    def _answer(self, handler: BaseHTTPRequestHandler, *, head: bool) -> None:
        parts = urlsplit(handler.path)
        path = unquote(parts.path)
        self.requests.append((handler.command, path, handler.headers.get("Authorization")))
        segments = path.strip("/").split("/")
        if segments[:2] == ["api", "models"] and len(segments) >= 4:
            repo_id = "/".join(segments[2:4])
            revision = unquote(segments[5]) if len(segments) >= 6 and segments[4] == "revision" else "main"
            repo = self._repo(handler, repo_id)
            if repo is None:
                return
            commit = self._commit(handler, repo, revision)
            if commit is None:
                return
            body = json.dumps({"id": repo_id, "modelId": repo_id, "sha": commit, "private": False,
                               "siblings": [repo.sibling(p) for p in sorted(repo.files)]}).encode()
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            if not head:
                handler.wfile.write(body)
            return
        if len(segments) >= 5 and segments[2] == "resolve":
            repo_id = "/".join(segments[:2])
            repo = self._repo(handler, repo_id)
            if repo is None:
                return
            commit = self._commit(handler, repo, segments[3])
            if commit is None:
                return
            file_path = "/".join(segments[4:])
            if file_path not in repo.files:
                self._error(handler, 404, "EntryNotFound", f"{file_path} does not exist")
                return
            self._file(handler, repo, repo_id, commit, file_path, head=head)
            return
        self._error(handler, 404, None, "not a hub route")

    def _file(self, handler: BaseHTTPRequestHandler, repo: Repo, repo_id: str, commit: str, path: str, *,
              head: bool) -> None:
        data = repo.files[path]
        key = f"{repo_id}/{path}"
        etag = repo.etag(path)
        start = 0
        asked = handler.headers.get("Range", "")
        if asked.startswith("bytes=") and asked.endswith("-"):
            start = int(asked[len("bytes="):-1])
            if start >= len(data):
                self._error(handler, 416, None, "range not satisfiable")
                return
        handler.send_response(206 if start else 200)
        handler.send_header("X-Repo-Commit", commit)
        handler.send_header("ETag", f'"{etag}"')
        if len(data) >= LFS_FROM:
            handler.send_header("X-Linked-Etag", f'"{etag}"')
            handler.send_header("X-Linked-Size", str(len(data)))
        handler.send_header("Accept-Ranges", "bytes")
        handler.send_header("Content-Length", str(len(data) - start))
        if start:
            handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        handler.end_headers()
        if head:
            return
        body = data[start:]
        if self.corrupt[key] > 0:
            self.corrupt[key] -= 1
            body = bytes(b ^ 0xFF for b in body[:16]) + body[16:]
        cut = self.cut_after.pop(key, None)
        if cut is not None and cut < len(body):
            handler.wfile.write(body[:cut])
            handler.wfile.flush()
            self.served[key] += cut
            handler.close_connection = True
            return
        view = memoryview(body)
        for offset in range(0, len(view), 1 << 20):
            handler.wfile.write(view[offset:offset + (1 << 20)])
        self.served[key] += len(body)
