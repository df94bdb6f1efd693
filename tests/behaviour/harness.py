# SPDX-License-Identifier: GPL-3.0-or-later
"""What the behaviour suite needs to talk to a deployed proxy and its host.

The proxy runs in a container of a molecule scenario, in front of the Immich
test double (tests/immich_double, a stand-in for Immich). The suite runs on the
Docker host and is an ordinary client: it connects to the container's address,
sends the public host name as SNI and Host, and reads what the double received.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import shlex
import socket
import ssl
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The smuggling attacks Go's net/http (Caddy, Traefik) resolves as RFC 9112 allows: the Transfer-Encoding wins and
# the Content-Length is dropped; a folded line is joined with a space.
GO_NORMALISES = ["CL.TE: Content-Length and Transfer-Encoding", "TE.CL: Transfer-Encoding and a short Content-Length",
                 "Transfer-Encoding folded onto a second line", "obs-fold in an ordinary header"]

# What differs between proxies, one entry per kind (a unit test keeps the kinds
# equal to the adapter registry). Everything else in the suite is proxy-neutral;
# a test that needs a trait says so with @pytest.mark.needs(trait=value) and is
# skipped, with the trait named, where the kind does not have it.
KINDS = {
    "nginx": {
        # how immich_proxy_tls=acme gets its certificate: certbot, builtin (the proxy's own client) or none
        "acme": "certbot",
        # how the proxy takes new files: reload (tested in place, then a graceful reload) or watch (applied as
        # written, so they must be checked before and proven live after)
        "strategy": "reload",
        "sysctls": {},
        # for strategy watch: role variables whose change the running proxy takes without a restart
        "live_change_vars": None,
        # a settings change that alters the config files (one the running proxy takes without a restart where it can)
        "config_change_vars": {"immich_proxy_timeout": 700},
        # switching the host's immich_proxy_kind to this kind and back hands the ports over (test_faults.py);
        # the handover is the same proxy-neutral code for every pair, so one pair runs in CI (None: not here)
        "switch_to": "caddy",
        # seconds after a pool backend stops during which requests under load may still fail (0: only those in
        # flight as it stopped); where more (the active health check's interval, 5 s by default, with a margin),
        # the docs say why
        "pool_settles": 0,
        # whether a new immich_proxy_timeout takes a restart (Traefik: entrypoint timeouts are static config)
        "timeout_change_restarts": False,
        # for a role that downloads a release and checks its published checksum: a shell script that puts a
        # release with a wrong checksum on the scenario's mirror, the role variables that install it, and the
        # binary that must stay as it is; None where the role installs no release
        # files the proxy reads only when it starts, touched as a run that failed before the restart leaves them
        "start_files_touch": None,
        # a file the proxy loads only when it starts, that it cannot load: {"var": the role's list of its source
        # files on the controller (a test overrides it with a broken copy), "source": their directory in the
        # collection, "file", "append": the breakage, "path": where the role installs them, "message": the
        # refusal}; None where the role checks no such file before it is in place
        "broken_start_file": None,
        "tampered_release": None,
        # answers HTTP on the host itself (a tunnel does not)
        # the smuggling attacks (test_attacks.py) this kind's HTTP parser resolves as RFC 9112 allows instead of
        # refusing them; any other that reaches Immich fails the suite
        "normalises": [],
        "listens": True,
        # for a kind that does not listen: a shell test on the host that passes while the service serves
        "alive": None,
        "service": "nginx",
        "processes": ["nginx"],
        # who may read the private key besides root: the group of a proxy that reads it as its own user
        "key_group": "root",
        # a shell test on the host: does the proxy read what a client still sends after refusing its body, so that
        # the client sees the 413? (Caddy closes the connection soon after: README)
        "refused_body_drained": "true",
        # where the ACME client keeps accounts and certificates ({host}: the public host), forgotten before
        # a test against a new pebble (a new root each time)
        "acme_state": ["/etc/letsencrypt/live/{host}", "/etc/letsencrypt/archive/{host}",
                       "/etc/letsencrypt/renewal/{host}.conf", "/etc/letsencrypt/accounts/127.0.0.1:14000"],
        "config_dirs": ["/etc/nginx", "/etc/immich-proxy"],
        # a directive the proxy's own checker rejects, given through the role's escape hatch
        "broken_config_vars": {"nginx_extra_server_directives": ["immich_proxy_no_such_directive on;"]},
        "broken_config_message": "nginx rejected the configuration",
        # a role-specific variable that reaches the config file, with a directive smuggled in
        "injection_vars": {"nginx_client_body_buffer_size": "512k;\n    return 200 pwned"},
        # role variables of the wrong type
        "type_error_vars": {"nginx_ipv6": "maybe", "nginx_backend_fail_timeout": "10s"},
        # an administrator's hand edit of the role's file, loaded by hand, that shows as a response header
        # for bench/bench.py: role variables of its host, a shell command that prints the version, and Immich's
        # documented example config of this proxy (docs/administration/reverse-proxy, 2026-06) as close to verbatim
        # as a bench on loopback allows (plain HTTP on the ports given, backend 127.0.0.1:2283): files, the command
        # that starts it, the systemd unit whose processes serve it (default: the service), its paths (name: port)
        # and those to try with a slow upload too
        "bench": {
            "vars": {"nginx_ipv6": False},
            "version": "nginx -v 2>&1",
            "documented": {
                "files": {"/etc/nginx/conf.d/zz-bench-documented.conf": """
