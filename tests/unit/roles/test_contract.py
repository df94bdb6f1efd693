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
