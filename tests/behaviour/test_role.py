# SPDX-License-Identifier: GPL-3.0-or-later
"""A run that cannot succeed leaves the running proxy and its files as they were."""
from __future__ import annotations

import pytest


def _snapshot(host, traits):
    return host.tree_digest(traits["config_dirs"]), host.pids(traits["processes"])


def _assert_untouched(proxy, host, traits, before):
    after = _snapshot(host, traits)
    assert after[0] == before[0], "config files changed after a failed run"
    assert after[1] == before[1], "the proxy's processes changed (was it reloaded or restarted?)"
    status, _headers, payload = proxy.json("GET", "/api/server/ping")
    assert (status, payload) == (200, {"res": "pong"}), "the proxy stopped serving after a failed run"


# The proxy's own variable carrying a smuggled directive comes from the traits of the kind.
ROLE_VARIABLE = None


@pytest.mark.disruptive
@pytest.mark.parametrize("bad, words", [
    ({"immich_proxy_public_url": "https://photos.immich.test/immich"},
     ["immich_proxy_public_url 'https://photos.immich.test/immich'", "sub-path"]),
    ({"immich_proxy_public_url": "https://photos.immich.test;\n    return 200 pwned"},
     ["immich_proxy_public_url", "not allowed"]),
    ({"immich_proxy_trusted_proxies": ["10.0.0.0/33"], "immich_proxy_max_body_size": "lots",
      "immich_proxy_backends": ["http://127.0.0.1:2283/immich"]},
     ["immich_proxy_trusted_proxies '10.0.0.0/33'", "immich_proxy_max_body_size 'lots'",
      "immich_proxy_backends 'http://127.0.0.1:2283/immich'"]),
    (ROLE_VARIABLE, None),
], ids=["sub-path", "directive-injection", "every-problem-at-once", "role-variable-injection"])
def test_bad_settings_fail_with_the_variable_named_and_change_nothing(proxy, host, traits, converge, bad, words):
    if bad is ROLE_VARIABLE:
        bad = traits["injection_vars"]
        words = list(bad)
    before = _snapshot(host, traits)
    result = converge(bad, check=False)
    assert result.returncode != 0, "the role accepted %r" % bad
    for word in words:
        assert word in result.output, "the failure does not say %r:\n%s" % (word, result.output[-2500:])
    _assert_untouched(proxy, host, traits, before)


@pytest.mark.disruptive
def test_a_config_the_proxy_rejects_is_rolled_back_and_the_old_one_keeps_serving(proxy, host, traits, converge):
    before = _snapshot(host, traits)
    result = converge(traits["broken_config_vars"], check=False)
    assert result.returncode != 0, "the proxy accepted a broken config"
    assert traits["broken_config_message"] in result.output, result.output[-2500:]
    assert "every file was restored" in result.output
    _assert_untouched(proxy, host, traits, before)
    leftovers = host.sh("find %s -name '*.immich-proxy-*'" % " ".join(traits["config_dirs"])).stdout
    assert not leftovers.strip(), "staging files were left behind: %s" % leftovers
