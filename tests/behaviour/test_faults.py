# SPDX-License-Identifier: GPL-3.0-or-later
"""Faults during a deploy: the run fails saying what to fix, the previous config keeps serving, the next
correct run recovers with nothing left behind.

Each fault is injected on the proxy's host (a program on the port, a missing
certificate, the Immich test doubles stopped, a unit whose reload fails, the
run killed between applying and loading); a config the proxy rejects is
test_role.py's rollback test. After each, a run with the scenario's own
settings must leave the config files exactly as before the fault.
"""
from __future__ import annotations

import http.client
import json
import os
import re
import threading
import time

import pytest

from harness import KINDS, ROOT, assert_serving, assert_untouched, sh, snapshot, tree_digest

pytestmark = pytest.mark.faults

HOLDER = "immich-proxy-test-port-holder"
OVERRIDE = "/etc/systemd/system/%s.service.d/zz-immich-proxy-test-fault.conf"
STATE = "/var/lib/immich-proxy/%s.loaded.json"


@pytest.fixture(autouse=True)
def scenario_restored(host, traits, converge):
    """Whatever a test leaves (it failed halfway), the next one starts from the scenario's own settings."""
    start = tree_digest(host, traits["config_dirs"])
    yield
    sh(host, "systemctl stop %s; systemctl reset-failed %s; rm -f %s; systemctl daemon-reload"
       % (HOLDER, HOLDER, OVERRIDE % traits["service"]), check=False)
    if tree_digest(host, traits["config_dirs"]) != start:
        converge(check=False)


def _recovered(proxy, host, traits, converge, figures, before, faults=1):
    """A correct run after the fault: it passes, and the files are the ones from before the fault."""
    converge()
    assert tree_digest(host, traits["config_dirs"]) == before[0], (
        "after the fault and a correct run, the config files differ from before the fault")
    assert_serving(proxy, host, traits)
    figures.add("faults_recovered", faults)


def _failed(result, words):
    assert result.returncode != 0, "the run passed despite the fault"
    for word in words:
        assert word in result.output, "the failure does not say %r:\n%s" % (word, result.output[-3000:])


@pytest.mark.disruptive
@pytest.mark.needs(listens=True)
def test_a_port_another_program_holds_fails_naming_the_port_and_program_and_changes_nothing(
        proxy, host, traits, converge, figures):
    before = snapshot(host, traits)
    port = 18443
    sh(host, "systemctl reset-failed %s 2>/dev/null; systemd-run --collect --unit %s --property=Type=exec "
             "python3 -m http.server %d --bind 127.0.0.1" % (HOLDER, HOLDER, port))
    try:
        sh(host, "for i in $(seq 50); do ss -Hltn 'sport = :%d' | grep -q . && exit 0; sleep 0.1; done; exit 1"
           % port)
        figures.add("faults")
        variable = "immich_proxy_https_port" if proxy.scheme == "https" else "immich_proxy_http_port"
        result = converge({variable: port}, check=False)
        _failed(result, ["%s %d is already in use by python3" % (variable, port), HOLDER + ".service"])
        assert_untouched(proxy, host, traits, before)
    finally:
        sh(host, "systemctl stop %s" % HOLDER, check=False)
    _recovered(proxy, host, traits, converge, figures, before)


@pytest.mark.disruptive
@pytest.mark.needs(listens=True)
def test_a_certificate_that_is_missing_or_wrong_fails_naming_the_variable_and_changes_nothing(
        proxy, host, traits, converge, figures):
    if proxy.scheme != "https":
        pytest.skip("the scenario serves plain HTTP")
    before = snapshot(host, traits)
    directory = "/root/immich-proxy-test-fault"
    provided = {"immich_proxy_tls": "provided", "immich_proxy_tls_cert": directory + "/fullchain.pem",
                "immich_proxy_tls_key": directory + "/privkey.pem"}
    sh(host, "d=%s; rm -rf $d && mkdir -p $d && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 "
             "-out $d/privkey.pem" % directory)
    try:
        for fault, words in [
                ("rm -f %s/fullchain.pem" % directory,
                 "immich_proxy_tls_cert %s/fullchain.pem does not exist on this host" % directory),
                ("echo 'this is not a certificate' > %s/fullchain.pem" % directory,
                 "immich_proxy_tls_cert %s/fullchain.pem is not a PEM certificate" % directory)]:
            sh(host, fault)
            figures.add("faults")
            result = converge(provided, check=False)
            _failed(result, [words])
            assert "BEGIN" not in result.output, "the run printed key or certificate material"
            assert_untouched(proxy, host, traits, before)
    finally:
        sh(host, "rm -rf %s" % directory)
    _recovered(proxy, host, traits, converge, figures, before, faults=2)


