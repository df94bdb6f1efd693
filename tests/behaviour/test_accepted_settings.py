# SPDX-License-Identifier: GPL-3.0-or-later
"""Accepted means it works: settings drawn at random (hypothesis), through the settings module, then the role.

Every drawn set the settings module rejects must name each variable it rejects;
every set it accepts must deploy through the real role on this host: rendered,
checked by the real proxy's own test (nginx -t, apachectl -t, caddy validate,
a throwaway Traefik with no router error) and loaded. The number of examples
is bounded (each accepted one is a role run); the last run restores the
scenario. The draws mix ordinary values with the characters that end a
directive, a block or a line in nginx, Apache, Caddyfile and YAML.
"""
from __future__ import annotations

import ipaddress
import os
import re
import sys

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from harness import ROOT, assert_serving

sys.path.insert(0, os.path.join(ROOT, ".cache", "collections"))
from ansible_collections.homelab.immich_proxy.plugins.module_utils._proxies import PROXIES  # noqa: E402
from ansible_collections.homelab.immich_proxy.plugins.module_utils._settings import (  # noqa: E402
    SettingsError,
    normalise,
)

pytestmark = [pytest.mark.needs(listens=True), pytest.mark.faults, pytest.mark.disruptive]

EXAMPLES = int(os.environ.get("IMMICH_PROXY_PROPERTY_EXAMPLES", "6"))
# What ends a directive, a block, a string or a line in one of the config languages the contract feeds.
HOSTILE = ";{}\"'`$#\\\n\r\t <>|&%*@!()[],=:/\x00\x0b\x0c\u0085\u2028"

labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,14}[a-z0-9])?", fullmatch=True)
hosts = st.builds(lambda parts, tld: ".".join(parts + [tld]), st.lists(labels, min_size=1, max_size=3),
                  st.sampled_from(["immich.test", "example.org", "xn--bcher-kva.example", "lan"]))
hostile_text = st.text(alphabet=st.sampled_from(list(HOSTILE) + list("abcxyz019.-_")), min_size=1, max_size=24)


def _v4_network(draw_int, prefix):
    return str(ipaddress.ip_network((draw_int, prefix), strict=False))


v4_networks = st.builds(_v4_network, st.integers(0, 2 ** 32 - 1), st.integers(8, 32))
v6_addresses = st.builds(lambda n: "%s/128" % ipaddress.IPv6Address(n), st.integers(1, 2 ** 128 - 1))
backend_ips = st.one_of(st.just("127.0.0.1"), st.builds(lambda n: str(ipaddress.IPv4Address(n)),
                                                        st.integers(0x0A000001, 0x0AFFFFFE)),
                        st.just("[::1]"))
backends = st.lists(st.builds(lambda ip, port: "http://%s:%d" % (ip, port), backend_ips, st.integers(1024, 65535)),
                    min_size=1, max_size=3, unique=True)
sizes = st.one_of(st.integers(0, 10 ** 12), st.builds(lambda n, unit: "%d%s" % (n, unit), st.integers(1, 99999),
                                                      st.sampled_from(["", "k", "K", "m", "M", "g", "G"])))


@st.composite
def drawn_settings(draw):
    port_pair = draw(st.sampled_from([(80, 443), (20080, 20443)]))
    public_port = draw(st.sampled_from(["", ":%d" % port_pair[1], ":8443"]))
    tls = draw(st.sampled_from(["selfsigned", "off"]))
    raw = {
        "immich_proxy_public_url": "%s://%s%s" % ("https" if tls != "off" else "http", draw(hosts),
                                                  public_port if tls != "off" else ""),
        "immich_proxy_backends": draw(backends),
        "immich_proxy_max_body_size": draw(sizes),
        "immich_proxy_timeout": draw(st.integers(1, 7 * 86400)),
        "immich_proxy_tls": tls,
        "immich_proxy_hsts": draw(st.booleans()),
        "immich_proxy_hsts_max_age": draw(st.integers(0, 2 * 63072000)),
        "immich_proxy_trusted_proxies": draw(st.lists(st.one_of(v4_networks, v6_addresses), max_size=3,
                                                      unique=True)),
        "immich_proxy_http_port": port_pair[0],
        "immich_proxy_https_port": port_pair[1],
    }
    # now and then one variable gets a hostile text instead: it must be refused with its name, or, if it is
    # accepted, work like any other value
    if draw(st.integers(0, 3)) == 0:
        name = draw(st.sampled_from(sorted(raw)))
        value = draw(hostile_text)
        raw[name] = [value] if isinstance(raw[name], list) else value
    return raw


def _role_defaults(kind):
    with open(os.path.join(ROOT, "roles", kind, "defaults", "main.yml")) as handle:
        return yaml.safe_load(handle) or {}


def test_every_accepted_settings_set_deploys_through_the_real_proxy_and_every_refusal_names_its_variable(
        proxy, host, kind, traits, converge, figures):
    adapter = PROXIES[kind]
    role_values = {name: value for name, value in _role_defaults(kind).items() if name in adapter.variables}
    # the scenario's own role variables stay as its inventory has them (a binary's path, say)
    tried = {"accepted": 0, "rejected": 0}

    @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(drawn_settings())
    def accepted_means_it_works(raw):
        figures.add("property_cases")
        contract = {name[len("immich_proxy_"):]: value for name, value in raw.items()}
        try:
            normalised, _warnings = normalise(contract, role_spec=adapter.variables, role_values=role_values)
            problems = adapter.settings_problems(normalised)
        except SettingsError as exc:
            problems = exc.problems
        if problems:
            tried["rejected"] += 1
            for problem in problems:
                assert re.match(r"(immich_proxy|%s)_[a-z_0-9]+\b" % kind, problem), (
                    "a refusal that names no variable: %r for %r" % (problem, raw))
            return
        tried["accepted"] += 1
        result = converge(dict(raw, immich_proxy_check=False), check=False)
        assert result.returncode == 0, "the settings module accepted %r, but the role failed on %s:\n%s" % (
            raw, kind, result.output[-4000:])
        figures.add("property_deployed")

    try:
        accepted_means_it_works()
    finally:
        converge()
    assert_serving(proxy, host, traits)
    assert tried["accepted"], "no drawn set was accepted: the property was never put to the proxy (%r)" % tried
