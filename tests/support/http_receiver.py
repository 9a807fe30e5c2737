"""A real HTTP server in the test process that receives webhooks; the path says how it answers.

- `/ok/<key>`                      200 "thanks"
- `/fail/<key>/<n>`                500 for the first n requests of that key, then 200
- `/retry-after/<key>/<seconds>`   503 with Retry-After the first time, then 200
- `/status/<code>`                 that status
- `/slow/<group>/<seconds>[/...]`  sleeps, then 200; in-flight requests per group and Host are counted
- `/big`                           200 with 100 kB of body
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.counts: dict[str, int] = {}
        self.in_flight: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.handle(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str, host: str = HOST) -> str:
        return f"http://{host}:{self.port}{path}"

    def handle(self, http: BaseHTTPRequestHandler) -> None:
        body = http.rfile.read(int(http.headers.get("content-length", 0)))
        headers = {k.lower(): v for k, v in http.headers.items()}
        parts = http.path.strip("/").split("/")
        with self.lock:
            self.requests.append(Request(http.path, headers, body, time.time()))
            key = "/".join(parts[:2])
            self.counts[key] = self.counts.get(key, 0) + 1
            seen = self.counts[key]
        kind = parts[0]
        if kind == "fail" and seen <= int(parts[2]):
            return self.answer(http, 500, b"boom")
        if kind == "retry-after" and seen == 1:
            return self.answer(http, 503, b"busy", {"Retry-After": parts[2]})
        if kind == "status":
            return self.answer(http, int(parts[1]), f"status {parts[1]}".encode())
        if kind == "big":
            return self.answer(http, 200, b"x" * 100_000)
        if kind == "slow":
            host = parts[1] + "@" + headers.get("host", "")
            with self.lock:
                self.in_flight[host] = self.in_flight.get(host, 0) + 1
                self.peak[host] = max(self.peak.get(host, 0), self.in_flight[host])
            try:
                time.sleep(float(parts[2]))
            finally:
                with self.lock:
                    self.in_flight[host] -= 1
        return self.answer(http, 200, b"thanks")

    @staticmethod
    def answer(http: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        http.send_response(status)
        for name, value in (headers or {}).items():
            http.send_header(name, value)
        http.send_header("Content-Length", str(len(body)))
        http.end_headers()
        http.wfile.write(body)

    def received(self, prefix: str) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.path.startswith(prefix)]

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