server {
    listen 8180;
    server_name photos.immich.test;

    # allow large file uploads
    client_max_body_size 50000M;

    # disable buffering uploads to prevent OOM on reverse proxy server and make uploads twice as fast (no pause)
    proxy_request_buffering off;

    # increase body buffer to avoid limiting upload speed
    client_body_buffer_size 1024k;

    # Set headers
    proxy_set_header Host              $host;
    proxy_set_header X-Real-IP         $remote_addr;
    proxy_set_header X-Forwarded-For   $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;

    # enable websockets: http://nginx.org/en/docs/http/websocket.html
    proxy_http_version 1.1;
    proxy_redirect     off;

    # set timeout
    proxy_read_timeout 600s;
    proxy_send_timeout 600s;
    send_timeout       600s;

    location / {
        proxy_pass http://127.0.0.1:2283;
        proxy_set_header   Upgrade    $http_upgrade;
        proxy_set_header   Connection "upgrade";
    }
}
"""},
                "apply": "nginx -t -q && systemctl reload nginx",
                "ports": {"documented": 8180},
            },
        },
        "hand_edit": ("sed -i 's/server_tokens off;/server_tokens off; add_header X-Hand-Edited yes always;/' "
                      "/etc/nginx/conf.d/immich-proxy.conf && nginx -t -q && systemctl reload nginx"),
    },
    "apache": {
        "acme": "certbot",
        "strategy": "reload",
        "sysctls": {},
        "live_change_vars": None,
        "config_change_vars": {"immich_proxy_timeout": 700},
        "switch_to": None,
        "pool_settles": 0,
        "timeout_change_restarts": False,
        "start_files_touch": None,
        "broken_start_file": None,
        "tampered_release": None,
        "normalises": ["obs-fold in an ordinary header"],
        "listens": True,
        "alive": None,
        "service": "apache2",
        "processes": ["apache2"],
        "key_group": "root",
        "refused_body_drained": "true",
        "acme_state": ["/etc/letsencrypt/live/{host}", "/etc/letsencrypt/archive/{host}",
                       "/etc/letsencrypt/renewal/{host}.conf", "/etc/letsencrypt/accounts/127.0.0.1:14000"],
        "config_dirs": ["/etc/apache2", "/etc/immich-proxy"],
        "broken_config_vars": {"apache_extra_vhost_directives": ["ImmichProxyNoSuchDirective on"]},
        "broken_config_message": "apache rejected the configuration",
        "injection_vars": {"apache_log_level": "warn\n    ProxyPass /x http://evil.example/"},
        "type_error_vars": {"apache_http2": "maybe", "apache_backend_retry": "10s"},
        "bench": {
            "vars": {},
            "version": "apache2 -v | head -1",
            "documented": {
                "files": {"/etc/apache2/sites-enabled/zz-bench-documented.conf": """
