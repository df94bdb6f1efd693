# SPDX-License-Identifier: GPL-3.0-or-later
"""Request smuggling and forward-proxy abuse, sent byte by byte from an untrusted client.

Each request is marked; the Immich test double records every request it gets
(with its headers), so the suite sees whether anything reached Immich and in
what form. An ambiguous request must be refused, or, where the proxy's HTTP
parser resolves it the way RFC 9112 allows (Go's net/http in Caddy and Traefik,
Apache for folded lines), reach Immich unambiguous: one framing, one line per
header, and the request hidden in its body never on its own.
"""
from __future__ import annotations

import json
import re
import socket
import ssl
import time
import uuid

import pytest

from harness import backend_json, sh

pytestmark = pytest.mark.needs(listens=True)

REFUSED = "refused"
NORMALISED = "normalised"
REACHED = "reached"
FAILED = "failed"


def exchange(proxy, raw, timeout=10):
    """Send raw bytes on one connection (TLS where the proxy serves it), read until the proxy closes."""
    sock = socket.create_connection((proxy.ip, proxy.port), timeout=timeout)
    # the TLS handshake must succeed: a probe that never got through is not a refusal
    if proxy.scheme == "https":
        sock = proxy.context().wrap_socket(sock, server_hostname=proxy.host)
    data = b""
    try:
        sock.sendall(raw)
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, ssl.SSLError, socket.timeout):
        pass
    finally:
        sock.close()
    match = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return (int(match.group(1)) if match else None), data


def arrivals(host, backend_ports, marker):
    """The requests the doubles recorded that hold the marker, in their path or in a header."""
    time.sleep(0.2)
    return [record for port in backend_ports for record in backend_json(host, port, "/_double/requests")
            if marker in record["path"] or any(marker in value for _name, value in record["headers"])]


def _header(record, name):
    return [value for key, value in record["headers"] if key.lower() == name]


def _smuggled(marker):
    # A complete request for another host: it can only reach Immich if a parser took it for a new request
    # that the proxy never saw as one.
    return "GET /_double/echo?smuggled=%s HTTP/1.1\r\nHost: evil.example\r\n\r\n" % marker


def _post(proxy, marker, headers, body, payload=None):
    """The raw request, and the body the chunks carry where the request is chunked (what Immich must get)."""
    return ("POST /_double/echo?attack=%s HTTP/1.1\r\nHost: %s\r\n%sConnection: close\r\n\r\n%s"
            % (marker, proxy.host_header, "".join(line + "\r\n" for line in headers), body)).encode(), payload


def cl_te(proxy, marker):
    body = "0\r\n\r\n" + _smuggled(marker)
    return _post(proxy, marker, ["Content-Length: %d" % len(body), "Transfer-Encoding: chunked"], body, b"")


def te_cl(proxy, marker):
    smuggled = _smuggled(marker)
    body = "%x\r\n%s\r\n0\r\n\r\n" % (len(smuggled), smuggled)
    return _post(proxy, marker, ["Transfer-Encoding: chunked", "Content-Length: 4"], body, smuggled.encode())


def te_folded(proxy, marker):
    body = "0\r\n\r\n" + _smuggled(marker)
    return _post(proxy, marker, ["Content-Length: %d" % len(body), "Transfer-Encoding:", " chunked"], body, b"")


def te_unknown(proxy, marker):
    body = "0\r\n\r\n" + _smuggled(marker)
    return _post(proxy, marker, ["Content-Length: %d" % len(body), "Transfer-Encoding: xchunked"], body)


def te_space_before_colon(proxy, marker):
    body = "0\r\n\r\n" + _smuggled(marker)
    return _post(proxy, marker, ["Content-Length: %d" % len(body), "Transfer-Encoding : chunked"], body)


def te_chunked_identity(proxy, marker):
    body = "0\r\n\r\n" + _smuggled(marker)
    return _post(proxy, marker, ["Content-Length: %d" % len(body), "Transfer-Encoding: chunked, identity"], body)


def two_content_lengths(proxy, marker):
    smuggled = _smuggled(marker)
    return _post(proxy, marker, ["Content-Length: 0", "Content-Length: %d" % len(smuggled)], smuggled)


def folded_header(proxy, marker):
    return ("GET /_double/echo?attack=%s HTTP/1.1\r\nHost: %s\r\nX-Folded: first\r\n second\r\n"
            "Connection: close\r\n\r\n" % (marker, proxy.host_header)).encode(), None


def connect_other_host(proxy, marker):
    return ("CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\nX-Attack: %s\r\n"
            "Connection: close\r\n\r\n" % marker).encode(), None


