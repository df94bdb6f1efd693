# SPDX-License-Identifier: GPL-3.0-or-later
"""meta/argument_specs.yml is each role's single source of truth for its variables.

ansible-core does not turn spec defaults into variables, so defaults/main.yml
repeats them; these tests keep the two equal, and every public variable documented.
"""
from __future__ import annotations

import pathlib

import pytest
import yaml

ROLES = pathlib.Path(__file__).resolve().parents[3] / "roles"


def load(role, path):
    with open(ROLES / role / path) as handle:
        return yaml.safe_load(handle) or {}


@pytest.fixture(params=sorted(p.name for p in ROLES.iterdir() if (p / "meta" / "argument_specs.yml").exists()))
def role(request):
    return request.param


def test_every_default_is_documented_with_the_same_value(role):
    options = load(role, "meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    defaults = load(role, "defaults/main.yml")
    undocumented = sorted(set(defaults) - set(options))
    assert not undocumented, "%s sets defaults that meta/argument_specs.yml does not document: %s" % (
        role, undocumented)
    for name, spec in options.items():
        if spec.get("required"):
            assert name not in defaults, "%s: required %s must have no default" % (role, name)
            continue
        assert name in defaults, "%s: %s is documented but has no default in defaults/main.yml" % (role, name)
        assert defaults[name] == spec.get("default"), "%s: %s defaults to %r but the spec says %r" % (
            role, name, defaults[name], spec.get("default"))


def test_every_option_says_why(role):
    options = load(role, "meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    missing = [name for name, spec in options.items() if not spec.get("description") or not spec.get("type")]
    assert not missing, "%s: options without a type or description: %s" % (role, missing)


def test_role_variables_follow_the_naming_rules(role):
    defaults = load(role, "defaults/main.yml")
    wrong = [name for name in defaults if not name.startswith(("immich_proxy_", role + "_"))]
    assert not wrong, "%s: public variables must start with immich_proxy_ or %s_: %s" % (role, role, wrong)
