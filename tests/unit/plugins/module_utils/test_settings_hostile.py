# SPDX-License-Identifier: GPL-3.0-or-later
"""Hostile values for every variable, contract and role-only: each is refused with the variable named.

The settings are written into nginx, Apache httpd, Caddyfile, Traefik YAML and
cloudflared YAML, so the table carries each language's syntax (directive ends,
blocks, variables, comments, YAML markers) and the characters that end a line
somewhere (NUL, vertical tab, form feed, NEL, U+2028, U+2029). Ordinary values
that look unusual (IPv6 backends, container names, punycode, private ranges,
ports as strings, "yes"/"no") must still be accepted.
"""
from __future__ import annotations

import re

import pytest

from ansible_collections.homelab.immich_proxy.plugins.module_utils import _settings
from ansible_collections.homelab.immich_proxy.plugins.module_utils._proxies import PROXIES
from ansible_collections.homelab.immich_proxy.plugins.module_utils._settings import (
    CONTRACT,
    OUTPUT,
    PARSERS,
    SettingsError,
    normalise,
)

GOOD = {"public_url": "https://photos.example.org"}

# Every adapter's real spec, so loosening any of them is caught, plus a patterned string and a path.
ROLE_SPEC = dict({name: spec for cls in PROXIES.values() for name, spec in cls.variables.items()}, **{
    "nginx_log_format": {"type": "str", "pattern": "[a-z_]{1,32}"},
    "nginx_access_log": {"type": "path", "nullable": True},
})
ROLE_GOOD = {
    "nginx_ipv6": "true",
    "nginx_remove_default_site": "yes",
    "nginx_backend_fail_timeout": "10",
    "nginx_client_body_buffer_size": "512k",
    "nginx_extra_server_directives": ["gzip on;"],
    "nginx_log_format": "main",
    "nginx_access_log": "/var/log/nginx/immich.log",
    "apache_remove_default_site": "yes",
    "apache_http2": "true",
    "apache_backend_retry": "10",
    "apache_log_level": "warn",
    "apache_extra_vhost_directives": ["Header always set X-Note yes"],
    "caddy_install": "package",
    "caddy_binary_src": "/opt/caddy/bin/caddy",
    "caddy_lb_policy": "round_robin",
    "caddy_health_interval": "5",
    "caddy_http3": "no",
    "caddy_extra_site_directives": ["encode zstd gzip"],
    "traefik_install": "release",
    "traefik_version": "3.7.15",
    "traefik_release_base_url": "https://github.com/traefik/traefik/releases/download",
    "traefik_binary_src": "/opt/traefik/bin/traefik",
    "traefik_api_port": "8082",
    "traefik_lb_strategy": "wrr",
    "traefik_health_interval": "5",
    "traefik_write_timeout": "0",
    "traefik_extra_router_middlewares": ["authelia@docker"],
    "traefik_compose_labels_path": "/opt/immich/docker-compose.override.yml",
    "cloudflared_install": "apt",
    "cloudflared_apt_url": "https://pkg.cloudflare.com/cloudflared",
    "cloudflared_apt_key_url": "https://pkg.cloudflare.com/cloudflare-main.gpg",
    "cloudflared_package_src": "/opt/cloudflared/cloudflared.deb",
    "cloudflared_binary_src": "/opt/cloudflared/cloudflared",
    "cloudflared_tunnel_id": "6ff42ae2-765d-4adf-8112-31c55c1551ef",
    "cloudflared_credentials_src": "/home/me/.cloudflared/6ff42ae2-765d-4adf-8112-31c55c1551ef.json",
    "cloudflared_token_src": "/home/me/tunnel-token",
    "cloudflared_metrics_port": "20241",
    "cloudflared_protocol": "auto",
    "cloudflared_loglevel": "info",
    "cloudflared_connect_timeout": "30",
    "cloudflared_keepalive_timeout": "90",
    "cloudflared_extra_ingress": ["grafana.example.org http://localhost:3000"],
}

# A good value of every variable given as a string (lists: their one entry is
# the string), the base that hostile characters are added to.
STRING_BASES = {
    "public_url": "https://photos.example.org",
    "backends": ["http://127.0.0.1:2283"],
    "backend_ca_file": "/etc/ssl/ca.pem",
    "max_body_size": "50000M",
    "timeout": "600",
    "tls": "selfsigned",
    "tls_cert": "/etc/ssl/c.pem",
    "tls_key": "/etc/ssl/k.pem",
    "acme_email": "admin@example.org",
    "acme_directory": "https://acme-v02.api.letsencrypt.org/directory",
    "acme_ca_file": "/etc/ssl/ca.pem",
    "hsts": "yes",
    "hsts_max_age": "63072000",
    "trusted_proxies": ["10.0.0.0/8"],
    "trusted_proxies_allow_any": "no",
    "http_port": "80",
    "https_port": "443",
    "cloudflare_plan": "free",
    "check": "true",
    "check_ca_path": "/etc/ssl/ca.pem",
}
STRING_BASES.update(ROLE_GOOD)

# Characters that end a line, a string or a directive in at least one of the five languages or in YAML.
LINE_ENDERS = {
    "newline": "\n", "carriage-return": "\r", "nul": "\x00", "vertical-tab": "\x0b", "form-feed": "\x0c",
    "tab": "\t", "nel": "\x85", "u2028": "\u2028", "u2029": "\u2029",
}

ZONE_PAYLOAD = "::%x;\n}\nserver {\n listen 8081;\n return 200 pwned;\n}\n#"

