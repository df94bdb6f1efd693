# SPDX-License-Identifier: GPL-3.0-or-later
"""What the role leaves on the proxy's host, read through testinfra: service, sockets, key files."""
from __future__ import annotations

import re

import pytest

from harness import sh


def test_the_proxy_service_is_enabled_and_running(host, traits):
    service = host.service(traits["service"])
    assert service.is_running, "%s is not running" % traits["service"]
    assert service.is_enabled, "%s would not start at boot" % traits["service"]


@pytest.mark.needs(listens=True)
def test_the_proxy_listens_on_the_contracts_ports(host, proxy):
    ports = [proxy.http_port] + ([proxy.https_port] if proxy.scheme == "https" else [])
    listening = {port: any(host.socket("tcp://%s:%d" % (address, port)).is_listening
                           for address in ("0.0.0.0", "::")) for port in ports}
    assert all(listening.values()), "not listening on every port of the contract: %r" % listening


def test_python3_apt_came_without_recommends_nothing_else_needs(host):
    """The apt module needs python3-apt; the role installs it without apt's recommends (iso-codes, lsb-release):
    each is absent, or something installed depends on it."""
    def status(package):
        return sh(host, "dpkg-query -W -f='${db:Status-Status}' %s" % package, check=False).stdout.strip()

    if status("python3-apt") != "installed":
        pytest.skip("no python3-apt here: the role found every package it needs installed and ran no apt task")
    recommends = re.findall(r"^\s*\|?Recommends: <?([a-z0-9][a-z0-9.+-]*)",
                            sh(host, "apt-cache depends python3-apt").stdout, re.M)
    assert recommends, "apt-cache names no recommends of python3-apt: this test has nothing to look at"
    unneeded = []
    for package in recommends:
        if status(package) != "installed":
            continue
        users = sh(host, "apt-cache rdepends --installed --no-recommends --no-suggests --no-conflicts --no-breaks "
                         "--no-replaces --no-enhances %s" % package).stdout.split("Reverse Depends:", 1)[-1].split()
        if not [user for user in users if user.strip("|") != package]:
            unneeded.append(package)
    assert not unneeded, "installed though nothing installed depends on them (python3-apt's recommends): %s" % (
        ", ".join(unneeded))


def _key_mode(traits):
    """0600, or 0640 where the proxy reads the key as its own user (its group may read, no one else)."""
    return 0o600 if traits["key_group"] == "root" else 0o640


def test_the_private_key_is_readable_by_root_and_the_proxy_only(host, pytestconfig, traits):
    path = pytestconfig.getoption("tls_key_path")
    if not path:
        pytest.skip("the scenario serves plain HTTP: there is no key")
    key = host.file(path)
    if key.is_symlink:
        key = host.file(key.linked_to)
    assert key.exists, "%s is missing" % path
    owner = ("root", traits["key_group"])
    assert (key.user, key.group) == owner, "%s belongs to %s:%s, not %s:%s" % ((path, key.user, key.group) + owner)
    assert key.mode & ~_key_mode(traits) & 0o777 == 0, "%s has mode %o: others can read the private key" % (
        path, key.mode)
    others = sh(host, "runuser -u nobody -- cat %s" % path, check=False)
    assert others.rc != 0, "user nobody can read %s" % path


@pytest.mark.disruptive
def test_a_run_makes_a_loosened_private_key_private_again(host, pytestconfig, converge, traits):
    path = pytestconfig.getoption("tls_key_path")
    if not path or host.file(path).is_symlink:
        pytest.skip("no key of the role's own to look after (plain HTTP, or certbot's files)")
    sh(host, "chmod 0644 %s" % path)
    converge()
    assert host.file(path).mode == _key_mode(traits), "the run left %s at mode %o" % (path, host.file(path).mode)
