# SPDX-License-Identifier: GPL-3.0-or-later
"""The adapter registry (_proxies.PROXIES) is the one list of proxy kinds.

Everything else that names the kinds is kept equal to it here: a new proxy is
one adapter, one role, one molecule scenario and one traits entry, and this
test says which of them is missing.
"""
from __future__ import annotations

import importlib.util
import pathlib
import sys

import yaml

from ansible_collections.homelab.immich_proxy.plugins.doc_fragments.attributes import ModuleDocFragment
from ansible_collections.homelab.immich_proxy.plugins.module_utils._proxies import PROXIES

ROOT = pathlib.Path(__file__).resolve().parents[2]
KINDS = sorted(PROXIES)
SHARED_ROLES = {"contract"}


def load(path):
    with open(ROOT / path) as handle:
        return yaml.safe_load(handle)


def behaviour_traits():
    spec = importlib.util.spec_from_file_location("harness", ROOT / "tests" / "behaviour" / "harness.py")
    harness = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class is made
    sys.modules.setdefault("harness", harness)
    spec.loader.exec_module(harness)
    return harness.KINDS


def test_every_kind_has_a_role_and_every_proxy_role_a_kind():
    roles = sorted(p.name for p in (ROOT / "roles").iterdir() if p.is_dir() and p.name not in SHARED_ROLES)
    assert roles == KINDS


def test_every_kind_has_a_molecule_scenario():
    scenarios = sorted(p.parent.name for p in (ROOT / "molecule").glob("*/molecule.yml"))
    assert scenarios == KINDS


def test_every_kind_has_traits_in_the_behaviour_suite():
    assert sorted(behaviour_traits()) == KINDS


def test_the_modules_kind_option_lists_every_kind():
    choices = yaml.safe_load(ModuleDocFragment.PROXY_KIND)["options"]["kind"]["choices"]
    assert sorted(choices) == KINDS


def test_site_yml_accepts_every_kind():
    check = next(task for task in load("playbooks/site.yml")[0]["tasks"] if "ansible.builtin.assert" in task)
    assert sorted(check["vars"]["__immich_proxy_kinds"]) == KINDS


def test_the_contract_role_accepts_every_kind():
    options = load("roles/contract/meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    assert sorted(options["__immich_proxy_kind"]["choices"]) == KINDS


def test_every_proxy_role_depends_on_the_contract_with_its_kind_and_variables():
    for kind in KINDS:
        dependencies = load("roles/%s/meta/main.yml" % kind)["dependencies"]
        assert len(dependencies) == 1 and dependencies[0]["role"] == "homelab.immich_proxy.contract", kind
        given = dependencies[0]["vars"]
        assert given["__immich_proxy_kind"] == kind
        declared = sorted(PROXIES[kind].variables)
        assert sorted(given["__immich_proxy_role_variables"]) == declared, (
            "roles/%s/meta/main.yml passes %r to the contract, the adapter parses %r"
            % (kind, given["__immich_proxy_role_variables"], declared))
        defaults = sorted(load("roles/%s/defaults/main.yml" % kind))
        assert defaults == declared, "roles/%s/defaults/main.yml sets %r, the adapter parses %r" % (
            kind, defaults, declared)