HOSTILE = [
    # IPv6 zone IDs: Python's ipaddress takes any text after '%'.
    ("trusted_proxies", [ZONE_PAYLOAD]),
    ("trusted_proxies", ["fe80::1%eth0"]),
    ("trusted_proxies", ["fe80::1%}"]),
    ("trusted_proxies", ["fe80::1%\u2028/64"]),
    ("trusted_proxies", ["fe80::1%\x0b"]),
    ("trusted_proxies", ["fe80::1%\x00"]),
    ("backends", ["http://[fe80::1%25eth0]:2283"]),
    ("backends", ["http://[fe80::1%;]:2283"]),
    ("backends", ["http://[fe80::1%}]:2283"]),
    ("backends", ["http://[fe80::1%\n}]:2283"]),
    ("backends", ["http://[fe80::1%\x0b]:2283"]),
    ("backends", ["http://[fe80::1%\u2028]:2283"]),
    ("backends", ["http://[fe80::1%\x00]:2283"]),
    ("public_url", "https://[fe80::1%25eth0]"),
    ("public_url", "https://[fe80::1%;]"),
    ("public_url", "https://[fe80::1%}]"),
    ("public_url", "https://[fe80::1%\n]"),
    ("public_url", "https://[fe80::1%\x0b]"),
    ("public_url", "https://[fe80::1%\u2028]"),
    ("public_url", "https://[fe80::1%\x00]"),
    ("acme_directory", "https://[fe80::1%25eth0]/dir"),
    # Trusting everyone.
    ("trusted_proxies", ["0.0.0.0/0"]),
    ("trusted_proxies", ["::/0"]),
    ("trusted_proxies", ["10.1.2.3/0"]),
    # Each language's syntax in host names and addresses.
    ("public_url", "https://photos.example.org;return 200"),
    ("public_url", "https://${HOST}"),
    ("public_url", "https://{{ host }}"),
    ("public_url", "https://%{SERVER_NAME}"),
    ("public_url", "https://{$DOMAIN}"),
    ("public_url", "https://`Host(`evil`)`"),
    ("public_url", "https://photos.example.org#comment"),
    ("public_url", "https://a: b.example.org"),
    ("public_url", "https://- a.example.org"),
    ("public_url", "https://&anchor.example.org"),
    ("public_url", "https://*alias.example.org"),
    ("public_url", "https://!tag.example.org"),
    ("public_url", "https://*.example.org"),
    ("public_url", "https://\"photos.example.org\""),
    ("public_url", "https://photos.example.org\\"),
    ("backends", ["http://immich-server:2283;"]),
    ("backends", ["http://${IMMICH}:2283"]),
    ("backends", ["http://{{ immich }}:2283"]),
    ("backends", ["http://%{ENV:IMMICH}:2283"]),
    ("backends", ["http://{$IMMICH}:2283"]),
    ("backends", ["http://`immich`:2283"]),
    ("backends", ["http://a: b:2283"]),
    ("backends", ["http://- a:2283"]),
    ("backends", ["http://&a:2283"]),
    ("backends", ["http://*a:2283"]),
    ("backends", ["http://!a:2283"]),
    ("trusted_proxies", ["10.0.0.0/8;"]),
    ("trusted_proxies", ["${TRUSTED}"]),
    ("trusted_proxies", ["10.0.0.0/8 1"]),
    ("trusted_proxies", ["- 10.0.0.0/8"]),
    # Internationalised names must be punycode.
    ("public_url", "https://bücher.example"),
    ("public_url", "https://xn--bcher-kva.exämple"),
    ("backends", ["http://münchen.example:2283"]),
    ("acme_email", "admin@bücher.example"),
    ("acme_email", "ädmin@example.org"),
    # URLs: what has no place in a proxy's URL.
    ("public_url", "https://example.org/immich"),
    ("public_url", "https://user:pw@photos.example.org"),
    ("public_url", "https://photos.example.org/?a=1"),
    ("public_url", "https://photos.example.org:0"),
    ("public_url", "https://photos.example.org:65536"),
    ("public_url", "https://photos.example.org:"),
    ("public_url", "https://1.2.3.999"),
    ("public_url", "https://-photos.example.org"),
    ("public_url", "https://photos_example.org"),
    ("public_url", "ftp://photos.example.org"),
    ("public_url", "photos.example.org"),
    ("public_url", ""),
    ("backends", ["http://fd00::5:2283"]),
    ("backends", ["http://a:2283/api"]),
    ("backends", ["http://a:2283?x=1"]),
    ("backends", ["http://user@a:2283"]),
    ("backends", ["http://a:2283", "http://a:2283"]),
    ("backends", ["http://a:2283", "https://b:2283"]),
    ("backends", ["https://a.internal:2283", "https://b.internal:2283"]),
    ("backends", ["https://10.0.0.21:2283", "https://10.0.0.22:2283"]),
    # an https backend by address: its certificate could never be verified by name
    ("backends", ["https://10.0.0.5:2283"]),
    ("backends", ["https://[fd00::5]:2283"]),
    # '_' is for container names of backends only; a public name with it is no DNS name
    ("public_url", "https://immich_server"),
    ("backends", ["http://immich_server;:2283"]),
    ("backends", []),
    ("backends", ["http://a:%d" % port for port in range(1, 70)]),
    # ACME directory: https only, host and port checked, nothing else.
    ("acme_directory", "http://acme.example/directory"),
    ("acme_directory", "https://acme.example/directory\u2028"),
    ("acme_directory", "https://acme.example/directory\n"),
    ("acme_directory", "https://user:pw@acme.example/directory"),
    ("acme_directory", "https://acme.example:0/directory"),
    ("acme_directory", "https://acme.example:99999/directory"),
    ("acme_directory", "https://acme.example:port/directory"),
    ("acme_directory", "https://acme.example/directory?x=1"),
    ("acme_directory", "https://acme.example/directory#x"),
    ("acme_directory", "https://acme.example/../directory"),
    ("acme_directory", "https://acme.example/a//b"),
    ("acme_directory", "https://acme.example/%2e%2e/directory"),
    ("acme_directory", "https://acme.example/${DIR}"),
    ("acme_directory", "https://acme.example/{{ dir }}"),
    ("acme_directory", "https://acme.example/di r"),
    ("acme_directory", "acme.example/directory"),
    ("acme_directory", ""),
    # E-mail: never an option to certbot, never two lines.
    ("acme_email", "--staging@example.org"),
    ("acme_email", "-x@example.org"),
    ("acme_email", "admin@example.org --staging"),
    ("acme_email", "admin@b"),
    ("acme_email", "admin@1.2.3.4"),
    ("acme_email", "admin@[1.2.3.4]"),
    ("acme_email", "a..b@example.org"),
    ("acme_email", ".a@example.org"),
    ("acme_email", "a.@example.org"),
    ("acme_email", "a%b@example.org"),
    ("acme_email", "a;b@example.org"),
    ("acme_email", "a@@example.org"),
    ("acme_email", "a@exa_mple.org"),
    ("acme_email", "${EMAIL}"),
    # Paths: absolute, plain, no traversal.
    ("tls_cert", "relative.pem"),
    ("tls_cert", "~/cert.pem"),
    ("tls_cert", "/etc/../shadow"),
    ("tls_cert", "/etc/./ssl/c.pem"),
    ("tls_cert", "/etc//ssl/c.pem"),
    ("tls_cert", "/etc/ssl/"),
    ("tls_cert", "/etc/ssl/a b.pem"),
    ("tls_cert", "/etc/ssl/a.pem;"),
    ("tls_key", "/etc/ssl/${KEY}"),
    ("tls_key", "/etc/ssl/{{ key }}"),
    ("tls_key", "/etc/ssl/%{KEY}"),
    ("tls_key", "/etc/ssl/`key`"),
    ("tls_key", "/etc/ssl/k: v"),
    ("tls_key", "/etc/ssl/*.pem"),
    ("tls_key", "/etc/ssl/#k.pem"),
    ("acme_ca_file", "/étc/ca.pem"),
    ("acme_ca_file", "/etc/ca.pem\"; ssl_verify off"),
    ("backend_ca_file", "/etc/ssl/&ca.pem"),
    ("backend_ca_file", "/etc/ssl/!ca.pem"),
    ("check_ca_path", "/etc/ssl/ca.pem}"),
    ("check_ca_path", "/" + "a" * 5000),
    # Sizes, timeouts, ages, ports: whole numbers in bounds, no floats, no overflow.
    ("max_body_size", "17T"),
    ("max_body_size", 17 * 1024 ** 4),
    ("max_body_size", 2 ** 70),
    ("max_body_size", -1),
    ("max_body_size", "-1"),
    ("max_body_size", "1.5G"),
    ("max_body_size", 1.5),
    ("max_body_size", "10 M"),
    ("max_body_size", "1P"),
    ("max_body_size", "512\u212a"),  # the Kelvin sign, which re.IGNORECASE reads as 'k'
    ("max_body_size", "\uff15\uff10M"),  # full-width digits, which int() reads
    ("max_body_size", "0x10"),
    ("max_body_size", "1e9"),
    ("max_body_size", ""),
    ("timeout", 604801),
    ("timeout", 10 ** 30),
    ("timeout", 0),
    ("timeout", -5),
    ("timeout", 600.0),
    ("timeout", "600.0"),
    ("timeout", "soon"),
    ("timeout", "\uff16\uff10\uff10"),
    ("hsts_max_age", 315360001),
    ("hsts_max_age", -1),
    ("hsts_max_age", 1.0),
    ("hsts_max_age", "2y"),
    ("http_port", 0),
    ("http_port", 65536),
    ("http_port", -80),
    ("http_port", 80.0),
    ("http_port", "http"),
    ("http_port", "80;"),
    ("http_port", "\uff18\uff10"),
    ("https_port", 80),  # the same as http_port
    # Booleans: Ansible's words or nothing.
    ("hsts", "maybe"),
    ("hsts", "tru"),
    ("hsts", 2),
    ("hsts", 1.0),
    ("hsts", ""),
    ("hsts", "none"),
    ("trusted_proxies_allow_any", "yes please"),
    ("trusted_proxies_allow_any", "maybe"),
    ("check", "maybe"),
    ("check", "sometimes"),
    # Choices.
    ("tls", "letsencrypt"),
    ("tls", "OFF"),
    ("tls", True),
    ("tls", 1),
    ("tls", "acme;"),
    ("cloudflare_plan", "ultra"),
    ("cloudflare_plan", "Free"),
    ("cloudflare_plan", True),
    # Wrong types: scalars for lists and lists or dicts for scalars.
    ("public_url", {"url": "https://photos.example.org"}),
    ("public_url", ["https://photos.example.org"]),
    ("public_url", 1234),
    ("public_url", True),
    ("backends", "http://127.0.0.1:2283"),
    ("backends", {"url": "http://127.0.0.1:2283"}),
    ("backends", [1]),
    ("backends", [None]),
    ("backends", [["http://127.0.0.1:2283"]]),
    ("backends", [{"url": "http://127.0.0.1:2283"}]),
    ("trusted_proxies", "10.0.0.0/8"),
    ("trusted_proxies", [10]),
    ("trusted_proxies", [{"cidr": "10.0.0.0/8"}]),
    ("trusted_proxies", {"10.0.0.0/8": True}),
    ("trusted_proxies", ["10.0.0.0/%d" % n for n in range(8, 24)] * 70),
    ("max_body_size", [1]),
    ("max_body_size", {"size": 1}),
    ("max_body_size", True),
    ("timeout", [600]),
    ("timeout", {"seconds": 600}),
    ("timeout", True),
    ("tls_cert", ["/etc/ssl/c.pem"]),
    ("tls_cert", {"path": "/etc/ssl/c.pem"}),
    ("tls_cert", 5),
    ("tls_cert", True),
    ("acme_email", ["admin@example.org"]),
    ("acme_email", 5),
    ("acme_directory", ["https://acme.example/directory"]),
    ("acme_directory", 5),
    ("hsts", ["yes"]),
    ("hsts", {"on": True}),
    ("http_port", [80]),
    ("cloudflare_plan", ["free"]),
    ("check_ca_path", {"path": "/etc/ssl/ca.pem"}),
    # Role-only variables.
    ("nginx_ipv6", "maybe"),
    ("nginx_ipv6", "false\n"),
    ("nginx_ipv6", 2),
    ("nginx_ipv6", 1.5),
    ("nginx_ipv6", []),
    ("nginx_remove_default_site", {"yes": True}),
    ("nginx_backend_fail_timeout", "10\n"),
    ("nginx_backend_fail_timeout", "ten"),
    ("nginx_backend_fail_timeout", 10.5),
    ("nginx_backend_fail_timeout", 0),
    ("nginx_backend_fail_timeout", 3601),
    ("nginx_backend_fail_timeout", True),
    ("nginx_backend_fail_timeout", [10]),
    ("nginx_client_body_buffer_size", "512k\n"),
    ("nginx_client_body_buffer_size", "512k;"),
    ("nginx_client_body_buffer_size", "1g"),
    ("nginx_client_body_buffer_size", "1000"),
    ("nginx_client_body_buffer_size", 512.0),
    ("nginx_client_body_buffer_size", "512\u212a"),
    ("nginx_extra_server_directives", "gzip on;"),
    ("nginx_extra_server_directives", ["return 200;\n}\nserver {"]),
    ("nginx_extra_server_directives", ["gzip on;\u2028}"]),
    ("nginx_extra_server_directives", ["gzip on;\u2029"]),
    ("nginx_extra_server_directives", ["gzip\x00on;"]),
    ("nginx_extra_server_directives", ["gzip on;\x85"]),
    ("nginx_extra_server_directives", ["\u202egzip on;"]),
    ("nginx_extra_server_directives", ["x" * 5000]),
    ("nginx_extra_server_directives", [1]),
    ("nginx_extra_server_directives", [{"gzip": "on"}]),
    ("nginx_extra_server_directives", ["gzip on;"] * 300),
    ("nginx_extra_server_directives", {"gzip": "on"}),
    ("nginx_log_format", "main\n"),
    ("nginx_log_format", "ma in"),
    ("nginx_log_format", "${format}"),
    ("nginx_log_format", "{{ format }}"),
    ("nginx_log_format", "a" * 40),
    ("nginx_log_format", 5),
    # Apache: a directive or a section smuggled into a value, ap_expr and environment syntax.
    ("apache_remove_default_site", {"yes": True}),
    ("apache_remove_default_site", "maybe"),
    ("apache_http2", "on\n"),
    ("apache_http2", 2),
    ("apache_backend_retry", "10s"),
    ("apache_backend_retry", 0),
    ("apache_backend_retry", 3601),
    ("apache_backend_retry", "10 timeout=1"),
    ("apache_log_level", "warn\n    ProxyPass /x http://evil.example/"),
    ("apache_log_level", "warn proxy:trace8"),
    ("apache_log_level", "trace8"),
    ("apache_log_level", "%{ENV:LEVEL}"),
    ("apache_log_level", "${LEVEL}"),
    ("apache_log_level", "warn #"),
    ("apache_log_level", 4),
    ("apache_extra_vhost_directives", "Header always set X-Note yes"),
    ("apache_extra_vhost_directives", ["Header always set X-Note yes\n</VirtualHost>"]),
    ("apache_extra_vhost_directives", ["</VirtualHost>\u2028<VirtualHost *:80>"]),
    ("apache_extra_vhost_directives", ["Header set X\x00 1"]),
    ("apache_extra_vhost_directives", ["\u202eHeader set X 1"]),
    ("apache_extra_vhost_directives", [1]),
    # Caddyfile: a newline or '}' ends a directive or block, '{...}' is a placeholder, '#' a comment
    ("caddy_install", "package\n}\n:8081 {\n respond pwned"),
    ("caddy_install", "docker"),
    ("caddy_install", True),
    ("caddy_binary_src", "relative/caddy"),
    ("caddy_binary_src", "/opt/caddy {\n respond pwned\n}"),
    ("caddy_binary_src", "/opt/{env.HOME}/caddy"),
    ("caddy_binary_src", ["/opt/caddy"]),
    ("caddy_lb_policy", "first\n\t\trespond 200 pwned"),
    ("caddy_lb_policy", "header X-Upstream"),
    ("caddy_lb_policy", "round_robin #"),
    ("caddy_lb_policy", "{http.request.header.X}"),
    ("caddy_health_interval", "5s"),
    ("caddy_health_interval", 0),
    ("caddy_health_interval", 3601),
    ("caddy_health_interval", -1),
    ("caddy_health_interval", "5\n}"),
    ("caddy_http3", "maybe"),
    ("caddy_http3", "h3"),
    ("caddy_extra_site_directives", "encode gzip"),
    ("caddy_extra_site_directives", ["encode gzip\n}\n:8081 {"]),
    ("caddy_extra_site_directives", ["encode gzip\u2028respond pwned"]),
    ("caddy_extra_site_directives", ["encode\x00 gzip"]),
    ("caddy_extra_site_directives", [{"encode": "gzip"}]),
    ("traefik_install", "release\"\n  evil: {}"),
    ("traefik_install", "package"),
    ("traefik_version", "3.7"),
    ("traefik_version", "2.11.2"),
    ("traefik_version", "3.7.15\"}, \"evil\": {\"x\": \"y"),
    ("traefik_version", "../../3.7.15"),
    ("traefik_release_base_url", "ftp://mirror.lan/traefik"),
    ("traefik_release_base_url", "https://mirror.lan/traefik/"),
    ("traefik_release_base_url", "https://mirror.lan/{{ env \"HOME\" }}"),
    ("traefik_release_base_url", "https://mirror.lan/a b"),
    ("traefik_release_base_url", "https://user:pw@mirror.lan"),
    ("traefik_release_base_url", "https://mirror.lan/x\n"),
    ("traefik_binary_src", "relative/traefik"),
    ("traefik_binary_src", "/opt/{{ lookup('env', 'HOME') }}/traefik"),
    ("traefik_api_port", 80.5),
    ("traefik_api_port", 443),
    ("traefik_api_port", "8082\n"),
    ("traefik_lb_strategy", "wrr\"\n    evil: {\"url\": \"http://evil.example\"}"),
    ("traefik_lb_strategy", "random"),
    ("traefik_health_interval", "5s"),
    ("traefik_health_interval", 0),
    ("traefik_write_timeout", -1),
    ("traefik_write_timeout", "600s"),
    ("traefik_extra_router_middlewares", "authelia@docker"),
    ("traefik_extra_router_middlewares", ["authelia@docker\n  evil: {}"]),
    ("traefik_extra_router_middlewares", ["a\u2028b"]),
    ("traefik_compose_labels_path", "docker-compose.override.yml"),
    ("traefik_compose_labels_path", ["/opt/immich/x.yml"]),
    ("cloudflared_install", "script"),
    ("cloudflared_apt_url", "https://pkg.cloudflare.com/cloudflared any main\ndeb http://evil.example"),
    ("cloudflared_apt_url", "file:///srv/repo"),
    ("cloudflared_apt_key_url", "https://pkg.cloudflare.com/key.gpg?x=1"),
    ("cloudflared_package_src", "cloudflared.deb"),
    ("cloudflared_binary_src", "/opt/{{ lookup('env', 'HOME') }}/cloudflared"),
    ("cloudflared_tunnel_id", "6FF42AE2-765D-4ADF-8112-31C55C1551EF\"\n  evil: 1"),
    ("cloudflared_tunnel_id", "my-tunnel"),
    ("cloudflared_credentials_src", "~/.cloudflared/x.json"),
    ("cloudflared_token_src", "token"),
    ("cloudflared_metrics_port", 80),
    ("cloudflared_metrics_port", "20241\"\ningress: []"),
    ("cloudflared_protocol", "h2mux"),
    ("cloudflared_loglevel", "trace"),
    ("cloudflared_connect_timeout", "30s"),
    ("cloudflared_keepalive_timeout", 0),
    ("cloudflared_extra_ingress", "grafana.example.org http://localhost:3000"),
    ("cloudflared_extra_ingress", ["grafana.example.org http://localhost:3000\n  - service: hello_world"]),
    ("nginx_access_log", "relative.log"),
    ("nginx_access_log", "/var/log/a.log\n"),
    ("nginx_access_log", "/var/log/a.log;"),
]

