"""A tiny stand-in for the Hugging Face hub's HTTP API on localhost, for download tests with no network.

It serves the endpoints huggingface_hub uses to list and fetch a model repo, or answers every
request as a gated / missing repo does (the ``X-Error-Code`` header the hub client reads).
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    """``with FakeHub(repo_id, files, mode) as endpoint:`` serves ``files`` ({path: bytes}) at ``endpoint``."""

    def __init__(self, repo_id: str, files: dict[str, bytes] | None = None, mode: str = "ok"):
        self.repo_id, self.files, self.mode = repo_id, files or {}, mode
        self.requests: list[str] = []

    @classmethod
    def from_folder(cls, repo_id: str, root: Path, mode: str = "ok") -> FakeHub:
        files = {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
        return cls(repo_id, files, mode)

    def __enter__(self) -> str:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False):
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _json(self, payload, head=False):
                self._send(200, json.dumps(payload).encode(), {"Content-Type": "application/json"}, head)

            def handle_any(self, head: bool):
                path = unquote(urlparse(self.path).path)
                hub.requests.append(f"{self.command} {path}")
                if hub.mode == "gated":
                    message = b"Access to model is restricted. You must have access to it and be authenticated."
                    return self._send(
                        403, message, {"X-Error-Code": "GatedRepo", "X-Error-Message": message.decode()}, head
                    )
                if hub.mode == "missing":
                    return self._send(
                        404,
                        b"Repository not found",
                        {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"},
                        head,
                    )
                api = f"/api/models/{hub.repo_id}"
                if path == api or path.startswith(f"{api}/revision/"):
                    siblings = [{"rfilename": name} for name in hub.files]
                    return self._json({"id": hub.repo_id, "sha": COMMIT, "siblings": siblings, "private": False}, head)
                if path.startswith(f"{api}/tree/"):
                    entries = [
                        {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                        for name, data in hub.files.items()
                    ]
                    return self._json(entries, head)
                prefix = f"/{hub.repo_id}/resolve/"
                if path.startswith(prefix):
                    name = path[len(prefix) :].split("/", 1)[1]
                    if name not in hub.files:
                        return self._send(404, b"not found", {"X-Error-Code": "EntryNotFound"}, head)
                    data = hub.files[name]
                    headers = {
                        "X-Repo-Commit": COMMIT,
                        "ETag": f'"{hashlib.sha1(data).hexdigest()}"',
                        "Content-Type": "application/octet-stream",
                    }
                    return self._send(200, data, headers, head)
                return self._send(404, b"unknown endpoint", {}, head)

            def do_GET(self):
                self.handle_any(head=False)

            def do_HEAD(self):
                self.handle_any(head=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
