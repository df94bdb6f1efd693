# SPDX-License-Identifier: GPL-3.0-or-later
"""Two backends: when one stops, requests go on to the other; when it comes back, it is in the pool again."""
from __future__ import annotations

import collections
import time

import pytest

from harness import sh

REQUESTS = 40


pytestmark = pytest.mark.needs(listens=True)


@pytest.mark.disruptive
def test_stopping_one_backend_loses_no_request_after_the_first_failure(proxy, host, backend_ports, figures):
    if len(backend_ports) < 2:
        pytest.skip("the scenario has one backend: there is no pool to fail over in")
    kept, stopped = ("double-%d" % port for port in backend_ports[:2])
    seen = collections.Counter(proxy.json("GET", "/_double/echo")[2]["backend"] for _attempt in range(6))
    assert set(seen) >= {kept, stopped}, "both backends should serve before the stop, saw %r" % seen
    sh(host, "systemctl stop immich-double@%d" % backend_ports[1])
    try:
        outcomes = []
        for _attempt in range(REQUESTS):
            try:
                status, _headers, payload = proxy.json("GET", "/_double/echo")
                outcomes.append(payload.get("backend") if status == 200 else status)
            except (AssertionError, OSError) as exc:
                outcomes.append(repr(exc))
    finally:
        sh(host, "systemctl start immich-double@%d" % backend_ports[1])
    failures = [i for i, outcome in enumerate(outcomes) if outcome != kept]
    figures.add("pool_requests", len(outcomes))
    figures.add("pool_lost", len(failures))
    assert failures in ([], [0]), "requests failed after the first one: %r" % [(i, outcomes[i]) for i in failures]
    # back in the pool once it answers again (health checks, or the end of a passive check's fail timeout)
    deadline = time.monotonic() + 60
    back = []
    while time.monotonic() < deadline and stopped not in back:
        status, _headers, payload = proxy.json("GET", "/_double/echo")
        assert status == 200, "a request failed after the backend came back: HTTP %d" % status
        back.append(payload.get("backend"))
        time.sleep(0.5)
    assert stopped in back, "%s did not return to the pool within a minute of starting again" % stopped