# Every line-ending character at the end and in the middle of every variable's string form.
for _name, _base in STRING_BASES.items():
    for _label, _char in LINE_ENDERS.items():
        for _value in (_base + _char if isinstance(_base, str) else [_base[0] + _char],
                       _char + _base if isinstance(_base, str) else [_char + _base[0]]):
            HOSTILE.append((_name, _value))


def _variable(name):
    return name if name in ROLE_SPEC else "immich_proxy_" + name


def _run(name, value):
    if name in ROLE_SPEC:
        return normalise(GOOD, role_spec=ROLE_SPEC, role_values=dict(ROLE_GOOD, **{name: value}))
    return normalise(dict(GOOD, **{name: value}), role_spec=ROLE_SPEC, role_values=ROLE_GOOD)


def _id(case):
    name, value = case
    return "%s=%s" % (name, _settings._quote(value)[:60])


def test_the_table_covers_every_variable():
    covered = {name for name, _value in HOSTILE}
    assert covered >= set(CONTRACT) | set(ROLE_SPEC)
    assert len(HOSTILE) >= 60


def test_the_string_bases_are_accepted_so_each_rejection_is_the_added_character():
    for name, base in STRING_BASES.items():
        _run(name, base)


@pytest.mark.parametrize("case", HOSTILE, ids=[_id(case) for case in HOSTILE])
def test_hostile_value_is_rejected_with_the_variable_named(case):
    name, value = case
    with pytest.raises(SettingsError) as caught:
        _run(name, value)
    problems = caught.value.problems
    assert any(p.startswith(_variable(name) + " ") for p in problems), (
        "expected a problem naming %s, got %r" % (_variable(name), problems))
    for problem in problems:
        # A message quotes the value escaped: it can never carry a line break into a log or a YAML report.
        assert problem.isascii() and problem.isprintable(), problem


