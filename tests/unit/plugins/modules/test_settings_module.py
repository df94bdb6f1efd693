# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import json

import pytest
import yaml

from ansible_collections.homelab.immich_proxy.plugins.doc_fragments.attributes import ModuleDocFragment
from ansible_collections.homelab.immich_proxy.plugins.module_utils._proxies import PROXIES, file_problems
from ansible_collections.homelab.immich_proxy.plugins.module_utils._settings import CONTRACT, normalise
from ansible_collections.homelab.immich_proxy.plugins.modules import settings

NGINX_VARIABLES = {
    "nginx_ipv6": {"type": "bool"},
    "nginx_backend_fail_timeout": {"type": "int", "min": 1, "max": 3600},
    "nginx_client_body_buffer_size": {"type": "size", "min": 1024, "max": 64 * 1024 ** 2},
}
NGINX_VALUES = {"nginx_ipv6": "false", "nginx_backend_fail_timeout": "10", "nginx_client_body_buffer_size": "512k"}


@pytest.fixture(autouse=True)
def nginx_variables(monkeypatch):
    """The nginx adapter declaring a known set of role-only variables, whatever it declares today."""
    monkeypatch.setattr(PROXIES["nginx"], "variables", NGINX_VARIABLES, raising=False)


@pytest.fixture(autouse=True)
def free_host(monkeypatch):
    """The machine that runs the unit tests is not a proxy host: its ports and files are not looked at
    (test_host_checks.py tests those checks; the test below, that the module makes them)."""
    monkeypatch.setattr(settings, "port_plan", lambda adapter, values, deployed: ([], []))
    monkeypatch.setattr(settings, "file_problems", lambda values: [])
    monkeypatch.setattr(settings, "host_facts", lambda adapter, module: dict(DEBIAN))


DEBIAN = {"os_family": "Debian", "supported": True, "pretty_name": "Debian GNU/Linux 12 (bookworm)",
          "architecture": "x86_64", "packages": {"nginx": "1.22.1-9+deb12u3", "certbot": None}, "user_exists": None,
          "proxy_version": None, "binary_record": None, "binary_sha1": None,
          "restart_pending": None}


def test_the_host_facts_come_back_and_an_unsupported_host_is_refused_before_a_deploy(run_module, monkeypatch):
    result, failed = run_module(settings, args(public_url="http://photos.example.org"))
    assert not failed and result["settings"]["host"] == DEBIAN
    fedora = dict(DEBIAN, os_family="Fedora", supported=False, pretty_name="Fedora Linux 41")
    monkeypatch.setattr(settings, "host_facts", lambda adapter, module: fedora)
    result, failed = run_module(settings, args(public_url="http://photos.example.org"))
    assert failed and result["problems"] == [
        "this host runs Fedora Linux 41: the nginx role supports Debian and its derivatives (Ubuntu, Raspberry Pi OS)"]
    # a deployed proxy is only looked at (playbooks/check.yml): no refusal there
    result, failed = run_module(settings, {"kind": "nginx", "public_url": "http://photos.example.org"})
    assert not failed and result["settings"]["host"] == fedora


def test_before_a_deploy_the_files_the_settings_name_are_checked_on_the_host(run_module, tmp_path, monkeypatch):
    monkeypatch.setattr(settings, "file_problems", file_problems)
    key = tmp_path / "privkey.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n")
    result, failed = run_module(settings, args(public_url="https://photos.example.org", tls="provided",
                                               tls_cert=str(tmp_path / "missing.pem"), tls_key=str(key)))
    assert failed and result["problems"] == [
        "immich_proxy_tls_cert %s does not exist on this host (the file must be on the proxy host; nothing was "
        "changed)" % (tmp_path / "missing.pem")]
    # without the role's variables (playbooks/check.yml, a deployed proxy) the host is not looked at
    result, failed = run_module(settings, {"kind": "nginx", "public_url": "https://photos.example.org",
                                           "tls": "provided", "tls_cert": str(tmp_path / "missing.pem"),
                                           "tls_key": str(key)})
    assert not failed, result


