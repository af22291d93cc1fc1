"""A tiny stand-in for the Hugging Face hub's HTTP API on localhost, for download and push tests with no network.

It serves the endpoints huggingface_hub uses to list and fetch a model repo, or answers every
request as a gated / missing repo does (the ``X-Error-Code`` header the hub client reads), and those
``create_repo`` and ``create_commit`` call to push one: repo creation, README metadata validation,
preupload (every file "regular", so its bytes travel inline in the commit; no LFS) and the NDJSON
commit. Writes need an ``Authorization`` header (401 without, as the hub answers); in mode
``read-only`` the repo exists and every write is refused with 403. What was pushed is kept:
``created`` (the JSON of each repo creation) and ``commits`` (each commit's header and files).
"""

from __future__ import annotations

import base64
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
        self.exists = bool(self.files) or mode == "read-only"  # a repo with files, or someone else's
        self.private = False
        self.created: list[dict] = []
        self.commits: list[dict] = []

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
                    if not hub.exists:
                        return self._send(404, b"Repository not found", {"X-Error-Code": "RepoNotFound"}, head)
                    siblings = [{"rfilename": name} for name in hub.files]
                    info = {"id": hub.repo_id, "sha": COMMIT, "siblings": siblings, "private": hub.private}
                    return self._json(info, head)
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

            def do_POST(self):
                path = unquote(urlparse(self.path).path)
                hub.requests.append(f"POST {path}")
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                api = f"/api/models/{hub.repo_id}"
                if path == "/api/validate-yaml":
                    return self._validate_yaml(json.loads(body))
                if not self.headers.get("Authorization", "").startswith("Bearer "):
                    return self._error(401, "Invalid credentials in Authorization header")
                if hub.mode == "read-only":
                    return self._error(403, f"You don't have the rights to write to {hub.repo_id}")
                if path == "/api/repos/create":
                    return self._create(json.loads(body))
                if path.startswith(f"{api}/preupload/"):
                    files = json.loads(body)["files"]
                    modes = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
                    return self._json({"files": modes})
                if path.startswith(f"{api}/commit/"):
                    return self._commit(body)
                return self._send(404, b"unknown endpoint")

            def _error(self, status: int, message: str, **extra):
                body = json.dumps({"error": message, **extra}).encode()
                self._send(status, body, {"Content-Type": "application/json"})

            def _validate_yaml(self, payload: dict):
                """The hub checks a README's front matter before a commit: here, that it is a YAML mapping (a README
                without one is taken, with a warning)."""
                import yaml

                front = payload["content"].split("---\n")
                if front[0] != "" or len(front) < 3:
                    return self._json({"errors": [], "warnings": [{"message": "empty or missing yaml metadata"}]})
                try:
                    ok = isinstance(yaml.safe_load(front[1]), dict)
                except yaml.YAMLError:
                    ok = False
                if ok:
                    return self._json({"errors": [], "warnings": []})
                errors = json.dumps({"errors": [{"message": "the metadata is not a YAML mapping"}]}).encode()
                return self._send(400, errors, {"Content-Type": "application/json"})

            def _create(self, payload: dict):
                hub.created.append(payload)
                name = "/".join(part for part in (payload.get("organization"), payload["name"]) if part)
                if name != hub.repo_id:
                    return self._error(400, f"this fake hub serves {hub.repo_id} only, not {name}")
                url = f"http://{self.headers['Host']}/{name}"
                if hub.exists:
                    return self._error(409, "You already created this model repo", url=url)
                hub.exists, hub.private = True, payload.get("visibility") == "private"
                return self._json({"url": url, "name": name, "id": "fake"})

            def _commit(self, body: bytes):
                """An NDJSON commit: a header line, then one line per file added (inline, base64) or deleted."""
                lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
                commit = {"header": lines[0]["value"], "files": {}, "deleted": []}
                for line in lines[1:]:
                    value = line["value"]
                    if line["key"] == "file":
                        commit["files"][value["path"]] = base64.b64decode(value["content"])
                    elif line["key"] == "deletedFile":
                        commit["deleted"].append(value["path"])
                    else:  # lfsFile and the rest: preupload never asks for them here
                        return self._error(400, f"this fake hub takes regular files only, not {line['key']}")
                hub.commits.append(commit)
                hub.files.update(commit["files"])
                for name in commit["deleted"]:
                    hub.files.pop(name, None)
                oid = hashlib.sha1(body).hexdigest()
                url = f"http://{self.headers['Host']}/{hub.repo_id}/commit/{oid}"
                return self._json({"commitUrl": url, "commitOid": oid, "pullRequestUrl": None})

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
