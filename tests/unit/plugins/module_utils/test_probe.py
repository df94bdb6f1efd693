# SPDX-License-Identifier: GPL-3.0-or-later
"""The end-to-end checks against small local servers that behave well or badly."""
from __future__ import annotations

import socket
import threading

import pytest

from ansible_collections.homelab.immich_proxy.plugins.module_utils._probe import (
    Target,
    check_body_size,
    check_ping,
    check_websocket,
    check_well_known,
)


def serve(answer):
    """A loopback server that reads each request head and sends ``answer`` (None: waits for the body)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)

    def run():
        while True:
            try:
                conn, _addr = listener.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                if answer is None:
                    while conn.recv(4096):  # a proxy waiting for the announced body
                        pass
                else:
                    conn.sendall(answer)

    threading.Thread(target=run, daemon=True).start()
    return listener


@pytest.fixture
def target():
    servers = []

    def make(answer):
        listener = serve(answer)
        servers.append(listener)
        return Target("http://photos.example.org:%d" % listener.getsockname()[1], connect_host="127.0.0.1",
                      timeout=3)

    yield make
    for listener in servers:
        listener.close()


def response(status, body=b"", extra=""):
    return ("HTTP/1.1 %s\r\nContent-Length: %d\r\n%s\r\n" % (status, len(body), extra)).encode() + body


def test_immichs_answers_pass(target):
    assert check_well_known(target(response("200 OK", b'{"api": {"endpoint": "/api"}}'))).ok
    assert check_ping(target(response("200 OK", b'{"res": "pong"}'))).ok


def test_a_well_known_path_swallowed_by_another_location_fails_with_what_came_back(target):
    check = check_well_known(target(response("404 Not Found", b"<html>404</html>")))
    assert not check.ok
    assert "got HTTP 404" in check.detail


def test_a_websocket_upgrade_must_answer_101(target):
    assert check_websocket(target(response("101 Switching Protocols", extra="Upgrade: websocket\r\n"))).ok
    check = check_websocket(target(response("400 Bad Request", b'{"code":3}')))
    assert not check.ok and "expected 101, got HTTP 400" in check.detail


def test_a_413_before_the_body_fails_the_body_size_check(target):
    check = check_body_size(target(response("413 Request Entity Too Large")), 50000 * 1024 ** 2)
    assert not check.ok
    assert "413" in check.detail and "50000M" in check.detail


def test_a_proxy_that_waits_for_the_body_or_continues_passes(target):
    assert check_body_size(target(b"HTTP/1.1 100 Continue\r\n\r\n"), 1024).ok
    assert check_body_size(target(None), 1024).ok


def test_a_closed_port_is_reported_not_raised():
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    check = check_ping(Target("http://photos.example.org:%d" % port, connect_host="127.0.0.1", timeout=2))
    assert not check.ok and "connection failed" in check.detail


@pytest.mark.parametrize("url, connect_port, port, host_header", [
    ("https://photos.example.org", None, 443, "photos.example.org"),
    ("https://photos.example.org", 8443, 8443, "photos.example.org"),
    ("https://photos.example.org:8443", None, 8443, "photos.example.org:8443"),
    ("http://photos.example.org:8080", 80, 80, "photos.example.org:8080"),
])
def test_a_forwarded_port_is_connected_to_while_host_keeps_the_public_port(url, connect_port, port, host_header):
    target = Target(url, connect_host="127.0.0.1", validate_certs=False, connect_port=connect_port)
    assert (target.port, target.host_header) == (port, host_header)