def args(**options):
    """Module arguments as the contract role passes them: the kind and the role's own variables."""
    return dict({"kind": "nginx", "role_variables": NGINX_VALUES}, **options)


def documentation():
    doc = yaml.safe_load(settings.DOCUMENTATION)
    options = dict(doc["options"])
    # extends_documentation_fragment: homelab.immich_proxy.attributes.proxy_kind
    options.update(yaml.safe_load(ModuleDocFragment.PROXY_KIND)["options"])
    return doc, options


def test_good_settings_are_returned_normalised_and_nothing_changes(run_module):
    result, failed = run_module(settings, args(public_url="https://Photos.Example.org/", tls="selfsigned"))
    assert not failed and not result["changed"]
    assert result["settings"]["public_url"] == "https://photos.example.org"


def test_every_problem_is_in_one_message(run_module):
    result, failed = run_module(settings, args(public_url="https://example.org/immich", trusted_proxies=["nope"]))
    assert failed
    assert result["msg"].startswith("Invalid Immich proxy settings: immich_proxy_public_url")
    assert len(result["problems"]) == 2


def test_a_low_timeout_warns(run_module):
    result, failed = run_module(settings, args(public_url="http://immich.lan", timeout=60))
    assert not failed
    assert any("600" in w for w in result.get("warnings", []))


def test_type_errors_are_reported_with_every_other_problem(run_module):
    # Before the options were raw, AnsibleModule stopped at the first type error
    # (timeout 'soon') and the rest were only seen run after run.
    bad = args(timeout="soon", hsts="maybe", backends={"url": "http://a:2283"}, http_port=80.5,
               trusted_proxies=["0.0.0.0/0"])
    result, failed = run_module(settings, bad)
    assert failed
    names = [p.split(" ", 1)[0] for p in result["problems"]]
    assert names == ["immich_proxy_public_url", "immich_proxy_backends", "immich_proxy_timeout",
                     "immich_proxy_hsts", "immich_proxy_http_port", "immich_proxy_trusted_proxies"]


def test_the_roles_own_variables_are_checked_against_its_adapter(run_module):
    result, failed = run_module(settings, args(public_url="http://immich.lan"))
    assert not failed
    assert result["settings"]["role"] == {"nginx_ipv6": False, "nginx_backend_fail_timeout": 10,
                                          "nginx_client_body_buffer_size": 524288}


def test_a_bad_role_variable_is_reported_with_the_contracts_problems(run_module):
    result, failed = run_module(settings, args(public_url="http://immich.lan", tls="acme",
                                               role_variables=dict(NGINX_VALUES, nginx_ipv6="maybe")))
    assert failed
    assert "nginx_ipv6 'maybe' is not a boolean" in result["msg"]
    assert any(p.startswith("immich_proxy_public_url ") for p in result["problems"])


def test_an_unknown_proxy_kind_is_refused(run_module):
    result, failed = run_module(settings, args(kind="lighttpd", public_url="http://immich.lan"))
    assert failed and "kind" in result["msg"]


def test_without_role_variables_only_the_contract_is_checked(run_module):
    options = args(public_url="http://immich.lan")
    del options["role_variables"]
    result, failed = run_module(settings, options)
    assert not failed, result
    assert result["settings"]["role"] == {}


def test_a_role_variable_the_role_did_not_pass_is_a_problem(run_module):
    result, failed = run_module(settings, args(public_url="http://immich.lan", role_variables={}))
    assert failed
    assert sorted(p.split(" ", 1)[0] for p in result["problems"]) == sorted(NGINX_VARIABLES)


# -- The docs are the contract's, and agree with the argument spec ---------------------

def _module_option(spec):
    """What a CONTRACT entry becomes in the module: raw, its default, nothing required (see settings.py)."""
    option = {"type": "raw", "default": spec.get("default"), "choices": None, "elements": None, "required": False}
    return option


