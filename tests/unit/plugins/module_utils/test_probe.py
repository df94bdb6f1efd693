# SPDX-License-Identifier: GPL-3.0-or-later
"""The end-to-end checks against small local servers that behave well or badly."""
from __future__ import annotations

import datetime
import socket
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.homelab.immich_proxy.plugins.module_utils._probe import (
    Target,
    check_body_size,
    check_ping,
    check_tls,
    check_websocket,
    check_well_known,
    run_checks,
)

HOLD = object()


class Server:
    """A loopback server that reads each request head, then sends ``answers`` in turn.

    ``HOLD`` keeps the connection open until the client closes it, as a proxy
    waiting for the announced body does. What each client sent (head and
    anything after it) is recorded in ``received``.
    """

    def __init__(self, *answers, tls=None):
        self.answers = answers
        self.tls = tls
        self.received = []
        self.handled = threading.Semaphore(0)
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._run, daemon=True).start()

    def close(self):
        self.listener.close()

    def _run(self):
        while True:
            try:
                conn, _addr = self.listener.accept()
            except OSError:
                return
            try:
                if self.tls is not None:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                with conn:
                    self._handle(conn)
            except OSError:  # the client gave up on the handshake or the connection
                pass
            self.handled.release()

    def wait(self):
        """What the first client sent, once the server has finished with it."""
        assert self.handled.acquire(timeout=5), "the server did not finish with the connection"
        return self.received[0]

    def _handle(self, conn):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        for answer in self.answers:
            if answer is HOLD:
                chunk = conn.recv(4096)
                while chunk:
                    data += chunk
                    chunk = conn.recv(4096)
            else:
                conn.sendall(answer)
        self.received.append(data)


@pytest.fixture
def target():
    servers = []

    def make(*answers, timeout=3):
        server = Server(*answers)
        servers.append(server)
        made = Target("http://photos.example.org:%d" % server.port, connect_host="127.0.0.1", timeout=timeout)
        made.server = server
        return made

    yield make
    for server in servers:
        server.close()