ORDINARY = [
    ({"backends": ["http://[fd00::5]:2283"]}, "backends", [{"scheme": "http", "host": "fd00::5", "port": 2283,
                                                            "address": "[fd00::5]:2283",
                                                            "url": "http://[fd00::5]:2283"}]),
    ({"backends": ["http://immich-server:2283"]}, "backend_scheme", "http"),
    # Immich's docker-compose names its server container immich_server
    ({"backends": ["http://immich_server:2283"]}, "backends", [{"scheme": "http", "host": "immich_server",
                                                                "port": 2283, "address": "immich_server:2283",
                                                                "url": "http://immich_server:2283"}]),
    ({"backends": ["http://xn--bcher-kva.example:2283"]}, "backend_tls_verify", False),
    ({"backends": ["HTTP://Immich-Server:2283/"]}, "backends", [{"scheme": "http", "host": "immich-server",
                                                                 "port": 2283, "address": "immich-server:2283",
                                                                 "url": "http://immich-server:2283"}]),
    ({"backends": ["https://immich.lan:2283", "https://immich.lan:2284"]}, "backend_tls_name", "immich.lan"),
    ({"backends": ["https://immich-server:2283"]}, "backend_tls_name", "immich-server"),
    ({"backends": ["http://10.0.0.21:2283", "http://10.0.0.22"]}, "load_balanced", True),
    ({"public_url": "https://xn--bcher-kva.example"}, "server_name", "xn--bcher-kva.example"),
    ({"public_url": "https://photos.example.org."}, "public_url", "https://photos.example.org"),
    ({"public_url": "http://192.168.1.10:8080"}, "public_host_header", "192.168.1.10:8080"),
    ({"public_url": "http://192.168.1.10:8080"}, "public_host_headers", ["192.168.1.10:8080"]),
    ({"public_url": "https://[fd00::1]"}, "public_host_headers", ["[fd00::1]", "[fd00::1]:443"]),
    ({"public_url": "http://[fd00::1]:8080"}, "public_authority", "[fd00::1]:8080"),
    ({"public_url": "http://immich"}, "server_name", "immich"),
    ({"trusted_proxies": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fd00::/8", "1.2.3.4",
                          "2001:db8::1", "100.64.0.0/10"]},
     "trusted_proxies", ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fd00::/8", "1.2.3.4/32",
                         "2001:db8::1/128", "100.64.0.0/10"]),
    ({"trusted_proxies": ["10.0.0.0/8", "10.1.2.3/8"]}, "trusted_proxies", ["10.0.0.0/8"]),
    ({"trusted_proxies": ["0.0.0.0/0", "::/0"], "trusted_proxies_allow_any": "yes"},
     "trusted_proxies", ["0.0.0.0/0", "::/0"]),
    ({"http_port": "8080", "https_port": "8443"}, "https_port", 8443),
    ({"http_port": 8080}, "http_port", 8080),
    ({"timeout": "3600"}, "timeout", 3600),
    ({"hsts": "no", "tls": "selfsigned"}, "hsts", False),
    ({"hsts": "yes", "tls": "selfsigned"}, "hsts", True),
    ({"hsts": "true", "tls": "selfsigned"}, "hsts", True),
    ({"hsts": "on", "tls": "selfsigned"}, "hsts", True),
    ({"hsts": 1, "tls": "selfsigned"}, "hsts", True),
    ({"check": "false"}, "check", False),
    ({"max_body_size": 0}, "max_body_size_bytes", 0),
    ({"max_body_size": "0"}, "max_body_size_bytes", 0),
    ({"max_body_size": "50000M"}, "max_body_size_bytes", 50000 * 1024 ** 2),
    ({"max_body_size": "1g"}, "max_body_size_bytes", 1024 ** 3),
    ({"max_body_size": "512k"}, "max_body_size_bytes", 512 * 1024),
    ({"max_body_size": "100MB"}, "max_body_size_bytes", 100 * 1024 ** 2),
    ({"max_body_size": "16T"}, "max_body_size_bytes", 16 * 1024 ** 4),
    ({"max_body_size": 1048576}, "max_body_size_bytes", 1048576),
    ({"tls": False}, "tls", "off"),
    ({"tls": "acme", "acme_email": "first.last+immich@example.org"}, "acme_email", "first.last+immich@example.org"),
    ({"tls": "acme", "acme_email": "a@example.org", "acme_directory": "https://localhost:14000/dir"},
     "acme_directory", "https://localhost:14000/dir"),
    ({"tls": "acme", "acme_email": "a@example.org",
      "acme_directory": "https://ca.internal:9000/acme/acme/directory"},
     "acme_directory", "https://ca.internal:9000/acme/acme/directory"),
    ({"tls": "acme", "acme_email": "a@example.org", "acme_directory": "https://[fd00::7]:14000/dir/"},
     "acme_directory", "https://[fd00::7]:14000/dir/"),
    ({"tls": "provided", "tls_cert": "/etc/letsencrypt/live/photos.example.org/fullchain.pem",
      "tls_key": "/etc/ssl/private/immich+key@2024.pem"},
     "tls_key_path", "/etc/ssl/private/immich+key@2024.pem"),
    ({"tls": "selfsigned", "public_url": "https://[fd00::1]"}, "tls_dir", "/etc/immich-proxy/tls/fd00::1"),
    ({"cloudflare_plan": "business", "max_body_size": "200M"}, "cloudflare_plan", "business"),
]