@pytest.mark.disruptive
@pytest.mark.needs(listens=True)
def test_immich_down_at_deploy_time_fails_saying_so_and_the_next_run_passes(
        proxy, host, traits, converge, backend_ports, figures):
    before = snapshot(host, traits)
    units = " ".join("immich-double@%d" % port for port in backend_ports)
    sh(host, "systemctl stop %s" % units)
    figures.add("faults")
    try:
        result = converge(check=False)
        _failed(result, ["cannot reach Immich", "immich_proxy_backends"])
        assert tree_digest(host, traits["config_dirs"]) == before[0], "the config changed while Immich was down"
    finally:
        sh(host, "systemctl start %s" % units)
    # every double answers again (a loaded machine takes a moment), then the proxy passes requests again (one
    # with passive health checks, nginx's fail_timeout, waits a few seconds before it tries a backend again)
    sh(host, "for i in $(seq 120); do ok=1; for p in %s; do curl -fs -o /dev/null http://127.0.0.1:$p/api/server/ping "
             "|| ok=0; done; [ $ok = 1 ] && exit 0; sleep 0.5; done; exit 1"
       % " ".join(str(port) for port in backend_ports))
    deadline = time.monotonic() + 60
    while proxy.request("GET", "/api/server/ping")[0] != 200:
        assert time.monotonic() < deadline, "the proxy passed no request within 60 s of Immich's return"
        time.sleep(0.5)
    # and once it passes one, it passes every one (each on a new connection, which any of the proxy's processes
    # may take): nginx's workers each kept their own view of the pool without a shared zone, and one that had not
    # tried the backends again answered 502 for seconds after another had
    statuses = []
    for _attempt in range(16):
        statuses.append(proxy.request("GET", "/api/server/ping")[0])
        time.sleep(0.25)
    assert statuses == [200] * len(statuses), (
        "after it passed a request again, the proxy still failed some: %s" % statuses)
    _recovered(proxy, host, traits, converge, figures, before)


@pytest.mark.disruptive
@pytest.mark.needs(strategy="reload")
def test_a_reload_the_service_refuses_fails_saying_so_and_the_next_run_loads_the_config(
        proxy, host, kind, traits, converge, figures):
    before = snapshot(host, traits)
    override = OVERRIDE % traits["service"]
    sh(host, "mkdir -p %s && printf '[Service]\\nExecReload=\\nExecReload=/bin/false\\n' > %s && "
             "systemctl daemon-reload" % (os.path.dirname(override), override))
    figures.add("faults")
    try:
        result = converge(traits["config_change_vars"], check=False)
        _failed(result, ["%s refused to reload" % traits["service"], "the previous one keeps serving",
                         "journalctl -u %s" % traits["service"]])
        assert snapshot(host, traits)[1] == before[1], "the proxy's processes changed though its reload failed"
        assert_serving(proxy, host, traits)
    finally:
        sh(host, "rm -f %s && systemctl daemon-reload" % override)
    # the same settings again: the files are already on disk, the load is what is left to do
    pending = json.loads(sh(host, "cat %s" % (STATE % kind)).stdout)
    result = converge(traits["config_change_vars"])
    loaded = json.loads(sh(host, "cat %s" % (STATE % kind)).stdout)
    assert loaded["digest"] != pending.get("digest") and not loaded.get("pending"), (
        "the next run did not load the config the failed reload left on disk:\n%s" % result.output[-3000:])
    _recovered(proxy, host, traits, converge, figures, before)


@pytest.mark.disruptive
def test_a_run_cut_short_between_apply_and_reload_is_finished_by_the_next_one(
        proxy, host, kind, traits, converge, figures):
    before = snapshot(host, traits)
    variables = traits["config_change_vars"]
    figures.add("faults")
    result = converge(variables, check=False, env={
        "ANSIBLE_CALLBACK_PLUGINS": os.path.join(ROOT, "tests", "behaviour", "callbacks"),
        "ANSIBLE_CALLBACKS_ENABLED": "interrupt_after_apply"})
    assert result.returncode == 130 and "the run is cut short here" in result.output, result.output[-3000:]
    assert tree_digest(host, traits["config_dirs"]) != before[0], "the cut-short run changed no file: no test"
    assert_serving(proxy, host, traits)
    pending = json.loads(sh(host, "cat %s" % (STATE % kind)).stdout)
    assert pending.get("pending"), "a run cut short after apply left no mark that a load is pending: %r" % pending
    converge(variables)
    loaded = json.loads(sh(host, "cat %s" % (STATE % kind)).stdout)
    assert not loaded.get("pending") and loaded["digest"] != pending.get("digest"), (
        "the next run did not finish the job: %r" % loaded)
    _recovered(proxy, host, traits, converge, figures, before)


class Prober:
    """GET /api/server/ping through the proxy every 50 ms, from another thread: the longest stretch it failed."""

    def __init__(self, proxy):
        self.proxy = proxy
        self.results = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.is_set():
            began = time.monotonic()
            try:
                ok = self.proxy.request("GET", "/api/server/ping", timeout=5)[0] == 200
            except (OSError, http.client.HTTPException):
                ok = False
            self.results.append((began, ok))
            self.stop.wait(0.05)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)

    def longest_outage(self):
        """Seconds from the first failed probe of a stretch to the next probe that passed (0.0: none failed)."""
        longest, failing_since = 0.0, None
        for began, ok in self.results:
            if not ok and failing_since is None:
                failing_since = began
            elif ok and failing_since is not None:
                longest, failing_since = max(longest, began - failing_since), None
        assert failing_since is None, "the proxy still failed when the probes stopped"
        return longest


