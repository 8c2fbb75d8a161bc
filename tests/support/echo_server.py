"""A model server of someone else's, as small as one can be: the container API tests run it from
its own Dockerfile and as a command (standard library only; `server_project` writes both).

It listens on $PORT (or --port), answers GET /health, echoes every POST and every GET under
/echo as JSON (its path, body, TAG and its version file), streams GET /chunks as three chunks,
and answers any other GET 404 (as a real server does, /readyz included). MODE says how it
misbehaves: `exit` (dies at start), `sick` (/health answers 503 for ever), `elsewhere` (listens on
$PORT + 1)."""

from __future__ import annotations

import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOCKERFILE = """ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
COPY echo_server.py version.txt /srv/
ENV PYTHONUNBUFFERED=1
CMD ["python3", "/srv/echo_server.py"]
"""


def server_project(folder: Path, yaml: str, version: str = "v1") -> Path:
    """A project folder with this server, its Dockerfile, a version file and `yaml` as
    workbench.yaml."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "echo_server.py").write_text((HERE / "echo_server.py").read_text())
    (folder / "Dockerfile").write_text(DOCKERFILE)
    (folder / "version.txt").write_text(version + "\n")
    (folder / "workbench.yaml").write_text(yaml)
    return folder


def _version() -> str:
    for path in (Path(__file__).with_name("version.txt"), Path("version.txt")):
        if path.is_file():
            return path.read_text().strip()
    return "unknown"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the router's pooled connections expect

    def log_message(self, format: str, *args: object) -> None:  # quiet: one line per start only
        pass

    def _answer(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/health":
            sick = os.environ.get("MODE") == "sick"
            self._answer(503 if sick else 200, {"ok": not sick})
        elif self.path == "/chunks":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for index in range(3):
                piece = f"chunk {index}\n".encode()
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                self.wfile.flush()
                time.sleep(0.05)
            self.wfile.write(b"0\r\n\r\n")
        elif self.path.startswith("/echo"):
            self._echo()
        else:
            self._answer(404, {"error": f"no route {self.path}"})

    def do_POST(self) -> None:
        self._echo()

    def _echo(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode(errors="replace") if length else ""
        self._answer(200, {"path": self.path, "method": self.command, "body": body,
                           "tag": os.environ.get("TAG"), "version": _version(), "pid": os.getpid(),
                           "port_env": os.environ.get("PORT"), "argv": sys.argv[1:],
                           "cuda": os.environ.get("CUDA_VISIBLE_DEVICES")})


def main() -> None:
    args = sys.argv[1:]
    port = int(args[args.index("--port") + 1]) if "--port" in args else int(os.environ.get("PORT", "8080"))
    mode = os.environ.get("MODE", "")
    print(f"echo server {_version()} starting (mode {mode or 'normal'})", flush=True)
    if mode == "exit":
        print("boom: this server refuses to start", flush=True)
        sys.exit(1)
    if mode == "elsewhere":
        port += 1
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    server.daemon_threads = True
    print(f"listening on port {port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
