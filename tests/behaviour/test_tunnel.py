# SPDX-License-Identifier: GPL-3.0-or-later
"""A tunnel (cloudflared): nothing listens on the host, so what counts is on the host itself.

STAND-IN: the scenario runs tests/cloudflared_standin/cloudflared-test-standin
as cloudflared, with fake secrets: no cloudflared binary can be had here and
Cloudflare's edge cannot be reached. These tests read what the role leaves
(files, modes, owners, the unit, the process and its command line), what the
running service says on its metrics port, and Ansible's own output; none of
them needs the edge.
"""
from __future__ import annotations

import base64
import json

import pytest

from harness import ROOT, sh

pytestmark = pytest.mark.needs(listens=False)

CONFIG = "/etc/cloudflared/config.yml"
STANDIN = ROOT + "/tests/cloudflared_standin"


def _config(host):
    text = sh(host, "cat %s" % CONFIG).stdout
    return json.loads("\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))


def _local(host):
    return "tunnel" in _config(host)


def _secret_path(host):
    return "/etc/cloudflared/credentials.json" if _local(host) else "/etc/cloudflared/token"


def _said_before_the_restart(output):
    """The run announced the restart before anything could restart cloudflared: the handler, or the serve step
    that makes sure the service runs what is on disk (where only the binary or unit changed)."""
    said = output.find("cloudflared restarts to take its new configuration (it cannot reload)")
    points = [output.find(mark) for mark in ("RUNNING HANDLER", "Make sure the proxy runs the applied config")]
    points = [point for point in points if point >= 0]
    return 0 <= said < min(points) if points else False


def _main_pid(host):
    return sh(host, "systemctl show --property=MainPID --value cloudflared").stdout.strip()


def _secret_words(host):
    """The secret parts of the scenario's fake secret on this host, as they would appear in any output."""
    if _local(host):
        with open(STANDIN + "/credentials.json") as handle:
            return [json.load(handle)["TunnelSecret"]]
    with open(STANDIN + "/token") as handle:
        token = handle.read().strip()
    return [token, json.loads(base64.b64decode(token))["s"]]


def test_cloudflared_runs_as_its_own_user_and_its_secret_is_a_private_file_not_an_argument(host):
    pid = _main_pid(host)
    assert pid != "0", "cloudflared is not running"
    assert sh(host, "ps -o user= -p %s" % pid).stdout.strip() == "cloudflared"
    secret = host.file(_secret_path(host))
    assert (secret.user, secret.group, secret.mode) == ("cloudflared", "cloudflared", 0o600), (
        "%s is %s:%s %o" % (secret.path, secret.user, secret.group, secret.mode))
    denied = sh(host, "runuser -u nobody -- cat %s" % secret.path, check=False)
    assert denied.rc != 0 and "Permission denied" in denied.stderr, "nobody can read the secret: %r" % denied.stderr
    directory = host.file("/etc/cloudflared")
    assert (directory.user, directory.group, directory.mode) == ("root", "cloudflared", 0o750)
    config = host.file(CONFIG)
    assert (config.user, config.group, config.mode) == ("root", "cloudflared", 0o640)
    cmdline = sh(host, "tr '\\0' ' ' < /proc/%s/cmdline" % pid).stdout
    for word in _secret_words(host):
        assert word not in cmdline, "the tunnel's secret is on cloudflared's command line"
    assert "--token" not in cmdline.replace("--token-file", ""), cmdline
    # the other tunnel kind's secret is not left behind
    other = "/etc/cloudflared/token" if _local(host) else "/etc/cloudflared/credentials.json"
    assert not host.file(other).exists, "%s was left behind" % other


def test_the_unit_passes_systemd_analyze_verify_and_is_not_cloudflares_auto_updating_one(host):
    result = sh(host, "systemd-analyze verify /etc/systemd/system/cloudflared.service 2>&1", check=False)
    assert result.rc == 0, result.stdout
    assert "cloudflared" not in result.stdout, "systemd-analyze complains about the unit:\n%s" % result.stdout
    assert not host.file("/etc/systemd/system/cloudflared-update.timer").exists
    unit = sh(host, "systemctl cat cloudflared").stdout
    assert "User=cloudflared" in unit and "NoNewPrivileges=true" in unit and "CapabilityBoundingSet=\n" in unit


def test_the_running_tunnel_serves_the_ingress_on_disk_with_immichs_rule_first_and_a_catch_all_last(host):
    live = json.loads(sh(host, "curl -fsS http://127.0.0.1:20241/config").stdout)
    config = _config(host)
    if not _local(host):
        assert "ingress" not in config, "a remotely managed tunnel's config.yml holds ingress rules it ignores"
        assert config["token-file"] == "/etc/cloudflared/token"
        return
    assert live["config"]["ingress"] == config["ingress"]
    rules = config["ingress"]
    assert rules[0] == {"hostname": "photos.tunnel.immich.test", "service": "http://127.0.0.1:2283"}, rules[0]
    assert rules[-1] == {"service": "http_status:404"}
    assert config["originRequest"]["noTLSVerify"] is False
    assert config["credentials-file"] == "/etc/cloudflared/credentials.json"


@pytest.mark.disruptive
def test_cloudflared_restarts_only_for_a_change_and_the_run_says_so_first(host, converge):
    converge()
    before = _main_pid(host)
    converge()
    assert _main_pid(host) == before, "a run that changed nothing restarted cloudflared"
    try:
        result = converge({"cloudflared_loglevel": "warn"})
        after = _main_pid(host)
        assert after not in (before, "0"), "cloudflared was not restarted for a new config"
        assert _said_before_the_restart(result.output), result.output[-3000:]
        assert _config(host)["loglevel"] == "warn"
    finally:
        converge()


@pytest.mark.disruptive
def test_a_hand_edit_is_replaced_by_the_next_run_and_cloudflared_restarted_on_it(host, converge):
    sh(host, "sed -i 's/\"loglevel\": \"info\"/\"loglevel\": \"debug\"/' %s && systemctl restart cloudflared" % CONFIG)
    assert _config(host)["loglevel"] == "debug", "the hand edit did not happen; the test shows nothing"
    edited = _main_pid(host)
    converge()
    assert _config(host)["loglevel"] == "info"
    assert _main_pid(host) not in (edited, "0"), "cloudflared still runs the hand-edited config"


@pytest.mark.disruptive
def test_secrets_never_reach_ansibles_output_even_verbose_with_diff(host, converge):
    """A new secret is written (so the run handled it), and neither it nor the old one is ever printed."""
    old_words = _secret_words(host)
    if _local(host):
        with open(STANDIN + "/credentials.json") as handle:
            credentials = json.load(handle)
        credentials["TunnelSecret"] = base64.b64encode(b"a second test-only fake tunnel secret!!").decode()
        new = {"cloudflared_credentials": json.dumps(credentials)}
        new_words = [credentials["TunnelSecret"]]
    else:
        payload = json.loads(base64.b64decode(_secret_words(host)[0]))
        payload["s"] = base64.b64encode(b"a second test-only fake token secret!!!!").decode()
        token = base64.b64encode(json.dumps(payload).encode()).decode()
        new = {"cloudflared_token": token}
        new_words = [token, payload["s"]]
    try:
        result = converge(new, args=["-vvv", "--diff"])
        assert any(word in sh(host, "cat %s" % _secret_path(host)).stdout for word in new_words), (
            "the new secret was not written; the test shows nothing")
        for word in old_words + new_words:
            assert word not in result.output, "a secret reached Ansible's output"
        assert "(secret:" in result.output, "the diff does not mark the secret file's change"
    finally:
        result = converge(args=["-vvv", "--diff"])
    for word in old_words + new_words:
        assert word not in result.output, "a secret reached Ansible's output"


@pytest.mark.disruptive
@pytest.mark.parametrize("bad, words", [
    ({"immich_proxy_backends": ["http://127.0.0.1:2283", "http://127.0.0.1:2284"], "immich_proxy_tls": "selfsigned",
      "immich_proxy_cloudflare_plan": None},
     ["immich_proxy_backends", "one origin", "immich_proxy_tls", "immich_proxy_cloudflare_plan"]),
    ({"cloudflared_tunnel_id": "11111111-2222-4333-8444-555555555555"},
     ["cloudflared_credentials", "another tunnel"]),
], ids=["pool-tls-and-no-plan", "credentials-of-another-tunnel"])
def test_what_a_tunnel_cannot_do_is_refused_with_the_variable_named_and_nothing_changes(
        host, converge, traits, bad, words):
    if "cloudflared_tunnel_id" in bad and not _local(host):
        bad = {"cloudflared_token": "bm90IGEgdG9rZW4gYXQgYWxsLCBqdXN0IHNvbWUgdGVzdCB0ZXh0IGluIGJhc2U2NA=="}
        words = ["cloudflared_token", "is not a tunnel token"]
    files = sh(host, "sha256sum /etc/cloudflared/* /etc/systemd/system/cloudflared.service").stdout
    pid = _main_pid(host)
    result = converge(bad, check=False)
    assert result.returncode != 0, "the role accepted %r" % bad
    for word in words:
        assert word in result.output, "the failure does not say %r:\n%s" % (word, result.output[-2500:])
    for secret in bad.get("cloudflared_token", ""), *_secret_words(host):
        assert not secret or secret not in result.output, "a secret reached Ansible's output"
    assert sh(host, "sha256sum /etc/cloudflared/* /etc/systemd/system/cloudflared.service").stdout == files
    assert _main_pid(host) == pid
    assert sh(host, traits["alive"], check=False).rc == 0


def test_an_upload_limit_over_the_plans_is_warned_about(converge):
    result = converge({"immich_proxy_max_body_size": "50000M"}, check_mode=True)
    assert "Cloudflare's free plan cuts request bodies at 100M" in result.output, result.output[-3000:]


@pytest.mark.disruptive
def test_a_binary_from_the_controller_replaces_the_package_with_a_restart_said_first(host, converge):
    """cloudflared_install: binary (to /usr/local/bin), then back to the scenario's apt or .deb install."""
    def running_binary():
        return sh(host, "ps -o args= -p %s" % _main_pid(host)).stdout.split()[1]

    converge()
    packaged, before = running_binary(), _main_pid(host)
    assert packaged == "/usr/bin/cloudflared", "the scenario's package install runs %s" % packaged
    try:
        result = converge({"cloudflared_install": "binary",
                           "cloudflared_binary_src": STANDIN + "/cloudflared-test-standin"})
        assert running_binary() == "/usr/local/bin/cloudflared"
        assert _main_pid(host) not in (before, "0")
        assert _said_before_the_restart(result.output), result.output[-3000:]
        binary = host.file("/usr/local/bin/cloudflared")
        assert (binary.user, binary.group, binary.mode) == ("root", "root", 0o755)
    finally:
        converge()
    assert running_binary() == "/usr/bin/cloudflared"
    left = host.file("/usr/local/bin/cloudflared")
    assert not left.exists or left.is_symlink, "the binary install's /usr/local/bin/cloudflared was left behind"


def _all_secret_words():
    with open(STANDIN + "/credentials.json") as handle:
        words = [json.load(handle)["TunnelSecret"]]
    with open(STANDIN + "/token") as handle:
        token = handle.read().strip()
    return words + [token, json.loads(base64.b64decode(token))["s"]]


@pytest.mark.disruptive
def test_switching_the_tunnel_kind_replaces_the_secret_file_and_prints_neither_secret(host, converge):
    was_local = _local(host)
    if was_local:
        switch = {"cloudflared_tunnel_id": None, "cloudflared_credentials_src": None, "cloudflared_extra_ingress": [],
                  "cloudflared_token_src": STANDIN + "/token"}
        now, gone = "/etc/cloudflared/token", "/etc/cloudflared/credentials.json"
    else:
        switch = {"cloudflared_tunnel_id": "6ff42ae2-765d-4adf-8112-31c55c1551ef", "cloudflared_token_src": None,
                  "cloudflared_credentials_src": STANDIN + "/credentials.json"}
        now, gone = "/etc/cloudflared/credentials.json", "/etc/cloudflared/token"
    try:
        result = converge(switch, args=["-vvv", "--diff"])
        assert _local(host) != was_local
        assert host.file(now).mode == 0o600 and not host.file(gone).exists
        for word in _all_secret_words():
            assert word not in result.output, "a secret reached Ansible's output"
        assert result.output.count("(secret:") >= 2, "the diff does not mark both secret files"
    finally:
        result = converge(args=["-vvv", "--diff"])
    assert _local(host) == was_local and not host.file(now).exists
    for word in _all_secret_words():
        assert word not in result.output, "a secret reached Ansible's output"
