# SPDX-License-Identifier: GPL-3.0-or-later
"""The cloudflared config.yml validator against the examples of cloudflared's docs and its own tests.

Sources: Cloudflare's "Configuration file" and "Ingress rules" pages, and
cloudflared's ingress/ingress_test.go (TestParseIngress, TestFindMatchingRule),
read at 2026.8.2. Where cloudflared only warns (unknown keys), the validator refuses.
"""
from __future__ import annotations

import pytest
import yaml

from ansible_collections.homelab.immich_proxy.plugins.module_utils._cloudflared import (
    matching_rule,
    validate_config,
    validate_ingress,
)

DOCS_CONFIG = """
tunnel: 6ff42ae2-765d-4adf-8112-31c55c1551ef
credentials-file: /root/.cloudflared/6ff42ae2-765d-4adf-8112-31c55c1551ef.json
ingress:
  - hostname: gitlab.widgetcorp.tech
    service: http://localhost:80
  - hostname: gitlab-ssh.widgetcorp.tech
    service: ssh://localhost:22
  - service: http_status:404
"""

DOCS_RULES = """
- hostname: example.com
  service: https://localhost:8000
- hostname: static.example.com
  path: \\.(jpg|png|css|js)$
  service: https://localhost:8001
- hostname: "*.example.com"
  service: https://localhost:8002
- service: https://localhost:8003
"""

IMMICH = """
tunnel: 6ff42ae2-765d-4adf-8112-31c55c1551ef
credentials-file: /etc/cloudflared/credentials.json
originRequest:
  connectTimeout: 30s
ingress:
  - hostname: photos.example.org
    service: http://192.168.1.21:2283
    originRequest:
      keepAliveTimeout: 1m30s
      noTLSVerify: false
      httpHostHeader: photos.example.org
  - service: http_status:404
"""


def rules(text):
    return yaml.safe_load(text)


def catch_all(*before):
    return list(before) + [{"service": "http_status:404"}]


@pytest.mark.parametrize("text", [DOCS_CONFIG, IMMICH], ids=["docs-example", "immich"])
def test_the_documented_config_and_ours_are_sound(text):
    assert validate_config(yaml.safe_load(text)) == []


def test_the_documented_rules_with_a_path_and_a_wildcard_are_sound():
    assert validate_ingress(rules(DOCS_RULES)) == []


@pytest.mark.parametrize("service", [
    "http://localhost:8000", "https://localhost:8000", "unix:/home/production/echo.sock",
    "unix+tls:/home/production/echo.sock", "tcp://localhost:2222", "ssh://localhost:22", "rdp://localhost:3389",
    "smb://localhost:445", "http_status:404", "hello_world", "wss://localhost:8000", "ftp://127.0.0.1",
    "http://[fd00::5]:2283", "https://immich_server:2283",
])
def test_every_service_form_of_the_docs_is_accepted(service):
    assert validate_ingress(catch_all({"hostname": "a.example.com", "service": service})) == []


@pytest.mark.parametrize("service, words", [
    ("localhost:8000", "needs a scheme and a host"),   # in the docs' own "Origin configuration" example
    ("https://local host:8000", "space"),
    ("https://localhost:8000/static/", "has a path"),
    ("https://localhost:8000/", "has a path"),
    ("http_status:asdf", "invalid HTTP status code"),
    ("http_status:8080", "invalid HTTP status code"),
    ("http://localhost:99999", "invalid port"),
    ("", "is missing"),
])
def test_a_service_cloudflared_refuses_is_refused(service, words):
    problems = validate_ingress(catch_all({"hostname": "a.example.com", "service": service}))
    assert len(problems) == 1 and problems[0].startswith("ingress[0].service") and words in problems[0], problems


@pytest.mark.parametrize("hostname, words", [
    ("test.example.com:443", "cannot contain a port"),
    ("test.*.example.com", "one '*' only"),
    ("**.com", "one '*' only"),
    ("*example.com", "not a whole label"),
    ("photos example.org", "not a DNS name"),
])
def test_a_bad_hostname_is_refused(hostname, words):
    problems = validate_ingress(catch_all({"hostname": hostname, "service": "http://localhost:2283"}))
    assert len(problems) == 1 and problems[0].startswith("ingress[0].hostname") and words in problems[0], problems


def test_the_last_rule_must_match_everything_and_only_the_last():
    assert "last rule" in " ".join(validate_ingress([{"hostname": "example.com", "service": "http://localhost:80"}]))
    with_path = catch_all()[:0] + [{"path": "/subpath1/(.*)/subpath2", "service": "http_status:404"}]
    assert "last rule" in " ".join(validate_ingress(with_path))
    early = [{"service": "http://localhost:80"}, {"hostname": "example.com", "service": "http://localhost:81"},
             {"service": "http_status:404"}]
    assert validate_ingress(early) == [
        "ingress[0] matches every request, so the rules after it would never be used"]
    assert validate_ingress([{"hostname": "*", "service": "http_status:404"}]) == []


