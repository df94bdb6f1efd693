# SPDX-License-Identifier: GPL-3.0-or-later
"""A run that cannot succeed leaves the running proxy and its files as they were."""
from __future__ import annotations

import json
import os
import re
import time

import pytest

from harness import ROOT, ansible_bin, ansible_env, assert_serving, assert_untouched, run, sh, snapshot

# The proxy's own variables (a smuggled directive; values of the wrong type) come from the traits of the kind.
ROLE_VARIABLE = "role-variable"
TYPE_ERRORS = "type-errors"
CONTRACT_TYPE_ERRORS = {"immich_proxy_timeout": "soon", "immich_proxy_hsts": "maybe", "immich_proxy_http_port": 80.5,
                        "immich_proxy_public_url": "https://photos.immich.test/immich"}


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
    (TYPE_ERRORS, None),
], ids=["sub-path", "directive-injection", "every-problem-at-once", "role-variable-injection",
        "type-errors-with-the-rest"])
def test_bad_settings_fail_with_the_variable_named_and_change_nothing(
        proxy, host, traits, converge, figures, bad, words):
    if bad == ROLE_VARIABLE:
        bad = traits["injection_vars"]
        words = list(bad)
    elif bad == TYPE_ERRORS:
        # Type errors of the contract and of the role, and a problem that is not a type error, in one run.
        bad = dict(CONTRACT_TYPE_ERRORS, **traits["type_error_vars"])
        words = list(bad) + ["sub-path"]
    before = snapshot(host, traits)
    figures.add("hostile_inputs", len(bad))
    result = converge(bad, check=False)
    assert result.returncode != 0, "the role accepted %r" % bad
    for word in words:
        assert word in result.output, "the failure does not say %r:\n%s" % (word, result.output[-2500:])
    assert_untouched(proxy, host, traits, before)


@pytest.mark.disruptive
def test_a_config_the_proxy_rejects_is_rolled_back_and_the_old_one_keeps_serving(proxy, host, traits, converge):
    applies = traits.get("broken_config_applies")
    if applies and sh(host, applies, check=False).rc != 0:
        pytest.skip("does not apply to this host: %s fails (the tunnel host beside it runs this test)" % applies)
    before = snapshot(host, traits)
    result = converge(traits["broken_config_vars"], check=False)
    assert result.returncode != 0, "the proxy accepted a broken config"
    assert traits["broken_config_message"] in result.output, result.output[-2500:]
    # restored after a test in place, or never swapped in after a precheck (Traefik)
    assert "the previous configuration is still in place" in result.output, result.output[-2500:]
    assert_untouched(proxy, host, traits, before)
    leftovers = sh(host, "find %s -name '*.immich-proxy-*'" % " ".join(traits["config_dirs"])).stdout
    assert not leftovers.strip(), "staging files were left behind: %s" % leftovers


@pytest.mark.disruptive
@pytest.mark.needs(strategy="watch")
def test_files_the_running_proxy_does_not_take_are_rolled_back(proxy, host, traits, converge):
    """A proxy that applies files as they are written (Traefik) must be seen serving them, or they go back."""
    converge()  # the scenario as it is, so that nothing but the change below is due (no restart)
    before = snapshot(host, traits)
    # a frozen proxy cannot take anything; the candidate itself is fine (a throwaway instance accepts it)
    sh(host, "systemctl kill --signal=SIGSTOP %s" % traits["service"])
    try:
        result = converge(traits["live_change_vars"], check=False)
    finally:
        sh(host, "systemctl kill --signal=SIGCONT %s" % traits["service"])
    assert result.returncode != 0, "the run passed although the running proxy could not take the new files"
    assert "did not take the new" in result.output and "the previous configuration is still in place" in (
        result.output), result.output[-2500:]
    assert_untouched(proxy, host, traits, before)