Listen 8180
<VirtualHost *:8180>
   ServerName photos.immich.test
   ProxyRequests Off
   # set timeout in seconds
   ProxyPass / http://127.0.0.1:2283/ timeout=600 upgrade=websocket
   ProxyPassReverse / http://127.0.0.1:2283/
   ProxyPreserveHost On
</VirtualHost>
"""},
                "apply": "apache2ctl -t && systemctl reload apache2",
                "ports": {"documented": 8180},
            },
        },
        "hand_edit": ("sed -i 's/ServerSignature Off/ServerSignature Off\\n    Header always set X-Hand-Edited yes/' "
                      "/etc/apache2/sites-available/immich-proxy.conf && apache2ctl -t && systemctl reload apache2"),
    },
    "caddy": {
        "acme": "builtin",
        "strategy": "reload",
        # the kernel settings the role sets for a graceful reload (each config Caddy loads opens its own
        # listening socket; Linux hands the connections queued on the old one to the new one only so)
        "sysctls": {"net.ipv4.tcp_migrate_req": "1"},
        "live_change_vars": None,
        "config_change_vars": {"immich_proxy_timeout": 700},
        "switch_to": None,
        "pool_settles": 10,
        "timeout_change_restarts": False,
        # files Caddy reads only when it starts (the unit of either install path), touched as a run that failed
        # before the restart leaves them
        "start_files_touch": ("touch -c /etc/systemd/system/caddy.service "
                              "/etc/systemd/system/caddy.service.d/immich-proxy.conf"),
        # (Caddy's start files are its binary and unit: nothing of them is checked before it is in place)
        "broken_start_file": None,
        "tampered_release": None,
        "normalises": GO_NORMALISES,
        "listens": True,
        "alive": None,
        "service": "caddy",
        "processes": ["caddy"],
        "key_group": "caddy",
        "refused_body_drained": "false",
        "acme_state": ["/var/lib/caddy/.local/share/caddy/certificates", "/var/lib/caddy/.local/share/caddy/acme"],
        "config_dirs": ["/etc/caddy", "/etc/immich-proxy"],
        "broken_config_vars": {"caddy_extra_site_directives": ["immich_proxy_no_such_directive on"]},
        "broken_config_message": "caddy rejected the configuration",
        "injection_vars": {"caddy_lb_policy": "first\n\t\trespond 200 pwned"},
        "type_error_vars": {"caddy_http3": "maybe", "caddy_health_interval": "5s"},
        # the documented site in a second Caddy (plain HTTP; the example's name would get automatic HTTPS)
        "bench": {
            "vars": {},
            "version": "caddy version",
            "documented": {
                "files": {"/opt/bench/documented.caddyfile": """
{
\tadmin off
}
http://photos.immich.test:8180 {
\treverse_proxy http://127.0.0.1:2283
}
"""},
                "apply": ("systemd-run --unit=bench-documented --setenv=HOME=/root "
                          "caddy run --config /opt/bench/documented.caddyfile --adapter caddyfile"),
                "unit": "bench-documented.service",
                "ports": {"documented": 8180},
            },
        },
        "hand_edit": ("sed -i 's/^\\t\\theader -Server$/\\t\\theader -Server\\n\\t\\theader X-Hand-Edited yes/' "
                      "/etc/caddy/Caddyfile && systemctl reload caddy"),
    },
    "traefik": {
        "acme": "builtin",
        "strategy": "watch",
        "sysctls": {},
        "live_change_vars": {"traefik_health_interval": 7},
        "config_change_vars": {"traefik_health_interval": 7},
        "switch_to": None,
        "pool_settles": 10,
        "timeout_change_restarts": True,
        # a file of the local plugin Traefik loads only when it starts, touched as a run that failed before the
        # restart leaves it
        "start_files_touch": "find /usr/local/lib/traefik/plugins-local -name '*.go' -exec touch {} +",
        # the local plugin, which the throwaway Traefik loads with the config before either is in place
        "broken_start_file": {
            "var": "__traefik_plugin_sources",
            "source": "roles/traefik/files/plugins-local/src/github.com/homelab/immichguard",
            "file": "immichguard.go",
            "append": "\nfunc broken( {\n",
            "path": "/usr/local/lib/traefik/plugins-local",
            "message": "Plugins are disabled because an error has occurred",
        },
        "tampered_release": {
            # the scenario's mirror (molecule/traefik/prepare.yml) in GitHub's layout
            "script": ("cd /srv/traefik-mirror && mkdir -p v3.7.99 && "
                       "cp v3.7.15/traefik_v3.7.15_linux_amd64.tar.gz v3.7.99/traefik_v3.7.99_linux_amd64.tar.gz && "
                       "echo 'a1f0b2c3d4e5f60718293a4b5c6d7e8f90112233445566778899aabbccddeeff  "
                       "traefik_v3.7.99_linux_amd64.tar.gz' > v3.7.99/traefik_v3.7.99_checksums.txt"),
            "vars": {"traefik_install": "release", "traefik_version": "3.7.99",
                     "traefik_release_base_url": "http://127.0.0.1:8099"},
            "binary": "/usr/local/bin/traefik",
        },
        "normalises": GO_NORMALISES,
        "listens": True,
        "alive": None,
        "service": "traefik",
        "processes": ["traefik"],
        "key_group": "traefik",
        # Go's net/http, as Caddy: the connection closes soon after an early 413
        "refused_body_drained": "false",
        "acme_state": ["/var/lib/traefik/acme.json"],
        "config_dirs": ["/etc/traefik", "/etc/immich-proxy"],
        # a middleware Traefik does not know disables the router: refused before it goes live
        "broken_config_vars": {"traefik_extra_router_middlewares": ["immich-proxy-no-such-middleware@file"]},
        "broken_config_message": "traefik rejected the configuration",
        "injection_vars": {"traefik_lb_strategy": "wrr\"\n    evil: {\"url\": \"http://evil.example\"}"},
        "type_error_vars": {"traefik_api_port": "maybe", "traefik_health_interval": "5s"},
        # the documented entrypoint (a file-provider router in place of the compose labels) in a second Traefik,
        # beside one with Traefik's own defaults: the 60 s readTimeout the documented config raises
        "bench": {
            "vars": {"traefik_install": "binary", "traefik_binary_src": "{root}/.venv/bin/traefik"},
            "version": "traefik version | head -1",
            "documented": {
                "files": {"/opt/bench/documented-traefik.yml": """
