# SPDX-License-Identifier: GPL-3.0-or-later
"""The routes the Immich apps and CLI call first, through the proxy."""
from __future__ import annotations

import re
import socket

import pytest

from harness import host_probe, mozilla_intermediate_report

pytestmark = pytest.mark.needs(listens=True)


def test_well_known_immich_returns_immichs_discovery_json(proxy):
    status, headers, payload = proxy.json("GET", "/.well-known/immich")
    assert status == 200, "expected 200 for /.well-known/immich, got %d" % status
    assert payload == {"api": {"endpoint": "/api"}}, "expected Immich's discovery JSON, got %r" % payload
    assert headers.get("x-immich-double", "").startswith("double-"), "the answer did not come from Immich"


def test_server_ping_answers_pong(proxy):
    status, _headers, payload = proxy.json("GET", "/api/server/ping")
    assert (status, payload) == (200, {"res": "pong"})


def test_api_key_header_reaches_immich(proxy):
    status, _headers, payload = proxy.json("GET", "/api/users/me", headers={"x-api-key": "secret"})
    assert status == 200, "x-api-key was not passed on: Immich answered %d %r" % (status, payload)
    status, _headers, _body = proxy.json("GET", "/api/users/me")
    assert status == 401, "without x-api-key Immich must answer 401, got %d" % status


def test_deep_api_paths_with_query_strings_reach_immich_unchanged(proxy):
    path = "/_double/echo?size=thumbnail&key=a%2Fb&x=%3D"
    status, _headers, payload = proxy.json("GET", path)
    assert status == 200 and payload["path"] == path, "Immich received %r instead of %r" % (payload["path"], path)


def test_server_version_is_not_disclosed(proxy):
    _status, headers, _body = proxy.request("GET", "/api/server/ping")
    server = headers.get("server", "")
    assert not re.search(r"\d", server), "the Server header discloses a version: %r" % server


def test_plain_http_redirects_to_the_public_https_url(proxy):
    if proxy.scheme != "https":
        pytest.skip("the scenario serves plain HTTP; there is nothing to redirect")
    status, headers, _body = proxy.request("GET", "/photos/abc?x=1", scheme="http")
    assert status in (301, 308), "expected a permanent redirect from HTTP, got %d" % status
    assert headers["location"] == proxy.public_url + "/photos/abc?x=1"


def test_hsts_is_sent_over_https(proxy):
    if proxy.scheme != "https":
        pytest.skip("the scenario serves plain HTTP")
    _status, headers, _body = proxy.request("GET", "/api/server/ping")
    hsts = headers.get("strict-transport-security", "")
    assert re.match(r"max-age=\d{7,}", hsts), "expected HSTS with a long max-age, got %r" % hsts


def test_certificate_is_valid_for_the_public_host_and_tls_is_modern(proxy):
    if proxy.scheme != "https":
        pytest.skip("the scenario serves plain HTTP")
    ctx = proxy.context()
    with socket.create_connection((proxy.ip, proxy.https_port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname=proxy.host) as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3"), tls.version()
        names = [v for k, v in tls.getpeercert().get("subjectAltName", ()) if k in ("DNS", "IP Address")]
        assert proxy.host in names, "certificate names %r, not %s" % (names, proxy.host)


def test_tls_passes_sslyzes_mozilla_intermediate_check(proxy):
    if proxy.scheme != "https":
        pytest.skip("the scenario serves plain HTTP")
    compliant, report = mozilla_intermediate_report(proxy)
    assert compliant, "sslyze --mozilla_config=intermediate failed:\n%s" % report


@pytest.mark.parametrize("host_header", ["evil.example", "{host}.evil.example", "{host}:9999", "127.0.0.1"])
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_request_for_another_host_never_reaches_immich(proxy, host, backend_ports, scheme, host_header, figures):
    if scheme == "https" and proxy.scheme != "https":
        pytest.skip("the scenario serves plain HTTP")
    host_header = host_header.format(host=proxy.host)
    status, head, reached = host_probe(proxy, host, backend_ports, scheme, host_header)
    figures.attack("Host of another name (%s)" % scheme, "reached" if reached else "refused")
    assert not reached, "Host %r reached Immich over %s: %r" % (host_header, scheme, reached)
    assert status in (None, 301, 308, 400, 403, 404, 421), (
        "Host %r over %s: expected a refusal, got %r" % (host_header, scheme, head[:200]))
    if status in (301, 308):
        location = re.search(rb"(?im)^location:\s*(\S+)", head).group(1).decode()
        assert location.startswith(proxy.public_url + "/"), "redirected to %r, not the public URL" % location


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_an_absolute_uri_for_another_host_never_reaches_immich(proxy, host, backend_ports, scheme, figures):
    """No open proxy: ``GET http://evil.example/...`` with the public Host is refused, not passed on."""
    if scheme == "https" and proxy.scheme != "https":
        pytest.skip("the scenario serves plain HTTP")
    status, head, reached = host_probe(proxy, host, backend_ports, scheme, proxy.host_header,
                                       absolute_host="evil.example")
    figures.attack("absolute URI for another host (%s)" % scheme, "reached" if reached else "refused")
    assert not reached, "an absolute URI for evil.example reached Immich over %s: %r" % (scheme, reached)
    assert status in (None, 301, 308, 400, 403, 404, 421), (
        "an absolute URI for evil.example over %s: expected a refusal, got %r" % (scheme, head[:200]))


@pytest.mark.parametrize("written_out", [False, True], ids=["as-in-the-url", "default-port-written-out"])
def test_the_public_host_reaches_immich(proxy, host, backend_ports, written_out):
    """The refusal test above can fail: the same marker request with the right Host is recorded."""
    host_header = proxy.host_header
    if written_out:
        if ":" in host_header.rsplit("]", 1)[-1]:
            pytest.skip("the public URL has a port of its own")
        host_header = "%s:%d" % (host_header, proxy.port)
    status, _head, reached = host_probe(proxy, host, backend_ports, proxy.scheme, host_header)
    assert status == 200 and len(reached) == 1, "Host %r: HTTP %r, reached Immich %r" % (host_header, status, reached)
