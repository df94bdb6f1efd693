# SPDX-License-Identifier: GPL-3.0-or-later
"""The cloudflared adapter: what a tunnel cannot serve, its secrets (never quoted), and its checks in order."""
from __future__ import annotations

import base64
import json

import pytest

from ansible_collections.homelab.immich_proxy.plugins.module_utils import _proxies
from ansible_collections.homelab.immich_proxy.plugins.module_utils._settings import SettingsError, normalise

Cloudflared = _proxies.Cloudflared
TUNNEL = "6ff42ae2-765d-4adf-8112-31c55c1551ef"
SECRET = base64.b64encode(b"x" * 32).decode()
CREDENTIALS = json.dumps({"AccountTag": "0123456789abcdef0123456789abcdef", "TunnelSecret": SECRET,
                          "TunnelID": TUNNEL})
TOKEN = base64.b64encode(json.dumps({"a": "0123456789abcdef0123456789abcdef", "t": TUNNEL,
                                     "s": SECRET}).encode()).decode()
ROLE = {"cloudflared_install": "binary", "cloudflared_apt_url": "https://pkg.cloudflare.com/cloudflared",
        "cloudflared_apt_key_url": "https://pkg.cloudflare.com/cloudflare-main.gpg",
        "cloudflared_package_src": None, "cloudflared_binary_src": "/opt/cloudflared",
        "cloudflared_tunnel_id": TUNNEL, "cloudflared_credentials_src": None, "cloudflared_token_src": None,
        "cloudflared_metrics_port": 20241, "cloudflared_protocol": "auto", "cloudflared_loglevel": "info",
        "cloudflared_connect_timeout": 30, "cloudflared_keepalive_timeout": 90, "cloudflared_extra_ingress": []}


def settings_of(raw=None, **role):
    raw = dict({"public_url": "https://photos.example.org", "tls": "off", "cloudflare_plan": "free"}, **(raw or {}))
    settings, warnings = normalise(raw, role_spec=Cloudflared.variables, role_values=dict(ROLE, **role))
    return settings, warnings


def test_a_sound_tunnel_has_no_problem_and_the_plan_limit_is_a_warning():
    settings, warnings = settings_of()
    assert Cloudflared.settings_problems(settings) == []
    assert any("Cloudflare's free plan cuts request bodies at 100M" in w for w in warnings)
    assert not any("plan" in w for w in settings_of({"max_body_size": "100M"})[1])


@pytest.mark.parametrize("raw, role, words", [
    ({"tls": "selfsigned"}, {}, "immich_proxy_tls"),
    ({"public_url": "http://photos.example.org", "http_port": 8080}, {}, "immich_proxy_public_url"),
    ({"public_url": "https://photos.example.org:8443"}, {}, "immich_proxy_public_url"),
    ({"backends": ["http://10.0.0.5:2283", "http://10.0.0.6:2283"]}, {}, "one origin"),
    ({"cloudflare_plan": None}, {}, "immich_proxy_cloudflare_plan"),
    ({}, {"cloudflared_install": "package"}, "cloudflared_package_src"),
    ({}, {"cloudflared_extra_ingress": ["grafana.example.org"]}, "cloudflared_extra_ingress"),
    ({}, {"cloudflared_extra_ingress": ['grafana.example.org http://x"y']}, "cloudflared_extra_ingress"),
    ({}, {"cloudflared_tunnel_id": None, "cloudflared_extra_ingress": ["a.example.org http://x:1"]}, "dashboard"),
])
def test_what_a_tunnel_cannot_serve_is_a_problem_naming_the_variable(raw, role, words):
    settings, _warnings = settings_of(raw, **role)
    problems = Cloudflared.settings_problems(settings)
    assert any(words in p for p in problems), problems