def connect_public_host(proxy, marker):
    return ("CONNECT %s:%d HTTP/1.1\r\nHost: %s\r\nX-Attack: %s\r\nConnection: close\r\n\r\n"
            % (proxy.host, proxy.port, proxy.host_header, marker)).encode(), None


def _chunked_wins(record, body, payload):
    """RFC 9112 6.3: Transfer-Encoding overrides Content-Length, which a proxy must not pass on."""
    problems = []
    if _header(record, "content-length") and _header(record, "transfer-encoding"):
        problems.append("both Content-Length and Transfer-Encoding reached Immich")
    if body.get("body_bytes") != len(payload):
        problems.append("Immich read a body of %r bytes, not the %d the chunks carried"
                        % (body.get("body_bytes"), len(payload)))
    return problems


def _one_line(record, body, payload):
    """RFC 9112 5.2: an obs-fold replaced by spaces, the value on one line."""
    values = _header(record, "x-folded")
    if len(values) != 1 or re.fullmatch(r"first +second", values[0]) is None:
        return ["Immich received X-Folded as %r, not one line 'first second'" % values]
    return []


# (name, request builder, what a proxy that does not refuse it must have made of it; None: it must refuse)
ATTACKS = [
    ("CL.TE: Content-Length and Transfer-Encoding", cl_te, _chunked_wins),
    ("TE.CL: Transfer-Encoding and a short Content-Length", te_cl, _chunked_wins),
    ("Transfer-Encoding folded onto a second line", te_folded, _chunked_wins),
    ("unknown Transfer-Encoding beside Content-Length", te_unknown, None),
    ("space before the colon of Transfer-Encoding", te_space_before_colon, None),
    ("Transfer-Encoding chunked, identity", te_chunked_identity, None),
    ("two different Content-Lengths", two_content_lengths, None),
    ("obs-fold in an ordinary header", folded_header, _one_line),
    ("CONNECT to another host", connect_other_host, None),
    ("CONNECT to the public host", connect_public_host, None),
]


@pytest.mark.parametrize("name, build, normalised", ATTACKS, ids=[attack[0] for attack in ATTACKS])
def test_smuggling_and_forward_proxy_requests_never_reach_immich_as_sent(
        proxy, host, backend_ports, traits, figures, name, build, normalised):
    marker = uuid.uuid4().hex
    raw, payload = build(proxy, marker)
    status, response = exchange(proxy, raw)
    reached = arrivals(host, backend_ports, marker)
    smuggled = [record for record in reached if "smuggled=" in record["path"]]
    outcome = REFUSED if not reached else NORMALISED
    problems = []
    if smuggled:
        problems.append("the request hidden in the body reached Immich on its own: %r" % smuggled)
    if reached and (normalised is None or name not in traits["normalises"]):
        # what a proxy's parser may resolve instead of refusing is the kind's trait: anything else is a regression
        outcome = REACHED
        problems.append("it reached Immich instead of being refused (the kind's trait normalises lists %r): %r"
                        % (traits["normalises"], reached))
    elif reached:
        if len(reached) != 1:
            problems.append("Immich received %d requests for it, not one: %r" % (len(reached), reached))
        # the double's echo of what it read, after the proxy's response head
        match = re.search(rb"\r\n\r\n(\{.*\})", response, re.S)
        problems += normalised(reached[0], json.loads(match.group(1)) if match else {}, payload)
    if not reached and not (status is None or 400 <= status < 600):
        problems.append("answered %r without reaching Immich: neither a refusal nor a closed connection"
                        % response[:200])
    figures.attack(name, outcome if outcome == REACHED or not problems else FAILED)
    assert not problems, "%s: %s\n(response: %r)" % (name, "; ".join(problems), response[:300])


def test_the_attack_probe_sees_a_plain_request_reach_immich(proxy, host, backend_ports):
    """The test above can fail: the same probe, well-formed, is recorded by the double with its headers, and a
    CONNECT that reaches the double is recorded by the header it carries."""
    marker = uuid.uuid4().hex
    status, _response = exchange(proxy, _post(proxy, marker, ["Content-Length: 5"], "hello")[0])
    reached = arrivals(host, backend_ports, marker)
    assert status == 200 and len(reached) == 1, (status, reached)
    assert _header(reached[0], "content-length") == ["5"], reached[0]["headers"]
    connect = uuid.uuid4().hex
    sh(host, "curl -s -o /dev/null -X CONNECT -H 'X-Attack: %s' http://127.0.0.1:%d/" % (connect, backend_ports[0]))
    assert [record["method"] for record in arrivals(host, backend_ports, connect)] == ["CONNECT"]
