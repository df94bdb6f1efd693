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
import re
import socket
import ssl
import time
from urllib.parse import urlsplit

from ansible_collections.homelab.immich_proxy.plugins.module_utils._settings import (
    DEFAULTS,
    PING_PATH,
    WEBSOCKET_PATH,
    WELL_KNOWN_PATH,
    format_size,
    parse_size,
    parse_url,
)

UPLOAD_PATH = "/api/assets"
# With body size 0 (unlimited) the probe announces this much.
UNLIMITED_PROBE_BYTES = 100 * 1024 ** 3
# After 100 Continue, how long to look for a final answer that does not wait for
# the body: nginx with proxy_request_buffering off says 100 before it connects to
# Immich, so a dead Immich shows as 100 then 502, and Immich itself answers 401
# at once to an upload without a login. Such answers come within a few round trips
# of the 100: the probe waits ten times as long as the 100 took, at least
# CONTINUE_GRACE_MIN (room for a busy host) and at most CONTINUE_GRACE. Every run
# of the role waits it once (beside the other checks).
CONTINUE_GRACE = 0.5
CONTINUE_GRACE_MIN = 0.15
# The role variable that feeds the module's ca_path, named in TLS advice.
CA_PATH_VARIABLE = "immich_proxy_check_ca_path"

# OpenSSL verify codes for "no trusted issuer": 2 unable to get issuer
# certificate, 18 self-signed leaf, 19 self-signed certificate in the chain,
# 20 unable to get local issuer certificate, 21 unable to verify the first
# certificate. A private CA gives these, and so does a public one whose
# intermediates the server does not send.
_UNKNOWN_ISSUER = frozenset({2, 18, 19, 20, 21})
_NOT_YET_VALID = 9
_EXPIRED = 10
_HOSTNAME_MISMATCH = 62

# What a final answer to the body-size probe most likely means, for statuses
# other than 413 (refused) and Immich's own 401 (admitted).
_STATUS_MEANING = {
    400: "the proxy or Immich rejected the request itself (a header too large, or a Host it does not serve)",
    401: "something in front of Immich asks for a login (proxy-level authentication breaks the Immich apps)",
    403: "an access rule, firewall or WAF in front of Immich refuses uploads",
    404: "%s does not reach Immich" % UPLOAD_PATH,
    405: "POST %s is not passed on to Immich" % UPLOAD_PATH,
    408: "the proxy waited for the body instead of answering 100 Continue",
    411: "the proxy wants a Content-Length it did not get: something on the way drops it",
    417: "the proxy refuses Expect: 100-continue, so the size cannot be probed without uploading",
    429: "a rate limit in front of Immich",
    500: "the proxy failed on the request (see its error log)",
    502: "the proxy could not reach Immich (is Immich running at the address the proxy sends to?)",
    503: "the proxy has no Immich to send the request to, or Immich is still starting",
    504: "the proxy timed out waiting for Immich",
}


class Check:
    """One check's outcome.

    ``fatal``: nothing else can be learned over this connection (the TLS
    handshake failed), so the other checks are not run. ``skipped``: a check
    not run for that reason; it is neither passed nor a failure of its own.
    """

    def __init__(self, name, ok, detail, fatal=False, skipped=False):
        self.name = name
        self.ok = ok
        self.detail = detail
        self.fatal = fatal
        self.skipped = skipped

    def as_dict(self):
        return {"name": self.name, "ok": self.ok, "skipped": self.skipped, "detail": self.detail}


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
        self.ca_path = ca_path
        self.context = None
        if self.scheme == "https":
            try:
                self.context = ssl.create_default_context(cafile=ca_path)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError("could not be read as a CA bundle (PEM certificates): %s" % exc) from exc
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
    status, headers, body = _read_head(sock)
    if read_body and status not in (100, 101, 204, 304):
        body = _read_body(sock, headers, body)
    return status, headers, body


