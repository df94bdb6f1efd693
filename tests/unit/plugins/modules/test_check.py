# SPDX-License-Identifier: GPL-3.0-or-later
"""The check module end to end against loopback servers: what a homelab user reads when it fails."""
from __future__ import annotations

import datetime
import socketserver
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.homelab.immich_proxy.plugins.modules import check

ANSWERS = {
    "/.well-known/immich": b'HTTP/1.1 200 OK\r\nContent-Length: 29\r\n\r\n{"api": {"endpoint": "/api"}}',
    "/api/server/ping": b'HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{"res": "pong"}',
    "/api/socket.io/": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    # nginx with request buffering on: 100 Continue, then it waits for the body
    "/api/assets": b"HTTP/1.1 100 Continue\r\n\r\n",
}


class FakeProxy(socketserver.ThreadingTCPServer):
    """Immich's answers by path, over TLS when given a context; each connection in its own thread."""

    daemon_threads = True

    def __init__(self, tls=None):
        super().__init__(("127.0.0.1", 0), Handler)
        self.tls = tls
        self.port = self.server_address[1]
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def get_request(self):
        conn, addr = super().get_request()
        return (self.tls.wrap_socket(conn, server_side=True) if self.tls else conn), addr

    def handle_error(self, request, client_address):
        """A client that gave up on the handshake is the point of some tests, not an error."""


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.request.recv(4096)
            if not chunk:
                return
            head += chunk
        path = head.split(b" ")[1].decode().split("?")[0]
        self.request.sendall(ANSWERS.get(path, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"))
        while self.request.recv(4096):  # hold the connection until the client is done
            pass


@pytest.fixture
def lab_ca(tmp_path):
    """A lab CA and the certificate for photos.example.org it issued: (ca path, server context)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, site_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Homelab Lab CA")])

    def builder(subject, key, ca):
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=30))
                .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))

    ca_cert = builder(ca_name, ca_key, True).sign(ca_key, hashes.SHA256())
    site_cert = (builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "photos.example.org")]), site_key, False)
                 .add_extension(x509.SubjectAlternativeName([x509.DNSName("photos.example.org")]), critical=False)
                 .sign(ca_key, hashes.SHA256()))
    (tmp_path / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "site.pem").write_bytes(site_cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "site.key").write_bytes(site_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(tmp_path / "site.pem"), str(tmp_path / "site.key"))
    return str(tmp_path / "ca.pem"), context


@pytest.fixture
def proxy():
    servers = []

    def start(tls=None):
        servers.append(FakeProxy(tls))
        return servers[-1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def args(port, **extra):
    return dict({"url": "https://photos.example.org", "connect_host": "127.0.0.1", "connect_port": port,
                 "timeout": 3}, **extra)


def test_a_private_ca_certificate_is_one_failure_that_names_immich_proxy_check_ca_path(run_module, proxy, lab_ca):
    _ca_path, context = lab_ca
    result, failed = run_module(check, args(proxy(context).port))
    assert failed
    assert result["msg"].startswith(
        "1 of 5 checks of https://photos.example.org failed and 4 could not run without it: tls: the certificate "
        "for photos.example.org is not valid: unable to get local issuer certificate. If it is self-signed or "
        "comes from a private CA (your own files, a lab CA or a private ACME server), set "
        "immich_proxy_check_ca_path to that CA's bundle (the check module's ca_path)"), result["msg"]
    assert result["msg"].count("unable to get local issuer certificate") == 1, result["msg"]
    assert [(c["name"], c["ok"], c["skipped"]) for c in result["checks"]] == [
        ("tls", False, False), ("well_known", False, True), ("ping", False, True), ("websocket", False, True),
        ("body_size", False, True)]


def test_the_lab_cas_bundle_as_ca_path_makes_every_check_pass(run_module, proxy, lab_ca):
    ca_path, context = lab_ca
    result, failed = run_module(check, args(proxy(context).port, ca_path=ca_path))
    assert not failed, result["msg"]
    assert [(c["name"], c["ok"], c["skipped"]) for c in result["checks"]] == [
        ("tls", True, False), ("well_known", True, False), ("ping", True, False), ("websocket", True, False),
        ("body_size", True, False)]
    assert "issued by Homelab Lab CA" in result["checks"][0]["detail"]
    assert "answered 100 Continue and waited for the body" in result["checks"][4]["detail"]


def test_a_ca_path_that_is_not_a_bundle_fails_with_the_option_named(run_module, tmp_path):
    missing = str(tmp_path / "lab-ca.pem")
    result, failed = run_module(check, args(443, ca_path=missing))
    assert failed
    assert result["msg"].startswith("ca_path '%s' could not be read as a CA bundle" % missing), result["msg"]