@pytest.mark.disruptive
def test_a_new_timeout_is_taken_without_a_restart_or_one_said_before_it_happens(proxy, host, traits, converge):
    """A restart drops open uploads: only where the proxy cannot do otherwise, and the run says so first."""
    converge()
    main_pid = "systemctl show --property=MainPID --value %s" % traits["service"]
    before = sh(host, main_pid).stdout.strip()
    try:
        result = converge({"immich_proxy_timeout": 700})
        after = sh(host, main_pid).stdout.strip()
        said = result.output.find("restarts to take its new configuration")
        if traits["timeout_change_restarts"]:
            assert after != before, "the proxy was not restarted, yet its timeouts only load at start"
            assert 0 <= said < result.output.find("RUNNING HANDLER"), (
                "the restart was not announced before it happened:\n%s" % result.output[-3000:])
        else:
            assert after == before, "the proxy was restarted (main PID %s -> %s) for a new timeout" % (before, after)
            assert said < 0, "a restart was announced for a new timeout:\n%s" % result.output[-3000:]
        assert_serving(proxy, host, traits)
    finally:
        converge()


@pytest.mark.disruptive
def test_a_start_file_changed_after_the_proxy_started_gets_it_restarted_said_first(proxy, host, traits, converge):
    """A run that wrote a new binary, unit or plugin and failed before the restart left the old one running: the
    next run writes nothing new, and must still restart it (and say so first)."""
    if traits["start_files_touch"] is None:
        pytest.skip("does not apply: the proxy reads every file again when it reloads (trait start_files_touch is "
                    "None)")
    converge()
    main_pid = "systemctl show --property=MainPID --value %s" % traits["service"]
    before = sh(host, main_pid).stdout.strip()
    sh(host, traits["start_files_touch"])
    result = converge()
    after = sh(host, main_pid).stdout.strip()
    assert after != before, "the proxy kept running (main PID %s) on what it read before the file changed" % before
    assert "started (left so by a run that failed before the restart, or by hand): " in result.output, (
        result.output[-3000:])
    assert_serving(proxy, host, traits)
    converge()
    assert sh(host, main_pid).stdout.strip() == after, "the run after the restart restarted the proxy again"


@pytest.mark.disruptive
def test_a_start_file_the_proxy_cannot_load_is_refused_before_it_is_in_place(
        proxy, host, traits, converge, tmp_path):
    """A new plugin that does not compile must not replace the working one: the proxy would load it only at its
    next start, and then serve nothing."""
    broken = traits["broken_start_file"]
    if broken is None:
        pytest.skip("does not apply: the role checks no file the proxy loads only when it starts (trait "
                    "broken_start_file is None)")
    converge()
    source = os.path.join(ROOT, broken["source"])
    sources = []
    for name in sorted(os.listdir(source)):
        with open(os.path.join(source, name), encoding="utf-8") as handle:
            text = handle.read()
        if name == broken["file"]:
            text += broken["append"]
        (tmp_path / name).write_text(text, encoding="utf-8")
        sources.append(str(tmp_path / name))
    installed = "find %s -type f -exec sha1sum {} + | sort" % broken["path"]
    files = sh(host, installed).stdout
    before = snapshot(host, traits)
    result = converge({broken["var"]: sources}, check=False)
    assert result.returncode != 0, "the role put a %s that does not load in place" % broken["file"]
    assert broken["message"] in result.output, result.output[-2500:]
    assert "the previous configuration is still in place" in result.output, result.output[-2500:]
    assert "restarts to use it" not in result.output, result.output[-2500:]
    assert sh(host, installed).stdout == files, "the installed files changed"
    assert_untouched(proxy, host, traits, before)


@pytest.mark.disruptive
@pytest.mark.needs(listens=True)
def test_a_release_that_does_not_match_its_published_checksum_is_refused(proxy, host, traits, converge):
    tampered = traits["tampered_release"]
    if tampered is None:
        pytest.skip("does not apply: the role installs no downloaded release (trait tampered_release is None)")
    converge()
    sh(host, tampered["script"])
    before = snapshot(host, traits)
    binary = sh(host, "sha256sum %s" % tampered["binary"]).stdout
    result = converge(tampered["vars"], check=False)
    assert result.returncode != 0, "a release whose checksum does not match was accepted"
    assert "did not match" in result.output, result.output[-2500:]
    assert sh(host, "sha256sum %s" % tampered["binary"]).stdout == binary, "the installed binary changed"
    assert_untouched(proxy, host, traits, before)


