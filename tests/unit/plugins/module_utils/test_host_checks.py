# SPDX-License-Identifier: GPL-3.0-or-later
"""Checks the settings module makes on the proxy host before a deploy: its ports free, its files there."""
from __future__ import annotations

import os

import pytest

from ansible_collections.homelab.immich_proxy.plugins.module_utils._proxies import (
    PROXIES,
    file_problems,
    listeners,
    port_problems,
)

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"


def _row(port, state, inode):
    return ("   0: 00000000:%04X 00000000:0000 %s 00000000:00000000 00:00000000 00000000     0        0 %d 1\n"
            % (port, state, inode))


def fake_proc(tmp_path, sockets, processes):
    """A /proc with TCP listeners (port, state, inode) and processes pid -> (comm, cgroup, socket inodes)."""
    proc = tmp_path / "proc"
    (proc / "net").mkdir(parents=True)
    (proc / "net" / "tcp").write_text(HEADER + "".join(_row(*socket) for socket in sockets))
    (proc / "net" / "tcp6").write_text(HEADER)
    for pid, (comm, cgroup, inodes) in processes.items():
        fd = proc / str(pid) / "fd"
        fd.mkdir(parents=True)
        (proc / str(pid) / "comm").write_text(comm + "\n")
        (proc / str(pid) / "cgroup").write_text("0::%s\n" % cgroup)
        for number, inode in enumerate(inodes):
            os.symlink("socket:[%d]" % inode, str(fd / str(number)))
    return str(proc)


def test_listeners_names_the_process_and_unit_of_each_listening_port(tmp_path):
    proc = fake_proc(tmp_path, [(443, "0A", 11), (80, "0A", 12), (8443, "01", 13)], {
        10: ("nginx", "/system.slice/nginx.service", [11, 12]),
        20: ("python3", "/user.slice/user-0.slice/session-1.scope", [13]),
    })
    expected = {443: [(10, "nginx", "nginx.service")], 80: [(10, "nginx", "nginx.service")]}
    assert listeners({80, 443, 8443}, proc=proc) == expected


SETTINGS = {"http_port": 80, "https_port": 8443, "tls": "selfsigned"}


def test_a_port_another_program_holds_is_named_with_its_variable_and_the_program():
    holders = {8443: [(1494, "python3", None)], 80: [(7, "nginx", "nginx.service")]}
    assert port_problems(PROXIES["nginx"], SETTINGS, holders) == [
        "immich_proxy_https_port 8443 is already in use by python3 (pid 1494): stop that program or choose "
        "another port (nothing was changed)"]


@pytest.mark.parametrize("kind", ["nginx", "apache", "caddy", "traefik"])
def test_a_port_the_proxys_own_service_holds_is_free_for_it_but_not_for_another_kind(kind):
    """Its own service keeps the sockets across a reload; another kind's service must be stopped first."""
    unit = PROXIES[kind].service + ".service"
    assert port_problems(PROXIES[kind], SETTINGS, {8443: [(9, "x", unit)]}) == []
    other = "nginx" if kind != "nginx" else "caddy"
    assert port_problems(PROXIES[other], SETTINGS, {8443: [(9, "x", unit)]}) == [
        "immich_proxy_https_port 8443 is already in use by x (pid 9, %s): stop that program or choose another "
        "port (nothing was changed)" % unit]


def test_a_listener_whose_process_cannot_be_seen_still_holds_its_port(tmp_path):
    proc = fake_proc(tmp_path, [(8443, "0A", 21)], {})
    holders = listeners({8443}, proc=proc)
    assert holders == {8443: [(0, "a process this check cannot see", None)]}
    assert port_problems(PROXIES["nginx"], SETTINGS, holders) == [
        "immich_proxy_https_port 8443 is already in use by a process this check cannot see: stop that program or "
        "choose another port (nothing was changed)"]


def test_a_unit_outside_the_collection_is_named():
    holders = {80: [(5, "lighttpd", "lighttpd.service")]}
    assert port_problems(PROXIES["traefik"], SETTINGS, holders) == [
        "immich_proxy_http_port 80 is already in use by lighttpd (pid 5, lighttpd.service): stop that program "
        "or choose another port (nothing was changed)"]


def test_the_https_port_is_not_needed_without_tls_and_a_tunnel_needs_no_port():
    holders = {8443: [(1, "python3", None)], 80: [(1, "python3", None)]}
    assert port_problems(PROXIES["nginx"], dict(SETTINGS, tls="off"), holders) == [
        "immich_proxy_http_port 80 is already in use by python3 (pid 1): stop that program or choose another "
        "port (nothing was changed)"]
    assert port_problems(PROXIES["cloudflared"], SETTINGS, holders) == []


def test_missing_unreadable_and_wrong_files_are_named_without_their_content(tmp_path):
    cert = tmp_path / "cert.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    key = tmp_path / "key.pem"
    key.write_text("not a key but a secret: hunter2\n")
    settings = {"tls": "provided", "tls_cert_path": str(cert), "tls_key_path": str(key),
                "backend_ca_file": str(tmp_path / "nope.pem"), "acme_ca_file": str(tmp_path / "unused.pem"),
                "backends": [{"scheme": "https"}]}
    problems = file_problems(settings)
    assert problems == [
        "immich_proxy_tls_key %s is not a PEM private key (nothing was changed)" % key,
        "immich_proxy_backend_ca_file %s does not exist on this host (the file must be on the proxy host; "
        "nothing was changed)" % (tmp_path / "nope.pem")]
    assert "hunter2" not in " ".join(problems)
    # the role's own pair (selfsigned, acme) is made by the role, and a CA file nothing uses (no https backend,
    # no ACME) is not read: not looked for
    assert file_problems(dict(settings, tls="selfsigned", backends=[{"scheme": "http"}])) == []


def test_a_file_that_cannot_be_read_is_named_with_the_reason(tmp_path, monkeypatch):
    cert = tmp_path / "cert.pem"
    cert.write_text("x")

    def refuse(path, mode="r", *args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr("builtins.open", refuse)
    assert file_problems({"tls": "off", "backend_ca_file": str(cert), "backends": [{"scheme": "https"}]}) == [
        "immich_proxy_backend_ca_file %s cannot be read: Permission denied (nothing was changed)" % cert]