entryPoints:
  documented:
    address: :8180
    # this section needs to be added
    transport:
      respondingTimeouts:
        readTimeout: 600s
        idleTimeout: 600s
  defaults:
    address: :8181
providers:
  file:
    filename: /opt/bench/documented-dynamic.yml
""", "/opt/bench/documented-dynamic.yml": """
http:
  routers:
    immich:
      entryPoints: [documented, defaults]
      rule: Host(`photos.immich.test`)
      service: immich
  services:
    immich:
      loadBalancer:
        servers:
          - url: http://127.0.0.1:2283
"""},
                "apply": "systemd-run --unit=bench-documented traefik --configFile=/opt/bench/documented-traefik.yml",
                "unit": "bench-documented.service",
                "ports": {"documented": 8180, "defaults": 8181},
                "slow": ["defaults"],
            },
        },
        # Traefik applies the dynamic file as it is written: a hand edit is live at once
        "hand_edit": ("sed -i 's/\"X-Powered-By\": \"\"/\"X-Powered-By\": \"\", \"X-Hand-Edited\": \"yes\"/' "
                      "/etc/traefik/dynamic/immich-proxy.yml && sleep 3"),
    },
    # STAND-IN: the scenario runs tests/cloudflared_standin/cloudflared-test-standin as cloudflared (no
    # cloudflared binary can be had here, nor Cloudflare's edge); it tunnels nothing.
    "cloudflared": {
        "acme": "none",
        "strategy": "restart",
        "sysctls": {},
        "live_change_vars": None,
        "config_change_vars": {"cloudflared_loglevel": "warn"},
        "switch_to": None,
        "pool_settles": 0,
        # nothing of cloudflared's config follows immich_proxy_timeout (Cloudflare's edge waits 100 s, fixed)
        "timeout_change_restarts": False,
        "start_files_touch": None,
        "broken_start_file": None,
        "tampered_release": None,
        "normalises": [],
        "listens": False,
        # cloudflared's readiness on its metrics port (200 only while connected to the edge)
        "alive": "curl -fsS http://127.0.0.1:20241/ready",
        "service": "cloudflared",
        "processes": ["cloudflared"],
        "key_group": "root",
        "refused_body_drained": "true",
        "acme_state": [],
        "config_dirs": ["/etc/cloudflared"],
        # a service without a scheme: cloudflared refuses it; the collection's validator says so before it stays
        "broken_config_vars": {"cloudflared_extra_ingress": ["grafana.immich.test 127.0.0.1:3000"]},
        "broken_config_message": "cloudflared rejected the configuration",
        # only a locally managed tunnel has ingress rules of its own (a remote one's are in the dashboard)
        "broken_config_applies": "grep -q '\"ingress\"' /etc/cloudflared/config.yml",
        # a line break and a rule smuggled into the extra ingress rules
        "injection_vars": {"cloudflared_extra_ingress": ["grafana.immich.test http://127.0.0.1:3000\n  - service: "
                                                         "http://evil.example"]},
        "type_error_vars": {"cloudflared_metrics_port": "maybe", "cloudflared_connect_timeout": "30s"},
        # no HTTP on the host: not benchmarked (bench/bench.py takes the kinds that listen)
        "bench": None,
        "hand_edit": None,
    },
}


def ansible_bin(name):
    """An Ansible command of the Python that runs the suite (the test bed's venv), whatever PATH says."""
    return os.path.join(os.path.dirname(sys.executable), name)


def ansible_env(**extra):
    """The environment for ansible-playbook: the test bed's collections unless told otherwise, plain output."""
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", **extra)
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", os.path.join(ROOT, ".cache", "collections"))
    return env


def run(argv, check=True, timeout=600, **kwargs):
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError("command %s failed with %d:\n%s\n%s"
                             % (shlex.join(argv), result.returncode, result.stdout[-3000:], result.stderr[-3000:]))
    return result


# The proxy's container is a testinfra host (docker backend); these helpers are
# what the suite asks of it beyond testinfra's own modules.
def sh(host, script, check=True):
    """Run a shell script in the container; a failure is an error that shows the output."""
    result = host.run(script)
    if check and result.rc != 0:
        raise AssertionError("in %s, %r failed with %d:\n%s\n%s"
                             % (host.backend.name, script, result.rc, result.stdout[-3000:], result.stderr[-3000:]))
    return result


def container_address(name):
    return run(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                name]).stdout.strip()