def _reported_outage(output):
    found = re.findall(r"Immich was unreachable for ([0-9.]+) s", output)
    assert found, "the run did not say how long Immich was unreachable:\n%s" % output[-3000:]
    return float(found[-1])


def _unit(host, service):
    return sh(host, "systemctl is-active %s; systemctl is-enabled %s" % (service, service), check=False).stdout.split()


@pytest.mark.disruptive
@pytest.mark.needs(listens=True)
def test_switching_the_kind_hands_the_ports_over_and_back_with_the_outage_stated_and_measured(
        proxy, host, kind, traits, converge, figures):
    """immich_proxy_kind switched to another kind: the new config is checked, the previous proxy stopped and
    disabled, the new one started on its ports; a new proxy that cannot start gives the ports back; switching
    back hands them over again and leaves the previous kind's files as they were."""
    other = traits["switch_to"]
    if other is None:
        pytest.skip("the kind switch runs on one pair of kinds in CI (trait switch_to), here none")
    old, new = traits["service"], KINDS[other]["service"]
    before = snapshot(host, traits)
    own = [directory for directory in traits["config_dirs"] if directory not in KINDS[other]["config_dirs"]]
    own_before = tree_digest(host, own)
    start_fails = OVERRIDE % new
    try:
        # the new proxy cannot start (a unit override): the previous one serves again, enabled as before
        sh(host, "mkdir -p %s && printf '[Service]\\nExecStartPre=/bin/false\\n' > %s && systemctl daemon-reload"
           % (os.path.dirname(start_fails), start_fails))
        figures.add("faults")
        result = converge({"immich_proxy_kind": other}, check=False)
        _failed(result, ["%s could not take ports" % new, "over from %s" % old,
                         "%s serves Immich again as before" % old])
        assert _unit(host, old) == ["active", "enabled"], "the previous proxy is not back as it was"
        assert _unit(host, new)[0] != "active", "the new proxy runs though its start failed"
        # (the certificate directory is both kinds': the key is readable by the new proxy's group already)
        assert tree_digest(host, own) == own_before, "the previous proxy's own files changed"
        assert_serving(proxy, host, traits)
        figures.add("faults_recovered")
        sh(host, "rm -f %s && systemctl daemon-reload" % start_fails)

        # the switch: announced before, measured by the run and by a client probing all along
        with Prober(proxy) as probe:
            result = converge({"immich_proxy_kind": other})
        said = result.output.find("it is stopped and disabled, then %s is started in its place" % new)
        assert 0 <= said < result.output.find("Take the ports over from the previous proxy"), (
            "the run did not announce the outage before the handover:\n%s" % result.output[-3000:])
        reported, seen = _reported_outage(result.output), probe.longest_outage()
        figures.add("switches")
        figures.worst("switch_outage_s", seen)
        assert reported < 15 and seen < 15, "Immich was unreachable for %.1f s (run) / %.1f s (client)" % (
            reported, seen)
        assert _unit(host, old) == ["inactive", "disabled"], "the previous proxy still runs or starts at boot"
        assert _unit(host, new) == ["active", "enabled"]
        listening = sh(host, "ss -Hltnp 'sport = :%d'" % proxy.port).stdout
        assert '"%s"' % KINDS[other]["processes"][0] in listening and '"%s"' % traits["processes"][0] not in (
            listening), "port %d is not %s's: %s" % (proxy.port, new, listening)
        assert_serving(proxy, host, traits)
        assert sh(host, "test -e %s" % (STATE % kind), check=False).rc != 0, (
            "the previous kind still counts as deployed here")

        # and back: the scenario's own settings hand the ports to the previous kind again
        with Prober(proxy) as probe:
            result = converge()
        figures.add("switches")
        figures.worst("switch_outage_s", probe.longest_outage())
        assert _reported_outage(result.output) < 15
        assert _unit(host, new) == ["inactive", "disabled"] and _unit(host, old) == ["active", "enabled"]
        assert tree_digest(host, traits["config_dirs"]) == before[0], (
            "after switching back, the config files differ from before the switch")
        assert_serving(proxy, host, traits)
        figures.add("faults_recovered")
    finally:
        sh(host, "rm -f %s; systemctl daemon-reload; systemctl disable --now %s; systemctl enable --now %s"
           % (start_fails, new, old), check=False)
        sh(host, "rm -f %s; DEBIAN_FRONTEND=noninteractive apt-get purge -qy %s >/dev/null; rm -rf %s"
           % (STATE % other, " ".join(KINDS[other]["processes"]), " ".join(
               d for d in KINDS[other]["config_dirs"] if d not in traits["config_dirs"])), check=False)
