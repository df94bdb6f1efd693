# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import pytest

from ansible_collections.homelab.immich_proxy.plugins.module_utils._settings import (
    SettingsError,
    format_size,
    normalise,
    parse_size,
)

GOOD = {"public_url": "https://photos.example.org"}


def problems_for(**raw):
    with pytest.raises(SettingsError) as caught:
        normalise(dict(GOOD, **raw))
    return caught.value.problems


@pytest.mark.parametrize("url, host, authority", [
    ("https://photos.example.org", "photos.example.org", "photos.example.org"),
    ("https://Photos.Example.org/", "photos.example.org", "photos.example.org"),
    ("http://immich.lan:8080", "immich.lan", "immich.lan:8080"),
    ("https://photos.example.org:443", "photos.example.org", "photos.example.org"),
    ("http://192.168.1.10", "192.168.1.10", "192.168.1.10"),
    ("http://[fd00::1]:8080", "fd00::1", "[fd00::1]:8080"),
])
def test_public_url_at_the_root_of_a_host_is_accepted(url, host, authority):
    settings, _warnings = normalise(dict(GOOD, public_url=url, tls="off"))
    assert settings["server_name"] == host
    assert settings["public_authority"] == authority


@pytest.mark.parametrize("url, words", [
    ("https://example.org/immich", ["immich_proxy_public_url 'https://example.org/immich'", "sub-path"]),
    ("https://example.org/immich/", ["sub-path"]),
    ("photos.example.org", ["no scheme", "https://photos.example.org"]),
    ("ftp://photos.example.org", ["only http:// and https://"]),
    ("https://user:pw@photos.example.org", ["user info"]),
    ("https://photos.example.org/?a=1", ["query"]),
    ("https://photos.example.org/#top", ["not allowed"]),
    ("https://photos.example.org:99999", ["invalid port"]),
    ("https://photos.example.org;return 200", ["not allowed"]),
    ("https://photos.example.org\n}", ["not allowed"]),
    ("https://pho tos.example.org", ["not allowed"]),
    ("https://photos_example.org", ["invalid host name"]),
    ("", ["is empty"]),
])
def test_bad_public_url_is_rejected_with_variable_name_and_reason(url, words):
    message = " ".join(problems_for(public_url=url))
    assert "immich_proxy_public_url" in message
    for word in words:
        assert word in message


def test_missing_public_url_is_reported():
    with pytest.raises(SettingsError) as caught:
        normalise({})
    assert "immich_proxy_public_url" in caught.value.problems[0]


def test_every_problem_is_reported_at_once():
    problems = problems_for(public_url="https://x.org/immich", backends=["http://a:2283/x"], timeout="soon",
                            max_body_size="lots", trusted_proxies=["10.0.0.0/33"], tls="letsencrypt")
    names = sorted(p.split(" ", 1)[0] for p in problems)
    assert names == sorted(["immich_proxy_public_url", "immich_proxy_backends", "immich_proxy_timeout",
                            "immich_proxy_max_body_size", "immich_proxy_trusted_proxies", "immich_proxy_tls"])


@pytest.mark.parametrize("value, size", [
    ("50000M", 50000 * 1024 ** 2), ("0", 0), (0, 0), ("1g", 1024 ** 3), ("512k", 512 * 1024),
    (1048576, 1048576), ("100MB", 100 * 1024 ** 2),
])
def test_body_sizes_are_read_as_nginx_reads_them(value, size):
    assert parse_size(value) == size


@pytest.mark.parametrize("value", ["lots", "-1", "1.5G", "10 M;", True, "1P"])
def test_bad_body_size_is_rejected(value):
    assert any("immich_proxy_max_body_size" in p for p in problems_for(max_body_size=value))


def test_default_body_size_is_immichs_50000m():
    settings, _warnings = normalise(GOOD)
    assert settings["max_body_size_bytes"] == 50000 * 1024 ** 2
    assert format_size(settings["max_body_size_bytes"]) == "50000M"


def test_timeout_below_600_warns_with_immichs_recommendation():
    settings, warnings = normalise(dict(GOOD, timeout=60))
    assert settings["timeout"] == 60
    assert any("immich_proxy_timeout" in w and "600" in w for w in warnings)


def test_default_timeout_gives_no_warning():
    _settings, warnings = normalise(dict(GOOD, tls="selfsigned"))
    assert warnings == []


@pytest.mark.parametrize("backends, words", [
    ([], ["non-empty list"]),
    (["http://10.0.0.5:2283/api"], ["has the path '/api'"]),
    (["10.0.0.5:2283"], ["no scheme"]),
    (["http://a:2283", "http://a:2283"], ["listed twice"]),
    (["http://a:2283", "https://b:2283"], ["mixes http:// and https://"]),
])
def test_bad_backends_are_rejected(backends, words):
    message = " ".join(problems_for(backends=backends))
    assert "immich_proxy_backends" in message
    for word in words:
        assert word in message