def container_gateway(name):
    return run(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.Gateway}}{{end}}",
                name]).stdout.strip()


def tree_digest(host, dirs):
    """Every file under dirs with its mode, owner, link target and SHA-256, as one text."""
    script = ("find %s \\( -type f -o -type l \\) -printf '%%p %%m %%u %%l\\n' | sort; "
              "find %s -type f -exec sha256sum {} + | sort" % (" ".join(dirs), " ".join(dirs)))
    return sh(host, script).stdout


def snapshot(host, traits):
    """The proxy's config files (digest) and its processes: what a run that fails must leave as it was."""
    return tree_digest(host, traits["config_dirs"]), pids(host, traits["processes"])


def assert_untouched(proxy, host, traits, before):
    after = snapshot(host, traits)
    assert after[0] == before[0], "config files changed after a failed run"
    assert after[1] == before[1], "the proxy's processes changed (was it reloaded or restarted?)"
    assert_serving(proxy, host, traits)


def assert_serving(proxy, host, traits):
    """Through the proxy where it listens; a tunnel, by its own readiness on the host."""
    if not traits["listens"]:
        assert sh(host, traits["alive"], check=False).rc == 0, "%s stopped serving" % traits["service"]
        return
    status, _headers, payload = proxy.json("GET", "/api/server/ping")
    assert (status, payload) == (200, {"res": "pong"}), "the proxy stopped serving"