def _shape(option):
    return {"type": option.get("type"), "default": option.get("default"), "choices": option.get("choices"),
            "elements": option.get("elements"), "required": bool(option.get("required"))}


def test_the_documented_options_are_the_contracts():
    _doc, options = documentation()
    expected = {name: _module_option(spec) for name, spec in CONTRACT.items()}
    expected["kind"] = {"type": "str", "default": None, "choices": None, "elements": None,
                        "required": True}
    expected["role_variables"] = {"type": "dict", "default": None, "choices": None, "elements": None,
                                  "required": False}
    expected["secrets"] = dict(expected["role_variables"])
    assert {name: _shape(option) for name, option in options.items()} == expected


def test_the_documented_options_match_the_argument_spec():
    # What ansible-test's validate-modules compares: type, default, choices, elements, required.
    _doc, options = documentation()
    spec = settings.argument_spec()
    assert {name: _shape(option) for name, option in options.items()} == {
        name: _shape(option) for name, option in spec.items()}


def _code(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "C(%s)" % str(value).lower()
    if isinstance(value, str):
        return "C(%s)" % value
    return "C(%s)" % json.dumps(value)


def _header(name, spec):
    kind = "C(%s)" % spec["type"] + (" of C(%s)" % spec["elements"] if "elements" in spec else "")
    text = "The role variable C(immich_proxy_%s): type %s" % (name, kind)
    if "choices" in spec:
        text += ", one of %s" % ", ".join(_code(c) for c in spec["choices"])
    text += ", required" if spec.get("required") else ", default %s" % _code(spec.get("default"))
    return text + "."


def test_each_option_says_its_type_and_default_then_the_contracts_description():
    _doc, options = documentation()
    for name, spec in CONTRACT.items():
        assert options[name]["description"] == [_header(name, spec)] + spec["description"], name


def test_secret_looking_names_say_whether_they_are_secret():
    # validate-modules asks for an explicit no_log on raw options whose name says "key".
    assert settings.argument_spec()["tls_key"]["no_log"] is False


# -- RETURN documents every key the settings can hold ------------------------------------

FULL = {
    "public_url": "https://photos.example.org:8443", "tls": "acme", "acme_email": "a@example.org",
    "acme_ca_file": "/etc/ssl/pebble.pem", "backends": ["https://immich.lan:2283", "https://immich.lan:2284"],
    "backend_ca_file": "/etc/ssl/ca.pem", "trusted_proxies": ["10.0.0.0/8"], "cloudflare_plan": "free",
    "check_ca_path": "/etc/ssl/ca.pem",
}


@pytest.mark.parametrize("raw", [FULL, {"public_url": "http://immich.lan", "tls": "off"}], ids=["full", "tls-off"])
def test_return_documents_exactly_the_returned_keys(raw, run_module):
    returned = yaml.safe_load(settings.RETURN)["settings"]["contains"]
    result, failed = run_module(settings, dict(raw, kind="nginx", role_variables=NGINX_VALUES))
    assert not failed, result
    actual = result["settings"]
    assert sorted(returned["proxy"]["contains"]) == sorted(actual["proxy"])
    assert sorted(returned["host"]["contains"]) == sorted(actual["host"])
    assert sorted(set(returned) - set(actual)) == [], "documented but never returned"
    assert sorted(set(actual) - set(returned)) == [], "returned but not documented"
    backend_keys = set(returned["backends"]["contains"])
    assert all(set(backend) == backend_keys for backend in actual["backends"])


def test_return_documents_a_type_for_every_key():
    returned = yaml.safe_load(settings.RETURN)["settings"]["contains"]
    python_types = {"str": str, "int": int, "bool": bool, "list": list, "dict": dict}
    actual, _warnings = normalise(FULL, role_spec=NGINX_VARIABLES, role_values=NGINX_VALUES)
    actual["proxy"] = {}
    actual["host"] = {}
    for key, doc in returned.items():
        assert doc["description"], key
        if actual[key] is not None:
            assert isinstance(actual[key], python_types[doc["type"]]), key