def _read_head(sock, data=b""):
    """Read one response head; return (status, headers, the bytes that followed it).

    The bytes that follow are kept because an interim 100 Continue and the final
    answer can arrive in one packet.
    """
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _sep, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("iso-8859-1").split("\r\n")
    fields = lines[0].split(" ")
    if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].isdigit():
        raise OSError("no HTTP response (got %r)" % data[:80])
    headers = {}
    for line in lines[1:]:
        key, _sep, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return int(fields[1]), headers, rest


def _read_body(sock, headers, body):
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
    return body


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
    """Announce a body of the configured size with Expect: 100-continue; never send it.

    Only two answers show that the size is admitted: 100 Continue, and Immich's
    own 401 (the request reached Immich, which asks for a login before it reads
    an upload). Every proxy this collection supports gives one of them at once,
    which is why silence counts as a failure and not as "waiting for the body":

    - nginx refuses an oversized Content-Length with 413 before anything else
      and then answers 100 itself as soon as the proxy handler starts reading
      the body, with proxy_request_buffering on or off; it strips Expect towards
      Immich (ngx_http_core_find_config_phase, ngx_http_test_expect in
      ngx_http_request_body.c, ngx_http_proxy_headers).
    - Apache checks LimitRequestBody first, then passes Expect on to Immich
      (Proxy100Continue, on by default) and relays its 100, or answers 100
      itself when it reads the body.
    - Caddy and Traefik (Go's net/http) answer 100 when the body is first read,
      which their reverse proxies do at once.
    - Immich (Node) answers 100 as soon as the head arrives.
    - Cloudflare's edge forwards 1xx answers but never makes one, so through a
      tunnel the 100 has to come from the origin side.

    A limit enforced only while the body streams (Caddy's request_body
    max_size) cannot be seen without uploading: such a proxy answers 100 and
    refuses later, so the probe reports the size as admitted.
    """
    size = max_body_size or UNLIMITED_PROBE_BYTES
    announced = "a request announcing %s" % format_size(size)
    lines = ["POST %s HTTP/1.1" % UPLOAD_PATH, "Host: %s" % target.host_header, "Content-Length: %d" % size,
             "User-Agent: homelab.immich_proxy-check", "Content-Type: application/octet-stream",
             "Expect: 100-continue", "Connection: close"]
    try:
        sock = target.connect()
    except (OSError, ssl.SSLError) as exc:
        return Check("body_size", False, "could not connect to probe the body size limit: %s" % exc)
    try:
        sock.settimeout(target.timeout)
        sent = time.monotonic()
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return _body_size_verdict(sock, target, size, announced, sent)
    except (OSError, ssl.SSLError) as exc:
        return Check("body_size", False, "%s: the probe failed: %s" % (announced, exc))
    finally:
        sock.close()


def _body_size_verdict(sock, target, size, announced, sent=None):
    try:
        status, headers, rest = _read_interim_or_final(sock)
    except socket.timeout:
        return Check("body_size", False, "%s: no answer to Expect: 100-continue within %g s. nginx, Apache, Caddy "
                     "and Traefik answer 100 Continue at once (or pass it on to Immich, which does), so the request "
                     "is stuck on the way: an Immich that does not answer, or something in front of the proxy "
                     "that waits for the whole body" % (announced, target.timeout))
    except OSError as exc:
        return Check("body_size", False, "%s: the proxy closed the connection instead of answering Expect: "
                     "100-continue (%s)" % (announced, exc))
    continued = status == 100
    if continued:
        took = time.monotonic() - sent if sent is not None else CONTINUE_GRACE
        sock.settimeout(min(CONTINUE_GRACE, max(CONTINUE_GRACE_MIN, 10 * took), target.timeout))
        try:
            status, headers, rest = _read_interim_or_final(sock, rest)
            # Immich's own 100, relayed after the proxy's (Caddy 2.7+ passes 1xx answers on)
            while status == 100:
                status, headers, rest = _read_interim_or_final(sock, rest)
        except socket.timeout:
            return Check("body_size", True, "%s was admitted: the proxy answered 100 Continue and waited for the "
                         "body" % announced)
        except OSError:
            return Check("body_size", False, "%s: the proxy answered 100 Continue, then closed the connection "
                         "without waiting for the body" % announced)
    try:
        body = _read_body(sock, headers, rest)
    except OSError:
        body = rest
    said = ("answered 100 Continue, then HTTP %d without waiting for the body" if continued
            else "answered HTTP %d before the body") % status
    if _is_immichs_login_demand(status, headers, body):
        return Check("body_size", True, "%s was admitted: the proxy %s; that is Immich asking for a login (the probe "
                     "sends none), so the request reached Immich" % (announced, said))
    if status == 413:
        return Check("body_size", False, "%s was refused: the proxy %s (Request Entity Too Large). %s"
                     % (announced, said, _which_limit(headers, size)))
    meaning = _STATUS_MEANING.get(status)
    if meaning is None:
        meaning = ("the upload path does not reach Immich: something answered without waiting for the body"
                   if status < 400 else "a failure on the way to Immich")
    if 300 <= status < 400 and headers.get("location"):
        meaning += " (redirect to %s)" % headers["location"]
    return Check("body_size", False, "%s: expected 100 Continue, the proxy %s: %s%s"
                 % (announced, said, meaning, _quote(body)))