@pytest.mark.parametrize("path, words", [
    ("*/subpath2", "not a valid regular expression"),
    ("^/(?!admin)", "lookahead"),
    (r"(a)\1", "backreference"),
    (r"\Z", "read differently"),
    ("a{1001}", "more than 1000"),
])
def test_a_path_that_is_not_a_shared_re2_and_python_regex_is_refused(path, words):
    problems = validate_ingress(catch_all({"hostname": "a.example.com", "path": path, "service": "http://x:1"}))
    assert len(problems) == 1 and problems[0].startswith("ingress[0].path") and words in problems[0], problems


def test_unknown_and_mistyped_keys_are_refused_where_cloudflared_only_warns():
    config = yaml.safe_load(IMMICH)
    config["extraKey"] = "extraValue"                               # cloudflared: silently ignored
    config["ingress"][0]["originRequest"]["noTlsVerify"] = True     # cloudflared: a warning, exit 0
    config["ingress"][0]["hostnme"] = "photos.example.org"
    config["originRequest"]["connectTimeout"] = 30                  # cloudflared: a type error
    problems = validate_config(config)
    assert any(p.startswith("extraKey is not a key") for p in problems), problems
    assert any(p.startswith("ingress[0].originRequest.noTlsVerify is not a key") for p in problems), problems
    assert any(p.startswith("ingress[0].hostnme is not a key") for p in problems), problems
    assert any(p.startswith("originRequest.connectTimeout 30 must be a Go duration") for p in problems), problems
    assert len(problems) == 4, problems


def test_bastion_mode_needs_no_service_and_socks_ip_rules_are_checked():
    assert validate_ingress([{"originRequest": {"bastionMode": True}}]) == []
    assert validate_ingress([{"service": "x"}], origin_request={"bastionMode": True}) == []
    bad = [{"hostname": "s.example.com", "service": "socks-proxy",
            "originRequest": {"ipRules": [{"prefix": "1.1.1.0/24", "ports": [80, 443], "allow": True},
                                          {"prefix": "not-a-cidr", "ports": [0], "allow": False}]}},
           {"service": "http_status:404"}]
    problems = validate_ingress(bad)
    assert any("ipRules[1].ports" in p for p in problems) and any("ipRules[1].prefix" in p for p in problems)


def test_access_needs_a_team_name_with_aud_tags():
    rule = {"hostname": "a.example.com", "service": "http://x:1",
            "originRequest": {"access": {"required": True, "audTag": ["abc"]}}}
    assert any("teamName cannot be blank" in p for p in validate_ingress(catch_all(rule)))


@pytest.mark.parametrize("url, index", [
    ("https://example.com/", 0),
    ("https://static.example.com/data.js", 1),          # the docs' examples for the path rule
    ("http://static.example.com/images/photo.jpg", 1),
    ("https://static.example.com/index.html", 2),       # *.example.com
    ("https://a.b.example.com/", 2),                    # the suffix match takes deeper names too
    ("https://example.org/", 3),
])
def test_the_first_matching_rule_wins_as_in_the_docs(url, index):
    assert matching_rule(rules(DOCS_RULES), url) == index


def test_cloudflareds_own_matching_cases():
    table = [{"hostname": "tunnel-a.example.com", "service": "https://localhost:8000"},
             {"hostname": "tunnel-b.example.com", "path": "/health", "service": "https://localhost:8001"},
             {"hostname": "*", "service": "https://localhost:8002"}]
    assert validate_ingress(table) == []
    assert matching_rule(table, "tunnel-a.example.com:443/pages/about") == 0
    assert matching_rule(table, "https://tunnel-b.example.com/health") == 1
    assert matching_rule(table, "https://tunnel-b.example.com/index.html") == 2
    assert matching_rule(table, "https://tunnel-c.example.com/") == 2


def test_a_value_of_the_wrong_type_is_reported_once_with_its_place():
    problems = validate_ingress(catch_all({"hostname": ["a.example.com"], "service": 8080}))
    assert problems == ["ingress[0].hostname ['a.example.com'] must be a string",
                        "ingress[0].service 8080 must be a string"], problems


def test_a_remotely_managed_tunnels_config_holds_no_ingress():
    local_settings = {"no-autoupdate": True, "metrics": "127.0.0.1:20241", "token-file": "/etc/cloudflared/token"}
    assert validate_config(local_settings, remote=True) == []
    problems = validate_config(dict(local_settings, ingress=[{"service": "http_status:404"}]), remote=True)
    assert problems and "dashboard" in problems[0]
