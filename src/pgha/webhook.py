"""A local Alertmanager webhook receiver that records what it got (the monitor node's default receiver).

Runs as a file of its own on the monitor node (standard library only): ``python3 pgha-webhook.py PORT FILE``.
Every POST body (Alertmanager's webhook JSON) is appended to FILE as one line; ``GET /`` returns the
lines as a JSON list, newest last. Listens on 127.0.0.1 only: Alertmanager beside it is its one client.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 1 << 20
_lock = threading.Lock()


def handler(path: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            length = int(self.headers.get("Content-Length") or 0)
            if length <= 0 or length > MAX_BODY:
                self.send_error(413 if length > MAX_BODY else 400)
                return
            try:
                body = json.loads(self.rfile.read(length))
            except ValueError:
                self.send_error(400)
                return
            with _lock, open(path, "a") as out:
                out.write(json.dumps(body, separators=(",", ":")) + "\n")
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:  # noqa: N802
            try:
                with _lock, open(path) as f:
                    lines = [json.loads(line) for line in f if line.strip()]
            except FileNotFoundError:
                lines = []
            data = json.dumps(lines).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass  # the file is the record

    return Handler


def main(argv: list[str]) -> None:
    port, path = int(argv[1]), argv[2]
    ThreadingHTTPServer(("127.0.0.1", port), handler(path)).serve_forever()


if __name__ == "__main__":
    main(sys.argv)
