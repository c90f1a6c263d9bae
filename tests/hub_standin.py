"""A loopback stand-in for the ModelScope hub: the routes the real ``modelscope`` client calls to
download a snapshot (``MODELSCOPE_ENDPOINT`` points it here), serving checkpoint directories in
ModelScope's layout, with faults on demand: ``500`` (every API answer), ``hang`` (the listing
never answers), ``hang-file`` (the listing answers, the files never come), ``truncate`` (the weights file is cut short after its headers promised all of it)
and ``corrupt`` (right length, wrong bytes: only the sha256 check can tell).

Routes (modelscope 1.40 / modelscope-hub 0.5):
    GET /api/v1/models/{owner}/{name}/repo/files?Revision=R&Recursive=True   -> the file list (Sha256, Size)
    GET /api/v1/models/{owner}/{name}/repo?Revision=R&FilePath=P             -> the file's bytes
Everything else is a 404 in the hub's JSON shape. Each request is recorded in ``requests``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class StandInHub:
    def __init__(self) -> None:
        self.repos: dict[str, dict[str, Path]] = {}  # model id -> {path in repo: local file}
        self.fault: str | None = None
        self.requests: list[str] = []
        self.release = threading.Event()  # set to let a hung request go
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                self.do_GET()

            def do_GET(self) -> None:
                hub.requests.append(self.path)
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    hub.answer(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, model_id: str, directory: Path) -> None:
        self.repos[model_id] = {p.relative_to(directory).as_posix(): p for p in sorted(directory.rglob("*"))
                                if p.is_file()}

    def downloads(self) -> list[str]:
        """The file downloads requested so far (listing calls excluded)."""
        return [r for r in self.requests if "FilePath=" in r]

    def __enter__(self) -> StandInHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    # -- answers -------------------------------------------------------------------------------

    def _send(self, h: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str = "application/json",
              length: int | None = None) -> None:
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body) if length is None else length))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)
            h.wfile.flush()

    def _json(self, h, status: int, data) -> None:
        body = {"Code": status, "Success": status == 200, "RequestId": "stand-in"}
        body.update({"Data": data} if status == 200 else {"Message": str(data)})
        self._send(h, status, json.dumps(body).encode())

    def answer(self, h: BaseHTTPRequestHandler) -> None:
        url = urlparse(h.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if self.fault == "500":
            return self._json(h, 500, "internal error (stand-in fault)")
        if self.fault == "hang":
            self.release.wait(120)
            return None
        parts = unquote(url.path).strip("/").split("/")
        # api/v1/models/{owner}/{name}/repo[/files]
        if len(parts) < 6 or parts[:3] != ["api", "v1", "models"] or parts[5] != "repo":
            return self._json(h, 404, f"no route {url.path}")
        model_id = f"{parts[3]}/{parts[4]}"
        files = self.repos.get(model_id)
        if files is None:
            return self._json(h, 404, f"model {model_id} not found")
        if parts[6:] == ["files"]:
            return self._json(h, 200, {"Files": [self._entry(path, file) for path, file in files.items()]})
        if len(parts) == 6 and "FilePath" in query:
            file = files.get(query["FilePath"])
            if file is None:
                return self._json(h, 404, f"{query['FilePath']} not found")
            if self.fault == "hang-file":  # the listing answered; the bytes never come
                self.release.wait(120)
                return None
            data = file.read_bytes()
            weights = file.name.endswith((".bin", ".safetensors"))
            if weights and self.fault == "truncate":  # promise all of it, send half, close
                self._send(h, 200, data[: len(data) // 2], "application/octet-stream", length=len(data))
                h.close_connection = True
                time.sleep(0.05)
                return None
            if weights and self.fault == "corrupt":
                data = bytes(b ^ 0xFF for b in data[:64]) + data[64:]
            return self._send(h, 200, data, "application/octet-stream")
        return self._json(h, 404, f"no route {url.path}")

    @staticmethod
    def _entry(path: str, file: Path) -> dict:
        data = file.read_bytes()
        return {"Name": file.name, "Path": path, "Type": "blob", "Size": len(data),
                "Sha256": hashlib.sha256(data).hexdigest(), "Revision": COMMIT, "IsLFS": False,
                "CommitMessage": "stand-in", "CommittedDate": 1700000000}