def _read_interim_or_final(sock, data=b""):
    """Read answers until 100 Continue or a final status; other interim ones (102, 103) are skipped."""
    status, headers, rest = _read_head(sock, data)
    while 100 < status < 200:
        status, headers, rest = _read_head(sock, rest)
    return status, headers, rest


def _is_immichs_login_demand(status, headers, body):
    # Immich's 401 is NestJS JSON ({"message": ..., "statusCode": 401}) with no
    # WWW-Authenticate; a proxy's own login prompt (auth_basic, forward auth)
    # sends WWW-Authenticate or an HTML page.
    if status != 401 or "www-authenticate" in headers:
        return False
    try:
        payload = json.loads(body)
    except ValueError:
        return False
    return isinstance(payload, dict) and payload.get("statusCode") == 401


def _which_limit(headers, size):
    server = headers.get("server", "")
    wanted = format_size(size)
    if "cloudflare" in server.lower():
        return ("Cloudflare's edge refused it: its per-request cap (100 MB on the Free and Pro plans, 200 MB on "
                "Business, 500 MB on Enterprise) is below %s and cannot be raised from here; large uploads need a "
                "path around Cloudflare" % wanted)
    by = "%s (the answer's Server header)" % server if server else "The proxy or something in front of it"
    return ("%s limits bodies to less than %s, the size the check asked for (max_body_size, from "
            "immich_proxy_max_body_size): raise that body limit (nginx client_max_body_size, Apache "
            "LimitRequestBody, Traefik buffering maxRequestBodyBytes, Caddy request_body max_size) to at least "
            "that" % (by, wanted))


def _quote(body):
    text = body.decode("utf-8", "replace").strip()
    return " (it said %r)" % text[:120] if text else ""


def check_tls(target):
    if target.scheme != "https":
        return Check("tls", True, "plain HTTP: no certificate to check")
    try:
        sock = target.connect()
    except ssl.SSLCertVerificationError as exc:
        return Check("tls", False, _certificate_problem(target, exc), fatal=True)
    except ssl.SSLError as exc:
        return Check("tls", False, "TLS handshake with %s failed: %s" % (target.host, exc), fatal=True)
    except OSError as exc:
        return Check("tls", False, "could not connect to %s port %d: %s" % (target.connect_host, target.port, exc),
                     fatal=True)
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


