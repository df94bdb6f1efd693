# SPDX-License-Identifier: GPL-3.0-or-later
"""Two backends: when one stops, requests go on to the other."""
from __future__ import annotations

import collections

import pytest

REQUESTS = 40


@pytest.mark.disruptive
def test_stopping_one_backend_loses_no_request_after_the_first_failure(proxy, host):
    seen = collections.Counter(proxy.json("GET", "/_double/echo")[2]["backend"] for _attempt in range(6))
    assert set(seen) == {"double-2283", "double-2284"}, "both backends should serve before the stop, saw %r" % seen
    host.systemctl("stop", "immich-double@2284")
    try:
        outcomes = []
        for _attempt in range(REQUESTS):
            try:
                status, _headers, payload = proxy.json("GET", "/_double/echo")
                outcomes.append(payload.get("backend") if status == 200 else status)
            except (AssertionError, OSError) as exc:
                outcomes.append(repr(exc))
    finally:
        host.systemctl("start", "immich-double@2284")
    failures = [i for i, outcome in enumerate(outcomes) if outcome != "double-2283"]
    assert failures in ([], [0]), "requests failed after the first one: %r" % [(i, outcomes[i]) for i in failures]
