# SPDX-License-Identifier: GPL-3.0-or-later
"""The adapter registry (_proxies.PROXIES) is the one list of proxy kinds.

Everything else that names the kinds is kept equal to it here: a new proxy is
one adapter, one role, one molecule scenario and one traits entry, and this
test says which of them is missing.
"""
from __future__ import annotations

import importlib.util
import os
import pathlib
import subprocess
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


def test_the_behaviour_suite_expects_the_kernel_settings_each_adapter_needs():
    """The suite finds live and kept what the adapter's sysctls say; a setting added to one and not the other
    fails here, not unnoticed."""
    traits = behaviour_traits()
    for kind in KINDS:
        assert traits[kind]["sysctls"] == {name: value for name, value, _drops in PROXIES[kind].sysctls}, kind


def test_nothing_else_lists_the_kinds_by_hand():
    """The modules, the contract role and site.yml take the kinds from the registry or from roles/."""
    assert "choices" not in yaml.safe_load(ModuleDocFragment.PROXY_KIND)["options"]["kind"]
    options = load("roles/contract/meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    assert "choices" not in options["__immich_proxy_kind"]
    assert "nginx" not in (ROOT / "playbooks" / "site.yml").read_text()


def test_site_yml_refuses_an_unknown_kind_and_names_the_known_ones(tmp_path):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"proxy1": {
        "immich_proxy_kind": "lighttpd", "ansible_connection": "local"}}}}))
    playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    env = dict(os.environ, ANSIBLE_NOCOLOR="1")
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(ROOT / ".cache" / "collections"))
    result = subprocess.run([playbook, "-i", str(inventory), str(ROOT / "playbooks" / "site.yml")],
                            capture_output=True, text=True, timeout=300, check=False, env=env)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "immich_proxy_kind 'lighttpd' on proxy1 must be one of %s" % ", ".join(KINDS) in output, output[-2000:]


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
        assert sorted(given.get("__immich_proxy_secret_variables", [])) == sorted(PROXIES[kind].secrets), kind
        defaults = sorted(load("roles/%s/defaults/main.yml" % kind))
        declared = sorted(declared + list(PROXIES[kind].secrets))
        assert defaults == declared, "roles/%s/defaults/main.yml sets %r, the adapter parses %r" % (
            kind, defaults, declared)