def _certificate_problem(target, exc):
    reason = (exc.verify_message or str(exc)).rstrip(".")
    if exc.verify_code in _UNKNOWN_ISSUER:
        if target.ca_path:
            return ("the certificate for %s is not valid with the CA bundle %s: %s. Set %s (the check module's "
                    "ca_path) to the bundle of the CA that issued it; if that CA is an intermediate, the proxy "
                    "must send the full chain" % (target.host, target.ca_path, reason, CA_PATH_VARIABLE))
        return ("the certificate for %s is not valid: %s. If it is self-signed or comes from a private CA (your own "
                "files, a lab CA or a private ACME server), set %s to that CA's bundle (the check module's "
                "ca_path); if it comes from a public CA, the proxy is not sending the intermediate certificates "
                "(serve the full chain)" % (target.host, reason, CA_PATH_VARIABLE))
    if exc.verify_code == _EXPIRED:
        return "the certificate for %s has expired: renew it (with ACME: find out why renewal did not run)" % (
            target.host)
    if exc.verify_code == _NOT_YET_VALID:
        return ("the certificate for %s is not valid yet: check the clocks of this host and of the host that "
                "issued it" % target.host)
    if exc.verify_code == _HOSTNAME_MISMATCH:
        return ("the certificate the proxy sends does not name %s (%s): issue one whose names include it, or "
                "check that the public URL's host is the one the proxy serves" % (target.host, reason))
    return "the certificate for %s is not valid: %s" % (target.host, reason)


def run_checks(target, max_body_size):
    tls = check_tls(target)
    others = (("well_known", check_well_known), ("ping", check_ping), ("websocket", check_websocket),
              ("body_size", lambda t: check_body_size(t, max_body_size)))
    if tls.fatal:
        # Every other check needs the same handshake; running them would repeat
        # its error four times and bury the one thing to fix.
        skipped = "not run because the tls check failed: this check needs the connection it could not make"
        return [tls] + [Check(name, False, skipped, skipped=True) for name, _check in others]
    # one after the other, each on a connection of its own: they take milliseconds, and a failure in one then
    # never comes from the load of the others
    return [tls] + [check(target) for _name, check in others]


def verdict(checks, url):
    """None when every check (as_dict()) passed, else what a homelab user reads: which failed and why, and where
    the proxy answers but Immich does not, what to do."""
    failed = [c for c in checks if not c["ok"] and not c["skipped"]]
    if not failed:
        return None
    reasons = "; ".join("%s: %s" % (c["name"], c["detail"]) for c in failed)
    summary = "%d of %d checks of %s failed" % (len(failed), len(checks), url)
    skipped = len([c for c in checks if c["skipped"]])
    if skipped:
        summary += " and %d could not run without it" % skipped
    gateway = [c for c in failed if re.search(r"\bHTTP 50[234]\b", c["detail"])]
    if len(gateway) == len(failed) and not any(c["name"] == "tls" for c in failed):
        # the proxy is up and configured; what it sends to does not answer
        summary = ("the proxy answers but cannot reach Immich (HTTP 502/503/504 from the proxy): is Immich "
                   "running at the addresses of immich_proxy_backends, and reachable from this host? Start it "
                   "and run again. " + summary)
    return "%s: %s" % (summary, reasons)


# the options of the check module (and of apply_config's check), as AnsibleModule specs
CHECK_OPTIONS = dict(
    url=dict(type="str", required=True),
    connect_host=dict(type="str"),
    connect_port=dict(type="int"),
    ca_path=dict(type="path"),
    validate_certs=dict(type="bool", default=True),
    max_body_size=dict(type="raw", default=DEFAULTS["max_body_size"]),
    timeout=dict(type="float", default=10),
)


def check_target(params, prefix=""):
    """(Target, the body size to probe in bytes) from the check options, or ValueError that names the option."""
    try:
        parse_url(params["url"])
    except ValueError as exc:
        raise ValueError("%surl '%s' %s" % (prefix, params["url"], exc)) from exc
    try:
        max_body_size = parse_size(params["max_body_size"])
    except ValueError as exc:
        raise ValueError("%smax_body_size '%s' %s" % (prefix, params["max_body_size"], exc)) from exc
    try:
        target = Target(params["url"], params["connect_host"], params["ca_path"], params["validate_certs"],
                        params["timeout"], params["connect_port"])
    except ValueError as exc:
        raise ValueError("%sca_path '%s' %s" % (prefix, params["ca_path"], exc)) from exc
    return target, max_body_size