@pytest.mark.parametrize("role, secrets, words", [
    ({}, {"cloudflared_credentials": CREDENTIALS}, None),
    ({"cloudflared_tunnel_id": None}, {"cloudflared_token": TOKEN}, None),
    ({"cloudflared_tunnel_id": None}, {"cloudflared_token": TOKEN + "\n"}, None),
    ({}, {}, "cloudflared_credentials: a locally managed tunnel needs"),
    ({"cloudflared_credentials_src": "/nowhere.json"}, {}, "cloudflared_credentials_src: /nowhere.json cannot"),
    ({}, {"cloudflared_credentials": CREDENTIALS.replace(TUNNEL, "11111111-2222-4333-8444-555555555555")},
     "another tunnel"),
    ({}, {"cloudflared_credentials": CREDENTIALS.replace(SECRET, "c2hvcnQ=")}, "at least 32 bytes"),
    ({}, {"cloudflared_credentials": "{" + CREDENTIALS[1:-1] + ', "Extra": 1}'}, "Extra"),
    ({}, {"cloudflared_credentials": "AccountTag: x"}, "is not JSON"),
    ({}, {"cloudflared_credentials": CREDENTIALS, "cloudflared_token": TOKEN}, "cloudflared_token: a locally"),
    ({"cloudflared_tunnel_id": None}, {}, "cloudflared_token: a remotely managed tunnel needs"),
    ({"cloudflared_tunnel_id": None}, {"cloudflared_token": TOKEN[:-8]}, "is not a tunnel token"),
    ({"cloudflared_tunnel_id": None}, {"cloudflared_token": base64.b64encode(b'{"a": "x"}' * 5).decode()},
     "is not a tunnel token"),
    ({"cloudflared_tunnel_id": None}, {"cloudflared_credentials": CREDENTIALS, "cloudflared_token": TOKEN},
     "set cloudflared_tunnel_id"),
])
def test_secrets_are_checked_and_never_quoted(role, secrets, words):
    settings, _warnings = settings_of(**role)
    problems = Cloudflared.secret_problems(secrets, settings)
    if words is None:
        assert problems == []
        return
    assert any(words in p for p in problems), problems
    # nothing of any secret given, raw or decoded, is quoted back
    parts = set()
    for value in secrets.values():
        parts.add(value.strip()[:16])
        try:
            decoded = json.loads(value) if value.lstrip().startswith("{") else json.loads(base64.b64decode(value))
        except ValueError:
            decoded = {}
        if isinstance(decoded, dict):
            parts |= {str(v)[:16] for v in decoded.values() if len(str(v)) >= 8}
    for problem in problems:
        for part in parts:
            assert part not in problem, (part, problem)


class Module:
    def __init__(self, answers, binary=True):
        self.answers, self.binary, self.calls = answers, binary, []

    def get_bin_path(self, name, required=False, opt_dirs=None):
        return "/usr/bin/" + name if self.binary else None

    def run_command(self, argv, **kwargs):
        self.calls.append(argv[1:])
        return self.answers[argv[-1] if argv[-1] == "validate" else "rule"]


def _with_config(tmp_path, monkeypatch, config):
    path = tmp_path / "config.yml"
    path.write_text("# Ansible managed\n" + json.dumps(config))
    monkeypatch.setattr(Cloudflared, "config_path", str(path))
    return str(path)


LOCAL = {"tunnel": TUNNEL, "credentials-file": "/etc/cloudflared/credentials.json", "no-autoupdate": True,
         "ingress": [{"hostname": "photos.example.org", "service": "http://127.0.0.1:2283"},
                     {"service": "http_status:404"}]}


def test_the_collections_check_then_cloudflareds_own_then_the_rule_for_the_public_url(tmp_path, monkeypatch):
    path = _with_config(tmp_path, monkeypatch, LOCAL)
    ok = {"validate": (0, "Validating rules from %s\nOK\n" % path, ""),
          "rule": (0, "Using rules from %s\nMatched rule #0\n\thostname: photos.example.org\n" % path, "")}
    module = Module(ok)
    assert Cloudflared(module).test() == ""
    assert module.calls == [["tunnel", "--config", path, "ingress", "validate"],
                            ["tunnel", "--config", path, "ingress", "rule", "https://photos.example.org/"]]
    with pytest.raises(_proxies.ProxyError, match="does not send https://photos.example.org/ to Immich"):
        Cloudflared(Module(dict(ok, rule=(0, "Matched rule #1\n", "")))).test()
    with pytest.raises(_proxies.ProxyError, match="ingress validate.*Validation failed"):
        Cloudflared(Module(dict(ok, validate=(1, "", "Validation failed: no rules")))).test()


def test_a_config_the_validator_refuses_never_reaches_cloudflared(tmp_path, monkeypatch):
    _with_config(tmp_path, monkeypatch, dict(LOCAL, ingress=[{"hostname": "x.example.org", "service": "localhost:1"},
                                                             {"service": "http_status:404"}]))
    module = Module({})
    with pytest.raises(_proxies.ProxyError, match=r"cloudflared rejected the configuration .*ingress\[0\].service"):
        Cloudflared(module).test()
    assert module.calls == []


def test_without_the_binary_or_for_a_remote_tunnel_only_the_validator_runs(tmp_path, monkeypatch):
    _with_config(tmp_path, monkeypatch, LOCAL)
    module = Module({}, binary=False)
    assert Cloudflared(module).test() == "" and module.calls == []
    _with_config(tmp_path, monkeypatch, {"token-file": "/etc/cloudflared/token", "no-autoupdate": True})
    module = Module({})
    assert Cloudflared(module).test() == "" and module.calls == []


@pytest.mark.parametrize("name, value", [("cloudflared_credentials_src", CREDENTIALS),
                                         ("cloudflared_token_src", TOKEN)])
def test_a_secret_given_in_the_path_variable_is_named_but_never_quoted(name, value):
    with pytest.raises(SettingsError) as caught:
        settings_of(**{name: value})
    problems = " ".join(caught.value.problems)
    assert name in problems
    for part in (SECRET, SECRET[:12], TOKEN[:12], "AccountTag", "0123456789abcdef"):
        assert part not in problems, problems
