# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: homelab.immich_proxy contributors
"""End-to-end checks of a deployed Immich proxy, as a client sees it.

Standard library only (runs on the managed host or on the controller). Every
check returns a Check with a sentence that says what was expected and what came
back, so a failed run reads as a diagnosis.
"""
from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import time
from urllib.parse import urlsplit

from ansible_collections.homelab.immich_proxy.plugins.module_utils._settings import (
    PING_PATH,
    WEBSOCKET_PATH,
    WELL_KNOWN_PATH,
    format_size,
)

UPLOAD_PATH = "/api/assets"
# With body size 0 (unlimited) the probe announces this much.
UNLIMITED_PROBE_BYTES = 100 * 1024 ** 3


class Check:
    def __init__(self, name, ok, detail):
        self.name = name
        self.ok = ok
        self.detail = detail

    def as_dict(self):
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


class Target:
    """Where to connect (``connect_host``) and what to ask for (the public URL's host)."""

    def __init__(self, url, connect_host=None, ca_path=None, validate_certs=True, timeout=10.0, connect_port=None):
        parts = urlsplit(url)
        self.scheme = parts.scheme
        self.host = parts.hostname
        default_port = 443 if self.scheme == "https" else 80
        public_port = parts.port or default_port
        self.host_header = parts.netloc.rsplit("@", 1)[-1] if public_port != default_port else self.host
        self.connect_host = connect_host or self.host
        # A router may forward the public port to another one on the proxy host.
        self.port = connect_port or public_port
        self.timeout = timeout
        self.context = None
        if self.scheme == "https":
            self.context = ssl.create_default_context(cafile=ca_path)
            if not validate_certs:
                self.context.check_hostname = False
                self.context.verify_mode = ssl.CERT_NONE

    def connect(self, alpn=None):
        sock = socket.create_connection((self.connect_host, self.port), timeout=self.timeout)
        if self.context is None:
            return sock
        if alpn:
            self.context.set_alpn_protocols(alpn)
        try:
            return self.context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise

    def request(self, method, path, headers=None, read_body=True):
        """Send one request without a body; return (status, headers dict, body bytes)."""
        lines = ["%s %s HTTP/1.1" % (method, path), "Host: %s" % self.host_header,
                 "User-Agent: homelab.immich_proxy-check", "Accept: */*"]
        lines += ["%s: %s" % item for item in (headers or {}).items()]
        if not any(k.lower() == "connection" for k in (headers or {})):
            lines.append("Connection: close")
        sock = self.connect()
        try:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            return read_response(sock, read_body)
        finally:
            sock.close()


def read_response(sock, read_body=True):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _sep, body = data.partition(b"\r\n\r\n")
    lines = head.decode("iso-8859-1").split("\r\n")
    if not lines or len(lines[0].split(" ")) < 2:
        raise OSError("no HTTP response (got %r)" % data[:80])
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        key, _sep, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    if read_body and status not in (100, 101, 204, 304):
        length = headers.get("content-length")
        if length is not None:
            while len(body) < int(length):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                body += chunk
        elif "chunked" in headers.get("transfer-encoding", ""):
            while not body.endswith(b"0\r\n\r\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                body += chunk
            body = _dechunk(body)
    return status, headers, body


def _dechunk(raw):
    out = b""
    while raw:
        size_line, _sep, raw = raw.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += raw[:size]
        raw = raw[size + 2:]
    return out


def _json_check(target, name, path, predicate, expectation):
    try:
        status, _headers, body = target.request("GET", path)
    except (OSError, ssl.SSLError) as exc:
        return Check(name, False, "GET %s: expected %s, the connection failed: %s" % (path, expectation, exc))
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if status == 200 and payload is not None and predicate(payload):
        return Check(name, True, "GET %s answered %s" % (path, json.dumps(payload)))
    return Check(name, False, "GET %s: expected %s, got HTTP %d %r" % (path, expectation, status, body[:200]))


def check_well_known(target):
    return _json_check(target, "well_known", WELL_KNOWN_PATH,
                       lambda p: isinstance(p, dict) and isinstance(p.get("api"), dict) and "endpoint" in p["api"],
                       "Immich's discovery JSON {\"api\": {\"endpoint\": ...}}")


def check_ping(target):
    return _json_check(target, "ping", PING_PATH, lambda p: p == {"res": "pong"}, "{\"res\": \"pong\"}")


def check_websocket(target):
    path = WEBSOCKET_PATH + "/?EIO=4&transport=websocket"
    key = base64.b64encode(os.urandom(16)).decode()
    headers = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": key}
    try:
        status, _headers, body = target.request("GET", path, headers, read_body=False)
    except (OSError, ssl.SSLError) as exc:
        return Check("websocket", False, "websocket upgrade on %s failed: %s" % (path, exc))
    if status == 101:
        return Check("websocket", True, "GET %s with Upgrade: websocket answered 101 Switching Protocols" % path)
    return Check("websocket", False, "GET %s with Upgrade: websocket: expected 101, got HTTP %d %r "
                 "(is the Upgrade header passed on?)" % (path, status, body[:120]))


def check_body_size(target, max_body_size):
    """Announce a body of the configured size without sending it; the proxy must not answer 413."""
    size = max_body_size or UNLIMITED_PROBE_BYTES
    lines = ["POST %s HTTP/1.1" % UPLOAD_PATH, "Host: %s" % target.host_header, "Content-Length: %d" % size,
             "Content-Type: application/octet-stream", "Expect: 100-continue", "Connection: close"]
    try:
        sock = target.connect()
    except (OSError, ssl.SSLError) as exc:
        return Check("body_size", False, "could not connect to probe the body size limit: %s" % exc)
    try:
        sock.settimeout(5)
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        try:
            status, _headers, _body = read_response(sock, read_body=False)
        except socket.timeout:
            status = None
    except (OSError, ssl.SSLError) as exc:
        return Check("body_size", False, "probing the body size limit failed: %s" % exc)
    finally:
        sock.close()
    if status == 413:
        return Check("body_size", False, "a request announcing %s was refused with 413 Request Entity Too Large; "
                     "the proxy (or something in front of it) limits bodies below %s"
                     % (format_size(size), format_size(size)))
    seen = "waited for the body" if status is None else "answered %d before the body" % status
    return Check("body_size", True, "a request announcing %s was admitted (the proxy %s)" % (format_size(size), seen))


def check_tls(target):
    if target.scheme != "https":
        return Check("tls", True, "plain HTTP: no certificate to check")
    try:
        sock = target.connect()
    except ssl.SSLCertVerificationError as exc:
        return Check("tls", False, "the certificate for %s is not valid: %s" % (target.host, exc.verify_message))
    except (OSError, ssl.SSLError) as exc:
        return Check("tls", False, "TLS handshake with %s failed: %s" % (target.host, exc))
    try:
        cert = sock.getpeercert()
        version = sock.version()
    finally:
        sock.close()
    if not cert:
        return Check("tls", True, "%s; certificate not verified (validate_certs is false)" % version)
    expires = ssl.cert_time_to_seconds(cert["notAfter"])
    days = int((expires - time.time()) // 86400)
    issuer = dict(item[0] for item in cert.get("issuer", ()))
    return Check("tls", days > 0, "%s; certificate valid for %s, issued by %s, expires in %d days"
                 % (version, target.host, issuer.get("commonName", issuer.get("organizationName", "?")), days))


def run_checks(target, max_body_size):
    return [check_tls(target), check_well_known(target), check_ping(target), check_websocket(target),
            check_body_size(target, max_body_size)]