@pytest.mark.parametrize("raw, key, expected", ORDINARY, ids=["%s=%s" % (r[1], i) for i, r in enumerate(ORDINARY)])
def test_ordinary_value_is_accepted(raw, key, expected):
    settings, _warnings = normalise(dict(GOOD, **raw))
    assert settings[key] == expected


@pytest.mark.parametrize("values, expected", [
    ({"nginx_ipv6": "no", "nginx_backend_fail_timeout": 10, "nginx_client_body_buffer_size": 1024},
     {"nginx_ipv6": False, "nginx_backend_fail_timeout": 10, "nginx_client_body_buffer_size": 1024}),
    ({"nginx_ipv6": True, "nginx_client_body_buffer_size": "64M", "nginx_access_log": None},
     {"nginx_ipv6": True, "nginx_client_body_buffer_size": 64 * 1024 ** 2, "nginx_access_log": None}),
    ({"nginx_extra_server_directives": ['add_header X-Note "café { $host }";', ""]},
     {"nginx_extra_server_directives": ['add_header X-Note "café { $host }";', ""]}),
    ({"apache_http2": "off", "apache_backend_retry": "30", "apache_log_level": "info",
      "apache_extra_vhost_directives": ['Header always set X-Note "%{HTTP_HOST}e"']},
     {"apache_http2": False, "apache_backend_retry": 30, "apache_log_level": "info",
      "apache_extra_vhost_directives": ['Header always set X-Note "%{HTTP_HOST}e"']}),
    ({"caddy_install": "binary", "caddy_binary_src": "/opt/caddy/bin/caddy", "caddy_lb_policy": "least_conn",
      "caddy_health_interval": "10", "caddy_http3": "yes", "caddy_extra_site_directives": ["encode zstd gzip"]},
     {"caddy_install": "binary", "caddy_binary_src": "/opt/caddy/bin/caddy", "caddy_lb_policy": "least_conn",
      "caddy_health_interval": 10, "caddy_http3": True, "caddy_extra_site_directives": ["encode zstd gzip"]}),
])
def test_ordinary_role_values_are_accepted(values, expected):
    settings, _warnings = normalise(GOOD, role_spec=ROLE_SPEC, role_values=dict(ROLE_GOOD, **values))
    for name, value in expected.items():
        assert settings["role"][name] == value


