# SPDX-License-Identifier: GPL-3.0-or-later
"""Accepted means it works: settings drawn at random (hypothesis), through the settings module, then the role.

Every drawn set the settings module rejects must name each variable it rejects;
every set it accepts must deploy through the real role on this host: rendered,
checked by the real proxy's own test (nginx -t, apachectl -t, caddy validate,
a throwaway Traefik with no router error, cloudflared's ingress validation and
the collection's own validator, here the test-only cloudflared stand-in's) and loaded. The number of examples
is bounded (each accepted one is a role run); the last run restores the
scenario. The draws mix ordinary values with the characters that end a
directive, a block or a line in nginx, Apache, Caddyfile and YAML.
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
import sys

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from harness import KINDS, ROOT, ansible_bin, ansible_env, assert_serving, run

sys.path.insert(0, os.path.join(ROOT, ".cache", "collections"))
from ansible_collections.homelab.immich_proxy.plugins.module_utils._proxies import PROXIES  # noqa: E402
from ansible_collections.homelab.immich_proxy.plugins.module_utils._settings import (  # noqa: E402
    SettingsError,
    normalise,
)

pytestmark = [pytest.mark.faults, pytest.mark.disruptive]

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


def role_value(spec):
    """A strategy for an ordinary value of one of a role's own variables, from the adapter's spec."""
    kind = spec["type"]
    if kind == "bool":
        return st.booleans()
    if kind in ("int", "size"):
        plain = st.integers(spec.get("min", 0), spec.get("max", 10 ** 6))
        if kind == "size":
            plain = st.one_of(plain, st.builds(lambda n: "%dk" % n, st.integers(
                max(1, spec.get("min", 0) // 1024), max(1, spec.get("max", 10 ** 6) // 1024))))
        return plain
    if kind == "str" and "choices" in spec:
        return st.sampled_from(spec["choices"])
    # extra directive lines are free text by design, so what they say is for the proxy's own check to accept or
    # refuse (test_role.py: a rejected config is rolled back), not for the settings module: not drawn
    return None


# Role variables not drawn: how the proxy is installed (a release, a binary from the controller, its version), the
# files it names on the controller, and what this test bed cannot give (IPv6 inside the containers; a free port for
# Traefik's API or cloudflared's metrics endpoint is the port check's to find, not this property's).
NOT_DRAWN = re.compile(r"_(install|binary_src|version|release_base_url|compose_labels_path|ipv6|api_port|"
                       r"metrics_port)$")


@st.composite
def drawn_settings(draw, kind):
    # a kind that does not listen (a tunnel) is reached through an edge that terminates TLS (Cloudflare's): its
    # public URL is https on 443, it has no TLS of its own, one origin, and a plan that limits uploads
    tunnel = not KINDS[kind]["listens"]
    port_pair = draw(st.sampled_from([(80, 443), (20080, 20443)]))
    public_port = "" if tunnel else draw(st.sampled_from(["", ":%d" % port_pair[1], ":8443"]))
    tls = "off" if tunnel else draw(st.sampled_from(["selfsigned", "off"]))
    raw = {
        "immich_proxy_public_url": "%s://%s%s" % ("https" if tls != "off" or tunnel else "http", draw(hosts),
                                                  public_port if tls != "off" else ""),
        "immich_proxy_backends": draw(st.lists(st.sampled_from(draw(backends)), min_size=1, max_size=1)
                                      if tunnel else backends),
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
    if tunnel:
        raw["immich_proxy_cloudflare_plan"] = draw(st.sampled_from(["free", "pro", "business", "enterprise"]))
    # the role's own variables, each now and then
    for name, spec in sorted(PROXIES[kind].variables.items()):
        strategy = None if NOT_DRAWN.search(name) else role_value(spec)
        if strategy is not None and draw(st.booleans()):
            raw[name] = draw(strategy)
    # now and then one variable gets a hostile text instead: it must be refused with its name, or, if it is
    # accepted, work like any other value
    if draw(st.integers(0, 3)) == 0:
        name = draw(st.sampled_from(sorted(raw)))
        value = draw(hostile_text)
        raw[name] = [value] if isinstance(raw[name], list) else value
    return raw


def _role_values(kind, inventory, container):
    """The role's own variables as a run sees them: the role's defaults, then the scenario's inventory."""
    with open(os.path.join(ROOT, "roles", kind, "defaults", "main.yml")) as handle:
        values = yaml.safe_load(handle) or {}
    host_vars = json.loads(run([ansible_bin("ansible-inventory"), "-i", inventory, "--host", container],
                               env=ansible_env()).stdout)
    values.update(host_vars)
    return {name: value for name, value in values.items() if name in PROXIES[kind].variables}


def test_every_accepted_settings_set_deploys_through_the_real_proxy_and_every_refusal_names_its_variable(
        proxy, host, kind, traits, converge, figures):
    adapter = PROXIES[kind]
    scenario_values = _role_values(kind, converge.inventory, converge.container)
    tried = {"accepted": 0, "rejected": 0}

    @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(drawn_settings(kind))
    def accepted_means_it_works(raw):
        figures.add("property_cases")
        contract = {name[len("immich_proxy_"):]: value for name, value in raw.items()
                    if name.startswith("immich_proxy_")}
        role_values = dict(scenario_values, **{name: value for name, value in raw.items()
                                               if not name.startswith("immich_proxy_")})
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
