# SPDX-License-Identifier: GPL-3.0-or-later
"""meta/argument_specs.yml documents every public variable of each proxy role.

ansible-core does not turn spec defaults into variables, so the defaults live
in defaults/main.yml (the role's own) and roles/contract/defaults/main.yml (the
immich_proxy_* contract, which every proxy role gets through its dependency);
these tests keep them equal to the specs, and every public variable documented.
"""
from __future__ import annotations

import pathlib

import pytest
import yaml

from ansible_collections.homelab.immich_proxy.plugins.module_utils._proxies import PROXIES

ROLES = pathlib.Path(__file__).resolve().parents[3] / "roles"


def load(role, path):
    with open(ROLES / role / path) as handle:
        return yaml.safe_load(handle) or {}


@pytest.fixture(params=sorted(PROXIES))
def role(request):
    return request.param


def options_of(role):
    return load(role, "meta/argument_specs.yml")["argument_specs"]["main"]["options"]


def effective_defaults(role):
    return dict(load("contract", "defaults/main.yml"), **load(role, "defaults/main.yml"))


def test_every_default_is_documented_with_the_same_value(role):
    options = options_of(role)
    defaults = effective_defaults(role)
    undocumented = sorted(set(defaults) - set(options))
    assert not undocumented, "%s sets defaults that meta/argument_specs.yml does not document: %s" % (
        role, undocumented)
    for name, spec in options.items():
        if spec.get("required"):
            assert name not in defaults, "%s: required %s must have no default" % (role, name)
            continue
        assert name in defaults, "%s: %s is documented but has no default" % (role, name)
        if name in PROXIES[role].secrets:
            # a secret defaults to reading its *_src file on the controller, which its description says
            assert spec.get("no_log") is True and "default" not in spec and "_src" in " ".join(spec["description"])
            continue
        assert defaults[name] == spec.get("default"), "%s: %s defaults to %r but the spec says %r" % (
            role, name, defaults[name], spec.get("default"))


def test_every_option_says_why(role):
    missing = [name for name, spec in options_of(role).items() if not spec.get("description") or not spec.get("type")]
    assert not missing, "%s: options without a type or description: %s" % (role, missing)


def test_role_variables_follow_the_naming_rules(role):
    wrong = [name for name in load(role, "defaults/main.yml") if not name.startswith(role + "_")]
    assert not wrong, "%s: the role's own variables start with %s_: %s" % (role, role, wrong)
    shared = [name for name in load("contract", "defaults/main.yml") if not name.startswith("immich_proxy_")]
    assert not shared, "the contract's variables start with immich_proxy_: %s" % shared


def test_the_role_options_match_what_the_adapter_parses(role):
    own = sorted(name for name in options_of(role) if not name.startswith("immich_proxy_"))
    assert own == sorted(list(PROXIES[role].variables) + list(PROXIES[role].secrets))
