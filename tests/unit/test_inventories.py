# SPDX-License-Identifier: GPL-3.0-or-later
"""The inventories shipped with the collection hold settings the contract accepts, for every host's kind.

Read by the real ``ansible-inventory``, so group_vars and host_vars merge as they do for site.yml.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
import yaml

from ansible_collections.homelab.immich_proxy.plugins.module_utils._proxies import PROXIES
from ansible_collections.homelab.immich_proxy.plugins.module_utils._settings import CONTRACT, normalise

ROOT = pathlib.Path(__file__).resolve().parents[2]
PREFIX = "immich_proxy_"


def hosts(inventory):
    tool = os.path.join(os.path.dirname(sys.executable), "ansible-inventory")
    result = subprocess.run([tool, "-i", str(ROOT / "inventory" / inventory), "--list"], capture_output=True,
                            text=True, check=True, env=dict(os.environ, ANSIBLE_NOCOLOR="1"))
    return json.loads(result.stdout)["_meta"]["hostvars"]


def role_defaults(kind):
    with open(ROOT / "roles" / kind / "defaults" / "main.yml") as handle:
        return yaml.safe_load(handle) or {}


def untemplated(value):
    """ansible-inventory does not template: the one template the demo inventories use is the project root."""
    if isinstance(value, str):
        return value.replace("{{ inventory_dir | dirname | dirname }}", str(ROOT))
    return value


@pytest.mark.parametrize("inventory", ["example", "demo", "demo-cloudflared"])
def test_every_host_of_the_inventory_passes_the_contract_for_its_kind(inventory):
    found = hosts(inventory)
    assert found, "no hosts in inventory/%s" % inventory
    for name, variables in found.items():
        kind = variables.get(PREFIX + "kind")
        assert kind in PROXIES, "%s in inventory/%s: immich_proxy_kind %r is not a kind" % (name, inventory, kind)
        raw = {key: variables[PREFIX + key] for key in CONTRACT if PREFIX + key in variables}
        adapter = PROXIES[kind]
        values = dict({k: v for k, v in role_defaults(kind).items() if k in adapter.variables},
                      **{k: untemplated(v) for k, v in variables.items() if k in adapter.variables})
        settings, _warnings = normalise(raw, role_spec=adapter.variables, role_values=values)
        assert settings["public_url"].startswith("https://")
        assert adapter.settings_problems(settings) == [], "%s in inventory/%s" % (name, inventory)


def test_the_example_inventory_shows_every_proxy_kind_we_ship():
    kinds = {variables[PREFIX + "kind"] for variables in hosts("example").values()}
    shipped = {"nginx", "apache", "caddy", "traefik", "cloudflared"}
    assert shipped <= kinds, "inventory/example shows only %s" % sorted(kinds)
