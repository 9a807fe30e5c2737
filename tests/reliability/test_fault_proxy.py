"""The fault proxy itself: a fault test that brings a server back at once must not fail in the proxy."""

from __future__ import annotations

import socket
import time

from tests.support.proxy import FaultProxy


def test_the_proxy_comes_back_up_right_after_going_down_and_carries_bytes_again() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server, FaultProxy(server.getsockname()[1]) as proxy:
        first = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        server.accept()[0].close()
        time.sleep(0.05)  # the accept loop is back in accept(), holding the listener, as it is most of the time
        proxy.down()
        proxy.up()  # at once: the accept loop may still hold the old listener open
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as again:
            upstream, _ = server.accept()
            again.sendall(b"ping")
            assert upstream.recv(4) == b"ping"
            upstream.close()
        first.close()
