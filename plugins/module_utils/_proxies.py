# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: homelab.immich_proxy contributors
"""One adapter per proxy: how to test a config, reload it, and ask what is live.

The modules (apply_config, reload_service) are proxy-neutral; everything they
need to know about a proxy's binary and service manager is asked of an adapter.
"""
from __future__ import annotations

import hashlib
import os
import time


class ProxyError(Exception):
    """A proxy command failed; the message says what the user should look at."""


class Proxy:
    """Base adapter. ``module`` is an AnsibleModule, used only for run_command."""

    name = None
    service = None
    binary = None

    def __init__(self, module):
        self.module = module

    # -- the config --------------------------------------------------------
    def test_command(self):
        raise NotImplementedError

    def test(self):
        """Validate the whole live config tree in context; raise ProxyError with the proxy's words."""
        rc, out, err = self.module.run_command(self.test_command())
        if rc != 0:
            raise ProxyError("%s rejected the configuration (%s): %s"
                             % (self.name, " ".join(self.test_command()), (err or out).strip()))
        return (err or out).strip()

    def config_digest(self, watch=()):
        """SHA-256 over the effective configuration and the watched files (certificates)."""
        digest = hashlib.sha256(self.effective_config().encode())
        for path in sorted(watch):
            digest.update(b"\0" + path.encode() + b"\0")
            try:
                with open(path, "rb") as handle:
                    digest.update(handle.read())
            except OSError:
                digest.update(b"<missing>")
        return digest.hexdigest()

    def effective_config(self):
        raise NotImplementedError

    def installed(self):
        return self.module.get_bin_path(self.binary) is not None

    # -- the service -------------------------------------------------------
    def systemctl(self, *args, check=True):
        argv = [self.module.get_bin_path("systemctl", required=True)] + list(args)
        rc, out, err = self.module.run_command(argv)
        if check and rc != 0:
            raise ProxyError("'%s' failed: %s (see 'journalctl -u %s')"
                             % (" ".join(["systemctl"] + list(args)), (err or out).strip(), self.service))
        return rc, out.strip()

    def main_pid(self):
        rc, out = self.systemctl("show", "--property=MainPID", "--value", self.service, check=False)
        try:
            pid = int(out)
        except ValueError:
            return 0
        return pid if rc == 0 else 0

    def is_running(self):
        rc, out = self.systemctl("is-active", self.service, check=False)
        return rc == 0 and out == "active"

    def start(self):
        self.systemctl("enable", self.service, check=False)
        self.systemctl("start", self.service)
        if not self.wait_until(self.is_running, 15):
            raise ProxyError("%s did not start (see 'journalctl -u %s')" % (self.service, self.service))

    def generation(self):
        """Something that changes each time the service loads its config."""
        raise NotImplementedError

    def reload(self):
        """Graceful reload, then proof that the service runs the new config."""
        before = self.generation()
        self.systemctl("reload", self.service)
        if not self.wait_until(lambda: self.generation_moved(before), 20):
            raise ProxyError("%s was asked to reload but still runs its previous configuration "
                             "(see 'journalctl -u %s')" % (self.service, self.service))

    def generation_moved(self, before):
        return self.generation() != before

    @staticmethod
    def wait_until(predicate, seconds):
        deadline = time.monotonic() + seconds
        while True:
            if predicate():
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)


def _children(pid):
    """PIDs whose parent is ``pid``, from /proc (Linux)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(entry))
    return found


class Nginx(Proxy):
    """nginx: ``nginx -t`` tests, ``nginx -T`` shows the effective config, workers mark a reload."""

    name = "nginx"
    service = "nginx"
    binary = "nginx"

    def test_command(self):
        return [self.module.get_bin_path("nginx", required=True), "-t", "-q"]

    def effective_config(self):
        rc, out, err = self.module.run_command([self.module.get_bin_path("nginx", required=True), "-T", "-q"])
        if rc != 0:
            raise ProxyError("nginx -T failed: %s" % (err or out).strip())
        return out

    def generation(self):
        # A reload makes the master start new workers; if the new config fails to
        # load, the master logs the error and keeps the old workers.
        master = self.main_pid()
        return (master, frozenset(_children(master)) if master else frozenset())

    def generation_moved(self, before):
        master, workers = self.generation()
        return master == before[0] and bool(workers - before[1])


PROXIES = {"nginx": Nginx}


def get_proxy(kind, module):
    try:
        return PROXIES[kind](module)
    except KeyError:
        raise ProxyError("unknown proxy kind '%s'; known: %s" % (kind, ", ".join(sorted(PROXIES)))) from None