def pids(host, names):
    return sorted(process.pid for name in names for process in host.process.filter(comm=name))


def written_bytes(host, names):
    """pid -> bytes the process caused to be written to storage (/proc/PID/io write_bytes).

    Reading another user's /proc/PID/io needs CAP_SYS_PTRACE in the container;
    a process that cannot be measured is an error, not a zero.
    """
    found = {}
    for pid in pids(host, names):
        result = host.run("cat /proc/%d/io" % pid)
        if result.rc != 0:
            if "No such file" in result.stderr:
                continue
            raise AssertionError("cannot read /proc/%d/io: %s" % (pid, result.stderr.strip()))
        fields = dict(line.split(": ") for line in result.stdout.splitlines() if ": " in line)
        found[pid] = int(fields["write_bytes"])
    return found


def backend_json(host, port, path):
    """What the Immich test double on ``port`` says about itself, asked from inside the container."""
    return json.loads(sh(host, "curl -s http://127.0.0.1:%d%s" % (port, path)).stdout)


def mozilla_intermediate_report(proxy):
    """(compliant, report): sslyze's check of the proxy's TLS against Mozilla's intermediate profile.

    sslyze connects to the container's address with the public name as SNI and
    verifies the chain with the proxy's CA file (self-signed, lab or ACME root).
    """
    target = "%s:%d{%s}" % (proxy.host, proxy.https_port, proxy.ip)
    argv = [sys.executable, "-m", "sslyze", "--mozilla_config=intermediate", target]
    if proxy.ca_file:
        argv.insert(3, "--certinfo_ca_file=%s" % proxy.ca_file)
    result = run(argv, check=False, timeout=300)
    report = (result.stdout + result.stderr)[-6000:]
    # sslyze ends its report with "host:port: OK - Compliant." or "FAILED - Not compliant."
    return result.returncode == 0 and ": OK - Compliant." in result.stdout, report