@pytest.mark.disruptive
def test_a_binary_from_the_controller_replaced_on_the_host_is_put_back_though_its_digest_is_on_record(
        kind, proxy, host, traits, converge):
    """A re-run compares the controller's digest with the one recorded on the host (not the binary itself): a
    binary changed since the record was written must not be vouched for by it."""
    host_vars = json.loads(run([ansible_bin("ansible-inventory"), "-i", converge.inventory,
                                "--host", converge.container], env=ansible_env()).stdout)
    if host_vars.get("%s_install" % kind) != "binary":
        pytest.skip("does not apply: %s_install is not binary on this host" % kind)
    record = "/var/lib/immich-proxy/%s.binary.sha1" % kind
    assert host.file(record).exists, "no record of the binary's digest: every run would hash it on the host"
    recorded, binary = host.file(record).content_string.split()
    assert sh(host, "sha1sum %s" % binary).stdout.split()[0] == recorded
    # the same size, one byte else, moved in as a new file (the running service keeps the old one open)
    sh(host, f"cp -p {binary} {binary}.new && printf x | dd of={binary}.new bs=1 seek=4096 conv=notrunc "
             f"status=none && mv {binary}.new {binary}")
    assert sh(host, "sha1sum %s" % binary).stdout.split()[0] != recorded
    converge()
    assert sh(host, "sha1sum %s" % binary).stdout.split()[0] == recorded, "the changed binary was left in place"
    assert host.file(record).content_string.split() == [recorded, binary]
    # and dated after the binary put back, so that the next run trusts it rather than hash the binary every time
    changed, dated = (float(sh(host, "stat -c %%.9%s %s" % pair).stdout) for pair in (("Z", binary), ("Y", record)))
    assert changed < dated, "the record is older than the binary it speaks for: every run would hash the binary"
    assert_serving(proxy, host, traits)


@pytest.mark.disruptive
def test_site_yml_serves_a_host_with_a_kind_outside_the_group_and_fails_one_in_it_without(host, converge, tmp_path):
    """No host is skipped silently: a kind is enough to be served, the group without a kind is an error."""
    host_vars = json.loads(run([ansible_bin("ansible-inventory"), "-i", converge.inventory,
                                "--host", converge.container], env=ansible_env()).stdout)
    inventory = {"all": {
        "hosts": {converge.container: host_vars},
        # a container that does not exist: were the host ever connected to, that fails and touches nothing
        "children": {"immich_proxies": {"hosts": {"immich-proxy-without-kind": {
            "ansible_connection": "community.docker.docker", "ansible_host": "immich-proxy-no-such-container"}}}},
    }}
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps(inventory))
    result = run([ansible_bin("ansible-playbook"), "-i", str(path), os.path.join(ROOT, "playbooks", "site.yml")],
                 check=False, timeout=900, env=ansible_env())
    output = result.stdout + result.stderr
    assert result.returncode != 0, "a host in immich_proxies without immich_proxy_kind must fail the run"
    assert "immich_proxy_kind '(unset)' on immich-proxy-without-kind" in output, output[-3000:]
    recap = output.split("PLAY RECAP")[-1]
    served = re.search(r"^%s\s*:\s*ok=(\d+)\s+changed=(\d+).*failed=(\d+)" % re.escape(converge.container), recap,
                       re.MULTILINE)
    assert served and int(served.group(1)) > 10 and served.group(3) == "0", (
        "the host with a kind outside immich_proxies was not served:\n%s" % output[-3000:])
    assert "Serve Immich through" in output, output[-3000:]


@pytest.mark.disruptive
@pytest.mark.needs(listens=True)
def test_a_hand_edit_loaded_by_hand_is_replaced_by_the_next_run(proxy, host, traits, converge):
    """The run rewrites the file back to what the proxy loaded last time it ran: it must still reload."""
    sh(host, traits["hand_edit"])
    for _attempt in range(50):
        if "x-hand-edited" in proxy.request("GET", "/api/server/ping")[1]:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the hand edit never served; the test cannot show anything")
    result = converge()
    assert "x-hand-edited" not in proxy.request("GET", "/api/server/ping")[1], (
        "the role rewrote its file but the proxy still serves the hand-edited config:\n%s" % result.output[-2000:])
