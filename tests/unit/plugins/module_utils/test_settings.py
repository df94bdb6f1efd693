# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import pytest
import yaml

from ansible_collections.homelab.immich_proxy.plugins.module_utils._proxies import PROXIES
from ansible_collections.homelab.immich_proxy.plugins.module_utils._settings import (
    CONTRACT,
    DEFAULTS,
    PARSERS,
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
    # cloudflare_plan used to be a keyword of normalise() (a module-only option); it is
    # now the contract variable immich_proxy_cloudflare_plan, given like every other one.
    _settings, warnings = normalise(dict(GOOD, tls="off", cloudflare_plan="free"))
    assert any("100M" in w and "free" in w for w in warnings)
    _settings, warnings = normalise(dict(GOOD, max_body_size="100M", cloudflare_plan="free"))
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


# -- The contract table ---------------------------------------------------------

ROLE_SPEC_TYPES = {"str", "int", "bool", "list", "path", "raw"}


def test_the_contract_is_plain_data_that_survives_yaml():
    assert yaml.safe_load(yaml.safe_dump(CONTRACT)) == CONTRACT


def test_every_contract_entry_has_a_type_and_sentences_that_say_why():
    for name, spec in CONTRACT.items():
        assert spec["type"] in ROLE_SPEC_TYPES, name
        assert ("elements" in spec) == (spec["type"] == "list"), name
        assert isinstance(spec["description"], list) and spec["description"], name
        for sentence in spec["description"]:
            assert sentence.endswith("."), "%s: %r is not a sentence" % (name, sentence)
        assert not set(spec) - {"type", "elements", "choices", "default", "required", "no_log", "description"}, name


def test_only_the_public_url_is_required_and_it_has_no_default():
    assert [name for name, spec in CONTRACT.items() if spec.get("required")] == ["public_url"]
    assert "default" not in CONTRACT["public_url"]


def test_a_default_is_one_of_its_choices():
    # A role's argument validation checks the default against the choices too,
    # null included, so a null default must be a listed choice.
    for name, spec in CONTRACT.items():
        if "choices" in spec:
            assert spec.get("default") in spec["choices"], name


def test_defaults_are_derived_from_the_contract_and_keep_todays_values():
    derived = {name: spec.get("default") for name, spec in CONTRACT.items() if name != "public_url"}
    assert derived == DEFAULTS
    assert DEFAULTS["backends"] == ["http://127.0.0.1:2283"]
    assert (DEFAULTS["max_body_size"], DEFAULTS["timeout"], DEFAULTS["tls"]) == ("50000M", 600, "off")
    assert DEFAULTS["acme_directory"] == "https://acme-v02.api.letsencrypt.org/directory"
    assert (DEFAULTS["hsts"], DEFAULTS["hsts_max_age"], DEFAULTS["trusted_proxies"]) == (True, 63072000, [])
    assert (DEFAULTS["http_port"], DEFAULTS["https_port"]) == (80, 443)
    assert (DEFAULTS["trusted_proxies_allow_any"], DEFAULTS["check"]) == (False, True)
    for name in ("backend_ca_file", "tls_cert", "tls_key", "acme_email", "acme_ca_file", "cloudflare_plan",
                 "check_ca_path"):
        assert DEFAULTS[name] is None, name


def test_every_variable_has_its_own_parser():
    assert list(PARSERS) == list(CONTRACT)


def test_every_default_passes_its_own_parser():
    for name, default in DEFAULTS.items():
        PARSERS[name](default)


# -- New returned values ----------------------------------------------------------

def test_curves_are_mozilla_intermediate_only():
    settings, _warnings = normalise(dict(GOOD, tls="selfsigned"))
    assert settings["tls_curves"] == ["X25519", "prime256v1", "secp384r1"]


@pytest.mark.parametrize("url, header", [
    ("https://Photos.Example.org", "photos.example.org"),
    ("https://photos.example.org:443", "photos.example.org"),
    ("https://photos.example.org:8443", "photos.example.org:8443"),
    ("http://photos.example.org:80", "photos.example.org"),
    ("http://[FD00::1]:8080", "[fd00::1]:8080"),
    ("http://[fd00::1]", "[fd00::1]"),
])
def test_the_host_header_has_the_port_only_when_it_is_not_the_default(url, header):
    settings, _warnings = normalise({"public_url": url})
    assert settings["public_host_header"] == header


def test_https_backends_are_verified_by_their_common_host_name():
    settings, _warnings = normalise(dict(GOOD, backends=["https://Immich.Internal:2283", "https://immich.internal:2284"],
                                         backend_ca_file="/etc/ssl/private-ca.pem"))
    assert settings["backend_tls_verify"] is True
    assert settings["backend_tls_name"] == "immich.internal"
    assert settings["backend_ca_file"] == "/etc/ssl/private-ca.pem"


def test_http_backends_need_no_verification():
    settings, _warnings = normalise(GOOD)
    assert (settings["backend_tls_verify"], settings["backend_tls_name"], settings["backend_ca_file"]) == (
        False, None, None)


def test_https_pool_with_different_host_names_is_refused():
    message = " ".join(problems_for(backends=["https://a.internal:2283", "https://b.internal:2283"]))
    assert "immich_proxy_backends" in message and "one certificate name" in message


def test_acme_directory_is_rebuilt_from_its_parts():
    settings, _warnings = normalise(dict(GOOD, tls="acme", acme_email="Admin@Example.ORG",
                                         acme_directory="HTTPS://CA.Internal:443/acme/acme/directory"))
    assert settings["acme_directory"] == "https://ca.internal/acme/acme/directory"
    assert settings["acme_email"] == "Admin@example.org"


def test_acme_values_are_returned_only_for_acme():
    settings, _warnings = normalise(dict(GOOD, tls="selfsigned", acme_email="a@example.org"))
    assert (settings["acme_email"], settings["acme_directory"]) == (None, None)


def test_trusting_everyone_needs_the_explicit_switch_and_still_warns():
    assert any("allow_any" in p for p in problems_for(trusted_proxies=["0.0.0.0/0"]))
    settings, warnings = normalise(dict(GOOD, trusted_proxies=["0.0.0.0/0", "::/0"], trusted_proxies_allow_any=True))
    assert settings["trusted_proxies"] == ["0.0.0.0/0", "::/0"]
    assert settings["trusted_proxies_allow_any"] is True
    assert any("anyone" in w for w in warnings)


@pytest.mark.parametrize("value", [False, "off"])
def test_yaml_off_read_as_false_means_tls_off(value):
    settings, _warnings = normalise(dict(GOOD, tls=value))
    assert settings["tls"] == "off" and settings["tls_enabled"] is False


def test_check_settings_are_returned():
    settings, _warnings = normalise(dict(GOOD, check="no", check_ca_path="/etc/ssl/ca.pem"))
    assert (settings["check"], settings["check_ca_path"]) == (False, "/etc/ssl/ca.pem")


# -- Role-only variables --------------------------------------------------------------

# The real adapter's spec: what the nginx role's variables are parsed with.
NGINX_SPEC = PROXIES["nginx"].variables
NGINX_VALUES = {
    "nginx_ipv6": "false",
    "nginx_remove_default_site": "yes",
    "nginx_backend_fail_timeout": "10",
    "nginx_client_body_buffer_size": "512k",
    "nginx_extra_server_directives": ['add_header X-Robots-Tag "noindex" always;'],
}


def role_problems(values, spec=None):
    with pytest.raises(SettingsError) as caught:
        normalise(GOOD, role_spec=NGINX_SPEC if spec is None else spec, role_values=values)
    return caught.value.problems


def test_role_variables_are_typed_and_converted():
    settings, _warnings = normalise(GOOD, role_spec=NGINX_SPEC, role_values=NGINX_VALUES)
    assert settings["role"] == {
        "nginx_ipv6": False,  # the string "false" used to count as true in the template
        "nginx_remove_default_site": True,
        "nginx_backend_fail_timeout": 10,  # the string "10" used to crash the template's %d
        "nginx_client_body_buffer_size": 512 * 1024,
        "nginx_extra_server_directives": ['add_header X-Robots-Tag "noindex" always;'],
    }


def test_without_a_role_spec_the_role_settings_are_empty():
    settings, _warnings = normalise(GOOD)
    assert settings["role"] == {}


def test_a_role_variable_that_is_not_boolean_is_named_in_full():
    problems = role_problems(dict(NGINX_VALUES, nginx_ipv6="maybe"))
    assert problems == ["nginx_ipv6 'maybe' is not a boolean; use true or false (yes/no, on/off and 1/0 are read too)"]


@pytest.mark.parametrize("missing", [None, "absent"])
def test_a_role_variable_that_is_not_set_is_a_problem(missing):
    values = dict(NGINX_VALUES)
    if missing is None:
        values["nginx_ipv6"] = None
    else:
        del values["nginx_ipv6"]
    assert role_problems(values) == ["nginx_ipv6 is not set; the role needs a value (its default is in the role's "
                                     "defaults)"]


def test_a_role_variable_the_adapter_does_not_declare_is_a_problem():
    problems = role_problems(dict(NGINX_VALUES, nginx_ipv7=True))
    assert len(problems) == 1 and problems[0].startswith("nginx_ipv7 is not a variable of this proxy's role")


def test_an_adapter_spec_with_an_unknown_type_fails_closed():
    problems = role_problems({"nginx_x": 1}, spec={"nginx_x": {"type": "float"}})
    assert problems[0].startswith("nginx_x has no parser") and "bug in the collection" in problems[0]


@pytest.mark.parametrize("spec, value, expected", [
    ({"type": "str", "pattern": "[a-z_]{1,32}"}, "main", "main"),
    ({"type": "str", "choices": ["on", "off"]}, "on", "on"),
    ({"type": "path"}, "/var/log/nginx/immich.log", "/var/log/nginx/immich.log"),
    ({"type": "path", "nullable": True}, None, None),
    ({"type": "int"}, 7, 7),
    ({"type": "size"}, "1g", 1024 ** 3),
    ({"type": "lines"}, [], []),
])
def test_every_role_type_converts(spec, value, expected):
    settings, _warnings = normalise(GOOD, role_spec={"x_var": spec}, role_values={"x_var": value})
    assert settings["role"] == {"x_var": expected}


def test_role_problems_come_with_the_contracts_problems():
    with pytest.raises(SettingsError) as caught:
        normalise(dict(GOOD, timeout="soon"), role_spec=NGINX_SPEC,
                  role_values=dict(NGINX_VALUES, nginx_backend_fail_timeout=10.5))
    names = [p.split(" ", 1)[0] for p in caught.value.problems]
    assert names == ["immich_proxy_timeout", "nginx_backend_fail_timeout"]