# -- Every returned string is within its field's allowlist --------------------------

ACCEPTED = [dict(GOOD, **raw) for raw, _key, _expected in ORDINARY] + [
    dict(GOOD, tls="acme", acme_email="a@example.org", backends=["https://immich.lan:2283", "https://immich.lan:2284"],
         backend_ca_file="/etc/ssl/ca.pem", trusted_proxies=["10.0.0.0/8", "fd00::/8"], cloudflare_plan="free",
         check_ca_path="/etc/ssl/ca.pem", acme_ca_file="/etc/ssl/pebble.pem", http_port="80", https_port="8443"),
    {"public_url": "http://192.168.1.10:8080", "tls": "off"},
    dict(GOOD, trusted_proxies=["172.16.0.0/12", "192.168.1.7", "::1", "fd00::7", "0.0.0.0/0"],
         trusted_proxies_allow_any="yes"),
]
# What may appear in a returned string outside the raw-line escape hatch: no quote, space, ';', braces, '$',
# '%', '#', backtick, '*', '&', '!', or anything that is not printable ASCII.
CONFIG_SAFE = re.compile(r"[A-Za-z0-9._~:/@+\[\]-]*")
# The trusted proxies' regex (for proxies without a real-IP module): regex syntax, still no quote, blank, ';',
# brace, '%', '#' or backtick, so it can sit in a backtick-quoted Caddyfile token or a YAML string.
REGEX_SAFE = re.compile(r"[0-9a-f:.|()?*+,\[\]^\\s$-]*")


