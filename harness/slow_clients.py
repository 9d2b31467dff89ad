"""Clients that open a connection and send their request headers one byte a second, never finishing:
what the edge must hold so that gunicorn's threads stay free (tests/test_edge.py, bench.slow_clients)."""

import contextlib
import socket
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def slow_connections(port: int, count: int) -> Iterator[list[socket.socket]]:
    """`count` connections to 127.0.0.1:`port`, each sending one more header byte a second until the
    block ends; yields the open sockets (a caller may remove and close the ones the server closed)."""
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: slow\r\nX-Slow: ")
        sockets.append(sock)
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(1.0):
            for sock in list(sockets):
                with contextlib.suppress(OSError):
                    sock.send(b"a")

    thread = threading.Thread(target=trickle, name="slow-clients")
    thread.start()
    try:
        yield sockets
    finally:
        stop.set()
        thread.join()
        for sock in sockets:
            sock.close()
