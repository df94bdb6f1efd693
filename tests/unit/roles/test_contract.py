# SPDX-License-Identifier: GPL-3.0-or-later
"""The contract is written once (CONTRACT in _settings.py); the files Ansible reads are generated from it."""
from __future__ import annotations

import importlib.util
import pathlib

import yaml

from ansible_collections.homelab.immich_proxy.plugins.module_utils._settings import CONTRACT

ROOT = pathlib.Path(__file__).resolve().parents[3]


def contract_sync():
    spec = importlib.util.spec_from_file_location("contract_sync", ROOT / "scripts" / "contract_sync.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_defaults_and_role_specs_are_up_to_date():
    stale = contract_sync().differing()
    assert not stale, "out of date, run `python scripts/contract_sync.py`: %s" % stale


def test_the_contract_role_passes_every_variable_to_the_settings_module():
    with open(ROOT / "roles" / "contract" / "tasks" / "validate.yml") as handle:
        tasks = yaml.safe_load(handle)
    arguments = next(task["homelab.immich_proxy.settings"] for task in tasks if "homelab.immich_proxy.settings" in task)
    assert sorted(arguments) == sorted(list(CONTRACT) + ["kind", "role_variables", "secrets"])
    for name in CONTRACT:
        assert "immich_proxy_%s" % name in arguments[name], "%s is given %r" % (name, arguments[name])


def test_nothing_but_the_generator_writes_a_contract_default():
    written = []
    for path in ROOT.glob("roles/*/defaults/main.yml"):
        if path.parts[-3] == "contract":
            continue
        with open(path) as handle:
            written += [name for name in yaml.safe_load(handle) or {} if name.startswith("immich_proxy_")]
    assert not written, "immich_proxy_* defaults belong to the contract role only: %s" % written


def test_no_proxy_role_has_a_template_or_file_named_as_one_of_the_contracts():
    """The roles' templates and files are looked up inside the contract's serve step (__immich_proxy_apply is
    evaluated there), where Ansible searches the contract's own folders first: a name they share would render the
    contract's file in the role's place, silently."""
    clashes = []
    for folder in ("templates", "files"):
        shared = {path.relative_to(ROOT / "roles" / "contract" / folder)
                  for path in (ROOT / "roles" / "contract" / folder).rglob("*") if path.is_file()}
        for role in sorted(ROOT.glob("roles/*/%s" % folder)):
            if role.parent.name == "contract":
                continue
            clashes += ["roles/%s/%s/%s" % (role.parent.name, folder, path.relative_to(role))
                        for path in role.rglob("*") if path.is_file() and path.relative_to(role) in shared]
    assert not clashes, "named as one of the contract's, which the serve step would render instead: %s" % clashes


def test_no_proxy_role_has_handlers_of_its_own():
    """The contract's one handler serves every kind, reading it from the host's settings. A role's own handler on
    the shared topic would run on every host that notifies it in a play with two kinds (an nginx host would reload
    a Traefik it does not have)."""
    own = sorted(str(path.relative_to(ROOT)) for path in ROOT.glob("roles/*/handlers/*")
                 if path.parts[-3] != "contract")
    assert not own, "give the serve step what the role needs instead: %s" % own