def _strings(value, where):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, "%s.%s" % (where, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, "%s[%d]" % (where, index))
    elif isinstance(value, str):
        yield where, value


@pytest.mark.parametrize("raw", ACCEPTED)
def test_every_returned_string_matches_its_fields_allowlist(raw):
    settings, _warnings = normalise(raw, role_spec=ROLE_SPEC, role_values=ROLE_GOOD)
    assert set(settings) == set(OUTPUT) | {"role"}
    for key, (_name, shape) in OUTPUT.items():
        assert list(shape.violations(settings[key], key)) == []
    for where, text in _strings(settings, "settings"):
        # the raw escape hatches (type lines) are single printable lines, tested by the proxy's own checker
        if any(where.startswith("settings.role.%s[" % name) for name, spec in ROLE_SPEC.items()
               if spec["type"] == "lines"):
            assert "\n" not in text and text.isprintable()
        elif where == "settings.trusted_proxies_regex":
            assert REGEX_SAFE.fullmatch(text), "%s = %r is not regex-safe" % (where, text)
        else:
            assert CONFIG_SAFE.fullmatch(text), "%s = %r is not config-safe" % (where, text)


# -- A parser gap fails closed ---------------------------------------------------------

def test_an_unsafe_string_from_a_parser_is_refused_by_the_allowlist(monkeypatch):
    monkeypatch.setitem(PARSERS, "tls_cert", lambda value: "/etc/ssl/c.pem;\n ssl_verify off")
    with pytest.raises(SettingsError) as caught:
        normalise(dict(GOOD, tls="provided", tls_cert="/etc/ssl/c.pem", tls_key="/etc/ssl/k.pem"))
    problems = caught.value.problems
    assert problems and all(p.startswith("immich_proxy_tls_cert ") for p in problems)
    assert "allowlist" in problems[0]


