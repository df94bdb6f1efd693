# SPDX-License-Identifier: GPL-3.0-or-later
"""The headers Immich asks for, as Immich receives them through the proxy."""
from __future__ import annotations

import json
import shlex

import pytest

from harness import sh

pytestmark = pytest.mark.needs(listens=True)


def received(payload, name):
    values = [v for k, v in payload["headers"] if k.lower() == name.lower()]
    return values[0] if len(values) == 1 else values or None


def test_immich_receives_host_real_ip_forwarded_for_and_proto(proxy, client_address):
    status, _headers, seen = proxy.json("GET", "/_double/echo")
    assert status == 200
    expected = {
        "Host": proxy.host if proxy.port in (80, 443) else "%s:%d" % (proxy.host, proxy.port),
        "X-Real-IP": client_address,
        "X-Forwarded-For": client_address,
        "X-Forwarded-Proto": proxy.scheme,
    }
    got = {name: received(seen, name) for name in expected}
    assert got == expected, "Immich received %r, expected %r" % (got, expected)


def test_forged_forwarding_headers_from_a_client_are_replaced(proxy, client_address, figures):
    forged = {"X-Real-IP": "6.6.6.6", "X-Forwarded-For": "6.6.6.6, 10.1.2.3",
              "X-Forwarded-Proto": "http" if proxy.scheme == "https" else "https"}
    figures.add("forged", len(forged))
    _status, _headers, seen = proxy.json("GET", "/_double/echo", headers=forged)
    got = {name: received(seen, name) for name in forged}
    expected = {"X-Real-IP": client_address, "X-Forwarded-For": client_address, "X-Forwarded-Proto": proxy.scheme}
    assert got == expected, "a client forged its address or scheme: Immich received %r" % got


def test_ordinary_requests_are_not_marked_as_upgrades(proxy):
    _status, _headers, seen = proxy.json("GET", "/_double/echo")
    assert received(seen, "Upgrade") is None, "Upgrade sent to Immich on a plain request"
    # Connection's tokens are case-insensitive (RFC 9110): nginx sends none, Apache "Keep-Alive".
    assert (received(seen, "Connection") or "").lower() in ("", "keep-alive"), (
        "Connection %r sent to Immich: plain requests should keep the upstream connection alive"
        % received(seen, "Connection"))


def _from_trusted_proxy(host, proxy, source, headers):
    """A request sent from the trusted proxy's address, inside the container."""
    args = ["curl", "-sS", "--fail", "--interface", source, "-k",
            "--resolve", "%s:%d:%s" % (proxy.host, proxy.port, source)]
    for key, value in headers.items():
        args += ["-H", "%s: %s" % (key, value)]
    args.append("%s://%s:%d/_double/echo" % (proxy.scheme, proxy.host, proxy.port))
    return json.loads(sh(host, shlex.join(args)).stdout)


@pytest.mark.parametrize("chain, client", [
    ("203.0.113.7", "203.0.113.7"),
    ("6.6.6.6, 203.0.113.7", "203.0.113.7"),
    ("203.0.113.7, {trusted}", "203.0.113.7"),
])
def test_a_trusted_proxys_chain_is_believed_up_to_the_real_client(host, proxy, trusted_source, chain, client):
    chain = chain.format(trusted=trusted_source)
    seen = _from_trusted_proxy(host, proxy, trusted_source, {"X-Forwarded-For": chain, "X-Forwarded-Proto": "https"})
    assert received(seen, "X-Real-IP") == client
    forwarded_for = received(seen, "X-Forwarded-For")
    assert forwarded_for.split(",")[-1].strip() == client, (
        "X-Forwarded-For %r does not end in the real client %s" % (forwarded_for, client))
    assert forwarded_for == chain.split(", " + trusted_source)[0]
    assert received(seen, "X-Forwarded-Proto") == "https"