def raw_request(proxy, scheme, host_header, path, port=None, method="GET", headers=()):
    """One HTTP/1.1 request with a chosen Host and no body: (status, or None if the proxy closed; the first
    response head). ``headers``: more (name, value) pairs, such as a Content-Length announced with Expect."""
    port = port or (proxy.https_port if scheme == "https" else proxy.http_port)
    sock = socket.create_connection((proxy.ip, port), timeout=15)
    try:
        if scheme == "https":
            # the real name as SNI, another one as Host: what a Host-header injection sends
            sock = proxy.context().wrap_socket(sock, server_hostname=proxy.host)
        extra = "".join("%s: %s\r\n" % pair for pair in headers)
        sock.sendall(("%s %s HTTP/1.1\r\nHost: %s\r\n%sConnection: close\r\n\r\n"
                      % (method, path, host_header, extra)).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(65536)
            if not chunk:
                break
            head += chunk
    except (ConnectionResetError, ssl.SSLError):
        return None, b""
    finally:
        sock.close()
    if not head:
        return None, head
    return int(head.split(b" ", 2)[1]), head


def host_probe(proxy, host, backend_ports, scheme, host_header, port=None, absolute_host=None):
    """(status, response head, the records of the backends that received it) of a marked request with this Host.

    With ``absolute_host`` the request line names that host in absolute form (``GET http://host/path``, whatever
    the connection), which HTTP says wins over the Host header: what a client that uses the proxy as an open
    forward proxy sends.
    """
    marker = "/_double/echo?host-probe=%s" % uuid.uuid4().hex
    target = "http://%s%s" % (absolute_host, marker) if absolute_host else marker
    status, head = raw_request(proxy, scheme, host_header, target, port)
    reached = [record for backend in backend_ports for record in backend_json(host, backend, "/_double/requests")
               if record["path"] == marker]
    return status, head, reached


@dataclass
class Proxy:
    """The deployed proxy as a client sees it."""

    public_url: str
    ip: str
    ca_file: str | None
    http_port: int = 80
    https_port: int = 443
    scheme: str = field(init=False)
    host: str = field(init=False)

    def __post_init__(self):
        parts = urlsplit(self.public_url)
        self.scheme = parts.scheme
        self.host = parts.hostname

    @property
    def port(self):
        return self.https_port if self.scheme == "https" else self.http_port

    @property
    def host_header(self):
        """What a client of the public URL sends as Host (the port only where the URL has one)."""
        return urlsplit(self.public_url).netloc

    def context(self):
        ctx = ssl.create_default_context(cafile=self.ca_file)
        return ctx

    def connection(self, scheme=None, timeout=30):
        scheme = scheme or self.scheme
        ip = self.ip
        if scheme == "https":
            ctx = self.context()

            class Conn(http.client.HTTPSConnection):
                def connect(self):
                    sock = socket.create_connection((ip, self.port), self.timeout)
                    self.sock = ctx.wrap_socket(sock, server_hostname=self.host)

            return Conn(self.host, self.https_port, timeout=timeout, context=ctx)

        class PlainConn(http.client.HTTPConnection):
            def connect(self):
                self.sock = socket.create_connection((ip, self.port), self.timeout)

        return PlainConn(self.host, self.http_port, timeout=timeout)

    def request(self, method, path, headers=None, body=None, scheme=None, timeout=30):
        conn = self.connection(scheme, timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            data = response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, data
        finally:
            conn.close()

    def json(self, method, path, **kwargs):
        status, headers, data = self.request(method, path, **kwargs)
        try:
            return status, headers, json.loads(data)
        except ValueError:
            raise AssertionError("%s %s: expected JSON, got HTTP %d %r" % (method, path, status, data[:300])) from None


def random_stream(total, chunk=1024 * 1024, rate=None, digest=None):
    """Yield ``total`` random bytes in chunks, at most ``rate`` bytes/s, feeding ``digest``."""
    sent = 0
    started = time.monotonic()
    while sent < total:
        piece = os.urandom(min(chunk, total - sent))
        if digest is not None:
            digest.update(piece)
        sent += len(piece)
        yield piece
        if rate:
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)


def multipart_upload(size, boundary="immichproxyboundary", rate=None):
    """(headers, body iterator, sha1 object) of an Immich asset upload as the CLI sends it."""
    fields = {
        "deviceAssetId": "behaviour-suite-%d" % size,
        "deviceId": "homelab.immich_proxy-tests",
        "fileCreatedAt": "2026-01-01T00:00:00.000Z",
        "fileModifiedAt": "2026-01-01T00:00:00.000Z",
        "fileSize": str(size),
        "isFavorite": "false",
    }
    head = b"".join(
        b"--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n" % (boundary.encode(), k.encode(),
                                                                                v.encode())
        for k, v in fields.items())
    head += (b"--%s\r\nContent-Disposition: form-data; name=\"assetData\"; filename=\"video.mp4\"\r\n"
             b"Content-Type: video/mp4\r\n\r\n" % boundary.encode())
    tail = b"\r\n--%s--\r\n" % boundary.encode()
    digest = hashlib.sha1()

    def body():
        yield head
        yield from random_stream(size, rate=rate, digest=digest)
        yield tail

    headers = {"Content-Type": "multipart/form-data; boundary=%s" % boundary,
               "Content-Length": str(len(head) + size + len(tail)),
               "x-api-key": "behaviour-suite"}
    return headers, body(), digest