def test_an_unsafe_host_from_the_url_parser_is_refused_naming_the_public_url(monkeypatch):
    def leaky(value):
        return {"scheme": "https", "host": "photos.example.org;}", "port": 443, "explicit_port": False}

    monkeypatch.setitem(PARSERS, "public_url", leaky)
    with pytest.raises(SettingsError) as caught:
        normalise(GOOD)
    assert all(p.startswith("immich_proxy_public_url ") for p in caught.value.problems)
    assert any("server_name" in p for p in caught.value.problems)


def test_an_unsafe_role_value_from_its_parser_is_refused_naming_the_role_variable(monkeypatch):
    monkeypatch.setitem(_settings.ROLE_TYPES, "str", (lambda value, **_kw: value + "\n}", {"pattern": "pattern"}))
    with pytest.raises(SettingsError) as caught:
        normalise(GOOD, role_spec={"nginx_log_format": {"type": "str", "pattern": "[a-z]+"}},
                  role_values={"nginx_log_format": "main"})
    assert caught.value.problems[0].startswith("nginx_log_format ")
    assert "allowlist" in caught.value.problems[0]


def test_a_returned_key_without_an_allowlist_is_refused(monkeypatch):
    build = _settings._build
    monkeypatch.setattr(_settings, "_build", lambda values, role: dict(build(values, role), extra="x"))
    with pytest.raises(SettingsError) as caught:
        normalise(GOOD)
    assert caught.value.problems[0].startswith("immich_proxy_extra ")


# -- One run reports everything -----------------------------------------------------------

def test_all_problems_type_errors_included_come_in_one_error():
    raw = {
        "public_url": {"url": "https://x.org"},          # a dict for a string
        "backends": "http://a:2283",                     # a string for a list
        "max_body_size": 1.5,                            # a float for a size
        "timeout": "600.0",                              # not a whole number
        "tls": "letsencrypt",                            # not a choice
        "tls_cert": ["/etc/ssl/c.pem"],                  # a list for a path
        "acme_email": "--staging@example.org",           # an option to certbot
        "acme_directory": "http://acme.example/dir",     # not https
        "hsts": "maybe",                                 # not a boolean
        "hsts_max_age": 10 ** 12,                        # above ten years
        "trusted_proxies": [ZONE_PAYLOAD, "0.0.0.0/0"],  # a zone ID, and everyone
        "http_port": 80.0,                               # a float for a port
        "https_port": 70000,                             # out of range
        "cloudflare_plan": "ultra",                      # not a plan
        "check": "sometimes",                            # not a boolean
        "check_ca_path": "ca.pem",                       # not absolute
    }
    role = dict(ROLE_GOOD, nginx_ipv6="maybe", nginx_backend_fail_timeout="10s")
    del role["nginx_log_format"]
    with pytest.raises(SettingsError) as caught:
        normalise(raw, role_spec=ROLE_SPEC, role_values=role)
    named = {p.split(" ", 1)[0] for p in caught.value.problems}
    assert named == {"immich_proxy_" + name for name in raw} | {
        "nginx_ipv6", "nginx_backend_fail_timeout", "nginx_log_format"}
    assert sum(p.startswith("immich_proxy_trusted_proxies ") for p in caught.value.problems) == 2


# -- The trusted proxies as a regex over X-Forwarded-For (Caddy) ----------------------------

@pytest.mark.parametrize("trusted, chain, expected", [
    (["127.0.0.5/32"], "203.0.113.7", ("203.0.113.7", "203.0.113.7")),
    (["127.0.0.5/32"], "6.6.6.6, 203.0.113.7", ("6.6.6.6, 203.0.113.7", "203.0.113.7")),
    (["127.0.0.5/32"], "203.0.113.7, 127.0.0.5", ("203.0.113.7", "203.0.113.7")),
    (["127.0.0.5/32"], "203.0.113.7, 127.0.0.55", ("203.0.113.7, 127.0.0.55", "127.0.0.55")),
    (["10.0.0.0/9"], "1.2.3.4,10.127.255.255 , 10.0.0.1", ("1.2.3.4", "1.2.3.4")),
    (["10.0.0.0/9"], "1.2.3.4, 10.128.0.1", ("1.2.3.4, 10.128.0.1", "10.128.0.1")),
    (["172.16.0.0/12", "::1"], "2001:db8::1, 172.31.0.9, ::1", ("2001:db8::1", "2001:db8::1")),
    (["0.0.0.0/0"], "9.9.9.9, 8.8.8.8", ("9.9.9.9", "9.9.9.9")),
])
def test_the_trusted_chain_regex_cuts_after_the_real_client(trusted, chain, expected):
    settings, _warnings = normalise(dict(GOOD, trusted_proxies=trusted, trusted_proxies_allow_any=True))
    assert re.fullmatch(settings["trusted_proxies_regex"], chain).groups() == expected


@pytest.mark.parametrize("trusted", [[], ["fd00::/64"], ["10.0.0.0/8", "fd00::/120"]])
def test_no_trusted_chain_regex_without_trusted_proxies_or_for_an_ipv6_network(trusted):
    settings, _warnings = normalise(dict(GOOD, trusted_proxies=trusted))
    assert settings["trusted_proxies_regex"] is None
