"""The suite runs offline: the autouse fixture of conftest refuses every non-local socket."""

from __future__ import annotations

import socket
import threading

import pytest


def _blocked():
    """The fixture's refusal (a ConnectionRefusedError; conftest modules are not importable by name here)."""
    return pytest.raises(ConnectionRefusedError, match="network access blocked in tests")


def test_remote_connections_and_lookups_are_refused():
    for family, address in ((socket.AF_INET, ("8.8.8.8", 53)), (socket.AF_INET6, ("2001:4860:4860::8888", 53, 0, 0))):
        with socket.socket(family, socket.SOCK_STREAM) as s:
            with _blocked():
                s.connect(address)
            with _blocked():
                s.connect_ex(address)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        with _blocked():
            s.sendto(b"x", ("1.1.1.1", 53))
    with _blocked():
        socket.getaddrinfo("example.com", 80)
    with pytest.raises(OSError):  # what offline-aware code catches
        socket.create_connection(("huggingface.co", 443), timeout=1)


def test_loopback_and_unix_sockets_still_work():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        got = []

        def serve():
            conn, _ = server.accept()
            with conn:
                got.append(conn.recv(5))

        t = threading.Thread(target=serve)
        t.start()
        with socket.create_connection(("localhost", port), timeout=5) as c:
            c.sendall(b"hello")
        t.join(5)
        assert got == [b"hello"]
    a, b = socket.socketpair(socket.AF_UNIX)
    with a, b:
        a.sendall(b"ok")
        assert b.recv(2) == b"ok"
