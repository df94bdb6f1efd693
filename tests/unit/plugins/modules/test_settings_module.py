# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

from ansible_collections.homelab.immich_proxy.plugins.modules import settings


def test_good_settings_are_returned_normalised_and_nothing_changes(run_module):
    result, failed = run_module(settings, {"public_url": "https://Photos.Example.org/", "tls": "selfsigned"})
    assert not failed and not result["changed"]
    assert result["settings"]["public_url"] == "https://photos.example.org"


def test_every_problem_is_in_one_message(run_module):
    result, failed = run_module(settings, {"public_url": "https://example.org/immich",
                                           "trusted_proxies": ["nope"]})
    assert failed
    assert result["msg"].startswith("Invalid Immich proxy settings: immich_proxy_public_url")
    assert len(result["problems"]) == 2


def test_a_low_timeout_warns(run_module):
    result, failed = run_module(settings, {"public_url": "http://immich.lan", "timeout": 60})
    assert not failed
    assert any("600" in w for w in result.get("warnings", []))