def test_two_backends_form_a_pool():
    settings, _warnings = normalise(dict(GOOD, backends=["http://10.0.0.21:2283", "http://10.0.0.22"]))
    assert settings["load_balanced"] is True
    assert [b["address"] for b in settings["backends"]] == ["10.0.0.21:2283", "10.0.0.22:80"]


def test_default_backend_is_immich_on_localhost_2283():
    settings, _warnings = normalise(GOOD)
    assert settings["backends"][0]["address"] == "127.0.0.1:2283"
    assert settings["load_balanced"] is False


@pytest.mark.parametrize("cidrs, expected", [
    (["10.0.0.0/8", "192.168.1.7"], ["10.0.0.0/8", "192.168.1.7/32"]),
    (["10.1.2.3/8"], ["10.0.0.0/8"]),
    (["2001:db8::/32"], ["2001:db8::/32"]),
])
def test_trusted_proxies_are_normalised_to_cidrs(cidrs, expected):
    settings, _warnings = normalise(dict(GOOD, trusted_proxies=cidrs))
    assert settings["trusted_proxies"] == expected


@pytest.mark.parametrize("cidr", ["10.0.0.0/33", "everyone", "10.0.0.0/8;", "10.0.0.0/8 1;\n", "10.0.0.0/x"])
def test_bad_trusted_proxy_is_rejected(cidr):
    assert any("immich_proxy_trusted_proxies" in p for p in problems_for(trusted_proxies=[cidr]))


def test_tls_needs_an_https_public_url():
    message = " ".join(problems_for(public_url="http://photos.example.org", tls="selfsigned"))
    assert "starts with http://" in message


def test_provided_tls_needs_both_files():
    problems = problems_for(tls="provided", tls_cert="/etc/ssl/a.pem")
    assert problems == ["immich_proxy_tls_key is required when immich_proxy_tls is 'provided' "
                        "(the path of the certificate files on the host)"]


@pytest.mark.parametrize("path", ["relative.pem", "/etc/ssl/a b.pem", "/etc/ssl/a.pem;", "/etc/../shadow"])
def test_certificate_paths_are_checked(path):
    problems = problems_for(tls="provided", tls_cert=path, tls_key="/etc/ssl/k.pem")
    assert any("immich_proxy_tls_cert" in p for p in problems)


def test_acme_needs_an_email_and_a_dns_name():
    problems = problems_for(public_url="https://192.0.2.7", tls="acme")
    assert any("immich_proxy_acme_email is required" in p for p in problems)
    assert any("need a DNS name" in p for p in problems)


def test_acme_on_another_http_port_warns_that_http01_uses_port_80():
    _settings, warnings = normalise(dict(GOOD, tls="acme", acme_email="a@example.org", http_port=8080))
    assert any("port 80" in w for w in warnings)


def test_same_http_and_https_port_is_rejected():
    assert any("immich_proxy_https_port" in p for p in problems_for(http_port=8080, https_port=8080))


def test_https_without_local_tls_warns_that_tls_must_end_in_front():
    _settings, warnings = normalise(GOOD)
    assert any("terminate TLS" in w for w in warnings)


def test_hsts_is_off_without_tls():
    settings, _warnings = normalise(dict(GOOD, public_url="http://immich.lan"))
    assert settings["hsts"] is False


def test_cloudflare_free_plan_warns_about_the_100_mb_limit():
    _settings, warnings = normalise(dict(GOOD, tls="off"), cloudflare_plan="free")
    assert any("100M" in w and "free" in w for w in warnings)
    _settings, warnings = normalise(dict(GOOD, max_body_size="100M"), cloudflare_plan="free")
    assert not any("Cloudflare" in w for w in warnings)


def test_values_that_reach_config_files_carry_no_syntax():
    raw = dict(GOOD, tls="acme", acme_email="a@example.org", backends=["http://10.0.0.1:2283"],
               trusted_proxies=["10.0.0.0/8"])
    settings, _warnings = normalise(raw)

    def flatten(value):
        if isinstance(value, dict):
            return " ".join(flatten(v) for v in value.values())
        if isinstance(value, list):
            return " ".join(flatten(v) for v in value)
        return str(value)

    rendered = flatten(settings)
    for character in ";{}\"'\n":
        assert character not in rendered


@pytest.mark.parametrize("raw, cert, key", [
    ({"tls": "selfsigned"}, "/etc/immich-proxy/tls/photos.example.org/fullchain.pem",
     "/etc/immich-proxy/tls/photos.example.org/privkey.pem"),
    ({"tls": "acme", "acme_email": "a@example.org"}, "/etc/immich-proxy/tls/photos.example.org/fullchain.pem",
     "/etc/immich-proxy/tls/photos.example.org/privkey.pem"),
    ({"tls": "provided", "tls_cert": "/etc/ssl/c.pem", "tls_key": "/etc/ssl/k.pem"},
     "/etc/ssl/c.pem", "/etc/ssl/k.pem"),
    ({"tls": "off"}, None, None),
])
def test_every_role_serves_the_certificate_from_the_same_place(raw, cert, key):
    settings, _warnings = normalise(dict(GOOD, **raw))
    assert (settings["tls_cert_path"], settings["tls_key_path"]) == (cert, key)
