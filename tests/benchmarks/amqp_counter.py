"""A TCP proxy to RabbitMQ that counts the AMQP 0-9-1 frames crossing it, by direction and method, and the bytes.

Frames are read off the stream as they pass (type, channel, size, payload, end octet); nothing is changed or held
back. `counts[("client", "basic.publish")]` is how many publishes clients sent; "server" is the other way.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections import Counter

#: (class id, method id) -> name, for the methods a job's life uses; others are counted as "class.method" numbers.
METHODS = {
    (60, 40): "basic.publish",
    (60, 60): "basic.deliver",
    (60, 80): "basic.ack",
    (60, 90): "basic.reject",
    (60, 120): "basic.nack",
    (60, 20): "basic.consume",
    (60, 10): "basic.qos",
    (85, 10): "confirm.select",
}
PROTOCOL_HEADER = 8  #: "AMQP\x00\x00\x09\x01", sent by the client before its first frame


class _FrameReader:
    """Splits one direction's bytes into frames and counts them."""

    def __init__(self, counter: AmqpCounter, direction: str, header: int) -> None:
        self.counter, self.direction = counter, direction
        self.buffer = b""
        self.skip = header

    def feed(self, data: bytes) -> None:
        self.buffer += data
        if self.skip:
            taken = min(self.skip, len(self.buffer))
            self.buffer, self.skip = self.buffer[taken:], self.skip - taken
        while len(self.buffer) >= 7:
            kind = self.buffer[0]
            size = int.from_bytes(self.buffer[3:7], "big")
            if len(self.buffer) < 8 + size:
                return
            payload = self.buffer[7 : 7 + size]
            self.buffer = self.buffer[8 + size :]
            if kind == 1 and size >= 4:
                key = (int.from_bytes(payload[0:2], "big"), int.from_bytes(payload[2:4], "big"))
                name = METHODS.get(key, f"{key[0]}.{key[1]}")
            else:
                name = {2: "content header", 3: "content body", 8: "heartbeat"}.get(kind, f"frame {kind}")
            self.counter.count(self.direction, name)


class AmqpCounter:
    """Listens on 127.0.0.1:<port> and forwards to `target`; `counts` and `bytes` grow as clients talk."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5672)) -> None:
        self.target = target
        self.counts: Counter[tuple[str, str]] = Counter()
        self.bytes: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, name="amqp-counter", daemon=True).start()

    def count(self, direction: str, name: str) -> None:
        with self._lock:
            self.counts[(direction, name)] += 1

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.bytes.clear()

    def url(self, url: str) -> str:
        """`url` (an amqp:// URL) with this proxy's address instead of its host and port."""
        scheme, rest = url.split("://", 1)
        auth, _, tail = rest.rpartition("@")
        path = tail.split("/", 1)[1] if "/" in tail else ""
        return f"{scheme}://{auth + '@' if auth else ''}127.0.0.1:{self.port}/{path}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._sockets += [client, upstream]
            for source, sink, direction, header in ((client, upstream, "client", PROTOCOL_HEADER),
                                                    (upstream, client, "server", 0)):  # fmt: skip
                reader = _FrameReader(self, direction, header)
                threading.Thread(target=self._pump, args=(source, sink, reader), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, reader: _FrameReader) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
                with self._lock:
                    self.bytes[reader.direction] += len(data)
                reader.feed(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()