def lab_ca_certificate(directory):
    """Write a lab CA and a certificate for photos.example.org it issued; return (ca, cert, key) paths."""
    now = datetime.datetime.now(datetime.timezone.utc)

    def issue(subject, issuer, key, signer, ca):
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=30))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName("photos.example.org")]),
                                            critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, site_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Homelab Lab CA")])
    site_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "photos.example.org")])
    paths = directory / "ca.pem", directory / "site.pem", directory / "site.key"
    paths[0].write_bytes(issue(ca_name, ca_name, ca_key, ca_key, ca=True).public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(issue(site_name, ca_name, site_key, ca_key, ca=False).public_bytes(
        serialization.Encoding.PEM))
    paths[2].write_bytes(site_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
    return tuple(str(path) for path in paths)


@pytest.fixture
def lab_ca_proxy(tmp_path):
    """An HTTPS server for photos.example.org whose certificate comes from a lab CA the system does not trust.

    Yields (port, path of the lab CA's certificate).
    """
    ca_path, cert_path, key_path = lab_ca_certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server = Server(response("200 OK", b'{"res": "pong"}'), tls=context)
    yield server.port, ca_path
    server.close()


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


GIB_50000M = 50000 * 1024 ** 2
IMMICH_401 = response("401 Unauthorized", b'{"message":"Authentication required","error":"Unauthorized",'
                      b'"statusCode":401}', "Content-Type: application/json\r\n")
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


@pytest.mark.parametrize("answers, seen", [
    ((CONTINUE, HOLD), "answered 100 Continue and waited for the body"),
    # nginx with proxy_request_buffering off says 100 itself, then passes on Immich's 401 for the missing login
    ((CONTINUE, IMMICH_401, HOLD), "answered 100 Continue, then HTTP 401"),
    # a proxy that strips Expect and streams: Immich answers before the body
    ((IMMICH_401, HOLD), "that is Immich asking for a login"),
    # 102/103 interim answers before the 100
    ((b"HTTP/1.1 103 Early Hints\r\nLink: </app.js>\r\n\r\n" + CONTINUE, HOLD), "answered 100 Continue"),
    # Caddy 2.7+ says 100 itself and then relays Immich's own 100
    ((CONTINUE, CONTINUE, HOLD), "answered 100 Continue and waited for the body"),
    ((CONTINUE + CONTINUE, IMMICH_401, HOLD), "answered 100 Continue, then HTTP 401"),
])
def test_100_continue_or_immichs_own_answer_admits_the_size(target, answers, seen):
    probe = target(*answers)
    check = check_body_size(probe, GIB_50000M)
    assert check.ok, check.detail
    assert "announcing 50000M was admitted" in check.detail and seen in check.detail
    head, _sep, after = probe.server.wait().partition(b"\r\n\r\n")
    assert b"Expect: 100-continue" in head and b"Content-Length: %d" % GIB_50000M in head
    assert after == b"", "the probe sent body bytes: %r" % after[:40]


@pytest.mark.parametrize("server, limit", [
    ("nginx/1.26.3", "client_max_body_size"),
    ("cloudflare", "100 MB on the Free and Pro plans"),
])
def test_a_413_is_refused_and_says_which_limit(target, server, limit):
    check = check_body_size(target(response("413 Request Entity Too Large", extra="Server: %s\r\n" % server)),
                            GIB_50000M)
    assert not check.ok
    assert "announcing 50000M was refused" in check.detail and "413" in check.detail
    assert limit in check.detail and server.lower() in check.detail.lower()


@pytest.mark.parametrize("answers, status, meaning", [
    ((response("502 Bad Gateway", b"<html>502</html>"),), 502, "could not reach Immich"),
    # nginx with proxy_request_buffering off and Immich down: its own 100, then 502 at once
    ((CONTINUE, response("502 Bad Gateway"), HOLD), 502, "could not reach Immich"),
    ((response("400 Bad Request"),), 400, "rejected the request"),
    ((response("411 Length Required"),), 411, "Content-Length"),
    ((response("417 Expectation Failed"),), 417, "refuses Expect: 100-continue"),
    ((response("401 Unauthorized", b"<html>login</html>", 'WWW-Authenticate: Basic realm="x"\r\n'),), 401,
     "asks for a login"),
    ((response("308 Permanent Redirect", extra="Location: https://photos.example.org/api/assets\r\n"),), 308,
     "redirect to https://photos.example.org/api/assets"),
])
def test_any_other_answer_fails_quoting_the_status(target, answers, status, meaning):
    check = check_body_size(target(*answers), GIB_50000M)
    assert not check.ok
    assert "expected 100 Continue" in check.detail and "HTTP %d" % status in check.detail
    assert meaning in check.detail


def test_silence_after_the_head_fails_instead_of_counting_as_admitted(target):
    probe = target(HOLD, timeout=1)
    check = check_body_size(probe, GIB_50000M)
    assert not check.ok
    assert "no answer to Expect: 100-continue within 1 s" in check.detail
    assert probe.server.wait().endswith(b"\r\n\r\n"), "the probe sent body bytes"


def test_a_private_ca_fails_tls_once_names_the_variable_and_skips_the_rest(lab_ca_proxy):
    port, ca_path = lab_ca_proxy
    checks = run_checks(Target("https://photos.example.org", connect_host="127.0.0.1", connect_port=port,
                               timeout=3), GIB_50000M)
    tls, others = checks[0], checks[1:]
    assert (tls.name, tls.ok, tls.skipped) == ("tls", False, False)
    assert "the certificate for photos.example.org is not valid: unable to get local issuer certificate" in tls.detail
    assert "set immich_proxy_check_ca_path to that CA's bundle (the check module's ca_path)" in tls.detail
    assert [c.name for c in others] == ["well_known", "ping", "websocket", "body_size"]
    for check in others:
        assert check.skipped and not check.ok, check.as_dict()
        assert "not run because the tls check failed" in check.detail
        assert "issuer" not in check.detail
    trusted = check_tls(Target("https://photos.example.org", connect_host="127.0.0.1", connect_port=port,
                               ca_path=ca_path, timeout=3))
    assert trusted.ok, trusted.detail
    assert "issued by Homelab Lab CA" in trusted.detail


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
