"""A TCP proxy on 127.0.0.1 that can cut, refuse or silence every connection it carries, for fault tests."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time

HOST = "127.0.0.1"


class _Link:
    """One client connection and its upstream twin, pumped by two threads."""

    def __init__(self, proxy: FaultProxy, client: socket.socket, upstream: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.silent = False
        self.closed = threading.Event()

    def start(self) -> None:
        for source, sink in ((self.client, self.upstream), (self.upstream, self.client)):
            threading.Thread(target=self._pump, args=(source, sink), daemon=True, name="proxy-pump").start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while not self.closed.is_set():
                if self.silent:
                    # Not reading is what a dead path looks like: the peer's bytes pile up, nothing arrives.
                    time.sleep(0.05)
                    continue
                ready, _, _ = select.select([source], [], [], 0.1)
                if not ready or self.silent:
                    continue
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
                self.proxy.bytes_forwarded += len(data)
        except OSError:
            pass
        self.close()

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
        self.proxy._forget(self)


class FaultProxy:
    """Forwards 127.0.0.1:<port> to 127.0.0.1:<target>. Faults: cut(), down()/up(), silence()/resume()."""

    def __init__(self, target_port: int, *, name: str = "proxy") -> None:
        self.target_port = target_port
        self.name = name
        self.port = 0
        self.bytes_forwarded = 0
        self.connections_made = 0
        self._links: set[_Link] = set()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._refusing = False
        self._silence_new = False
        self._stopped = threading.Event()

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._listen()
        threading.Thread(target=self._accept_loop, daemon=True, name=f"{self.name}-accept").start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._close_listener()
        self.cut()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults ----------------------------------------------------------------------------------------------

    def cut(self) -> int:
        """Close every open connection (new ones are still accepted). Returns how many were cut."""
        with self._lock:
            links = list(self._links)
        for link in links:
            link.close()
        return len(links)

    def down(self) -> None:
        """The server is gone: open connections are cut and new ones refused, until up()."""
        self._refusing = True
        self._close_listener()
        self.cut()

    def refuse_new(self) -> None:
        """New connections are refused; open ones carry on (a server that takes no more clients), until up()."""
        self._refusing = True

    def up(self) -> None:
        self._refusing = False
        if self._listener is None:
            self._listen()

    def silence(self, *, new_connections: bool = False) -> int:
        """Open connections stay open but carry no bytes either way; optionally new ones too."""
        self._silence_new = new_connections
        with self._lock:
            links = list(self._links)
        for link in links:
            link.silent = True
        return len(links)

    def resume(self) -> None:
        """Everything flows again (connections silenced earlier carry their backlog on)."""
        self._silence_new = False
        with self._lock:
            links = list(self._links)
        for link in links:
            link.silent = False

    def open_connections(self) -> int:
        with self._lock:
            return len(self._links)

    # -- plumbing --------------------------------------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, self.port))
        listener.listen(128)
        listener.settimeout(0.1)
        self.port = listener.getsockname()[1]
        self._listener = listener

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.close()

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            listener = self._listener
            if listener is None:
                time.sleep(0.05)
                continue
            try:
                client, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            if self._refusing:
                client.close()
                continue
            try:
                upstream = socket.create_connection((HOST, self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            for sock in (client, upstream):
                sock.settimeout(None)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _Link(self, client, upstream)
            link.silent = self._silence_new
            with self._lock:
                self._links.add(link)
                self.connections_made += 1
            link.start()

    def _forget(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)
