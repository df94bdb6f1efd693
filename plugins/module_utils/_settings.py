# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: homelab.immich_proxy contributors
"""The shared settings contract: what Immich asks of every reverse proxy.

Every role renders what ``normalise()`` returns, so Immich's rules (root path
only, body size, timeouts, headers, the well-known path, TLS policy, Cloudflare
limits) are written here once. Every value that reaches a config file is parsed
into a strict shape first, so no input can smuggle a directive into nginx,
Apache, Caddy, Traefik or cloudflared syntax.
"""
from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

# Immich's documented reverse-proxy settings.
IMMICH_PORT = 2283
IMMICH_MIN_TIMEOUT = 600
IMMICH_DEFAULT_BODY_SIZE = "50000M"
WELL_KNOWN_PATH = "/.well-known/immich"
WEBSOCKET_PATH = "/api/socket.io"
PING_PATH = "/api/server/ping"
ACME_CHALLENGE_PATH = "/.well-known/acme-challenge/"
LETS_ENCRYPT_DIRECTORY = "https://acme-v02.api.letsencrypt.org/directory"
# Where every role keeps a self-signed or ACME certificate, one directory per host
# name, and the webroot certbot answers http-01 from.
TLS_ROOT = "/etc/immich-proxy/tls"
ACME_WEBROOT = "/var/lib/immich-proxy/acme"

# Mozilla's "intermediate" TLS profile (ssl-config.mozilla.org, version 5.7).
# The DHE suites are left out: they need a dhparam file and every client that
# speaks TLS 1.2 to Immich also speaks ECDHE.
TLS_PROTOCOLS = ("TLSv1.2", "TLSv1.3")
TLS_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
)
HSTS_DEFAULT_MAX_AGE = 63072000

TLS_MODES = ("off", "provided", "selfsigned", "acme")

_UNITS = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4}
_SIZE_RE = re.compile(r"^([0-9]{1,15})\s*([kKmMgGtT]?)[bB]?$")
_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_PATH_RE = re.compile(r"^/[A-Za-z0-9._/@+-]*$")
_EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")

DEFAULTS = {
    "backends": ["http://127.0.0.1:%d" % IMMICH_PORT],
    "max_body_size": IMMICH_DEFAULT_BODY_SIZE,
    "timeout": IMMICH_MIN_TIMEOUT,
    "tls": "off",
    "tls_cert": None,
    "tls_key": None,
    "acme_email": None,
    "acme_directory": LETS_ENCRYPT_DIRECTORY,
    "acme_ca_file": None,
    "hsts": True,
    "hsts_max_age": HSTS_DEFAULT_MAX_AGE,
    "trusted_proxies": [],
    "http_port": 80,
    "https_port": 443,
}


class SettingsError(Exception):
    """One or more settings are invalid; ``problems`` lists every one."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


def _var(name):
    return "immich_proxy_" + name


def _quote(value):
    text = str(value)
    if len(text) > 120:
        text = text[:117] + "..."
    return "'" + text.encode("unicode_escape").decode("ascii") + "'"


def parse_host(host):
    """Return a DNS name (lower case) or an IP literal, or raise ValueError."""
    if not host:
        raise ValueError("has no host name")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    name = host.rstrip(".").lower()
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL_RE.match(label) for label in labels):
        raise ValueError("has an invalid host name %s" % _quote(host))
    if labels[-1].isdigit():
        raise ValueError("has an invalid host name %s" % _quote(host))
    return name


def _check_text(value):
    """Reject characters that could end a directive in any proxy's syntax."""
    if any(ch in value for ch in " \t\r\n;{}\"'`\\<>$#|"):
        raise ValueError("contains a character that is not allowed in a URL here "
                         "(space, quote, ';', '{', '}', '$', '#', '\\' or a line break)")


def parse_url(value, allow_root_path=True, what="URL"):
    """Parse an http(s) URL that must sit at the root of its host.

    Returns a dict with scheme, host, port (always set), explicit_port and url.
    """
    if not isinstance(value, str) or not value.strip():
        raise ValueError("is empty; give a %s such as 'https://photos.example.org'" % what)
    _check_text(value)
    if "://" not in value:
        raise ValueError("has no scheme; write it as 'https://%s' or 'http://%s'" % (value, value))
    parts = urlsplit(value)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError("has scheme '%s'; only http:// and https:// are supported" % parts.scheme)
    if "@" in parts.netloc:
        raise ValueError("contains user info ('user@'); credentials do not belong in a proxy URL")
    if parts.query or value.endswith("?"):
        raise ValueError("has a query string; give the bare URL")
    if parts.fragment or "#" in value:
        raise ValueError("has a fragment; give the bare URL")
    if parts.path not in ("", "/"):
        if allow_root_path:
            raise ValueError("has the path '%s'; Immich must be served at the root of a (sub)domain, "
                             "it does not support a sub-path: use e.g. 'https://photos.example.org'"
                             % parts.path)
        raise ValueError("has the path '%s'; a backend is the Immich server's root, e.g. 'http://10.0.0.5:2283'"
                         % parts.path)
    try:
        port = parts.port
    except ValueError:
        raise ValueError("has an invalid port") from None
    host = parse_host(parts.hostname)
    default_port = 443 if scheme == "https" else 80
    if port == 0:
        raise ValueError("has port 0")
    explicit = port is not None and port != default_port
    port = port or default_port
    host_in_url = "[%s]" % host if ":" in host else host
    authority = host_in_url + (":%d" % port if explicit else "")
    return {
        "scheme": scheme,
        "host": host,
        "port": port,
        "explicit_port": explicit,
        "authority": authority,
        "address": "%s:%d" % (host_in_url, port),
        "url": "%s://%s" % (scheme, authority),
    }


def parse_size(value):
    """Return a body size in bytes; 0 means unlimited. Accepts 50000M, 1g, 1048576."""
    if isinstance(value, bool):
        raise ValueError("is a boolean; give a size such as '50000M' or 0 for unlimited")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("is negative")
        return value
    match = _SIZE_RE.match(str(value).strip())
    if not match:
        raise ValueError("is not a size; write it as a number with an optional k, M or G suffix, "
                         "e.g. '50000M', or 0 for unlimited")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def _port(value):
    if isinstance(value, bool):
        raise ValueError("is a boolean")
    try:
        port = int(str(value).strip())
    except ValueError:
        raise ValueError("is not a port number") from None
    if not 1 <= port <= 65535:
        raise ValueError("is outside 1-65535")
    return port


def _path(value):
    if not isinstance(value, str) or not _PATH_RE.match(value) or "/../" in value + "/":
        raise ValueError("is not an absolute path of letters, digits and ._/@+- (no spaces, quotes or '..')")
    return value


def format_size(size):
    """Human form of a byte count for messages: 52428800000 -> '50000M'."""
    if size == 0:
        return "unlimited"
    for unit in ("T", "G", "M", "K"):
        factor = _UNITS[unit.lower()]
        if size % factor == 0:
            return "%d%s" % (size // factor, unit)
    return str(size)


def normalise(raw, cloudflare_plan=None):
    """Validate the contract and return (settings, warnings).

    ``raw`` maps the variable names without the ``immich_proxy_`` prefix to the
    values given; missing ones take DEFAULTS. All problems are collected and
    raised together as SettingsError.
    """
    values = dict(DEFAULTS)
    values.update({k: v for k, v in raw.items() if v is not None})
    problems = []
    warnings = []
    out = {}

    def fail(name, value, why):
        problems.append("%s %s %s" % (_var(name), _quote(value), why))

    try:
        public = parse_url(raw.get("public_url"), what="public URL")
        out["public_url"] = public["url"]
        out["scheme"] = public["scheme"]
        out["server_name"] = public["host"]
        out["server_name_is_ip"] = _is_ip(public["host"])
        out["public_port"] = public["port"]
        out["public_authority"] = public["authority"]
    except ValueError as exc:
        public = None
        fail("public_url", raw.get("public_url"), exc)

    backends = values["backends"]
    if isinstance(backends, str):
        backends = [backends]
    if not isinstance(backends, list) or not backends:
        fail("backends", backends, "must be a non-empty list of URLs such as ['http://127.0.0.1:2283']")
        backends = []
    parsed_backends = []
    for item in backends:
        try:
            parsed = parse_url(item, allow_root_path=False, what="backend URL")
        except ValueError as exc:
            fail("backends", item, exc)
            continue
        if any(b["address"] == parsed["address"] for b in parsed_backends):
            fail("backends", item, "is listed twice")
            continue
        parsed_backends.append(parsed)
    schemes = {b["scheme"] for b in parsed_backends}
    if len(schemes) > 1:
        fail("backends", backends, "mixes http:// and https://; every backend in the pool must use the same scheme")
    out["backends"] = [{"scheme": b["scheme"], "host": b["host"], "port": b["port"],
                        "address": b["address"], "url": b["url"]} for b in parsed_backends]
    out["backend_scheme"] = parsed_backends[0]["scheme"] if parsed_backends else "http"
    out["load_balanced"] = len(parsed_backends) > 1

    try:
        out["max_body_size_bytes"] = parse_size(values["max_body_size"])
    except ValueError as exc:
        fail("max_body_size", values["max_body_size"], exc)

    try:
        timeout = int(values["timeout"]) if not isinstance(values["timeout"], bool) else None
        if timeout is None or timeout < 1:
            raise ValueError
        out["timeout"] = timeout
        if timeout < IMMICH_MIN_TIMEOUT:
            warnings.append("immich_proxy_timeout is %d s; Immich's documentation recommends at least %d s "
                            "(uploads of large videos are cut off when the proxy times out)"
                            % (timeout, IMMICH_MIN_TIMEOUT))
    except (TypeError, ValueError):
        fail("timeout", values["timeout"], "must be a whole number of seconds, at least 1 (Immich recommends 600)")

    for name in ("http_port", "https_port"):
        try:
            out[name] = _port(values[name])
        except ValueError as exc:
            fail(name, values[name], exc)
    if out.get("http_port") and out.get("http_port") == out.get("https_port"):
        fail("https_port", values["https_port"], "is the same as immich_proxy_http_port")

    tls = values["tls"]
    if tls is False:
        tls = "off"
    if tls not in TLS_MODES:
        fail("tls", tls, "must be one of %s" % ", ".join(TLS_MODES))
        tls = "off"
    out["tls"] = tls
    out["tls_enabled"] = tls != "off"
    if public and tls != "off" and public["scheme"] != "https":
        fail("public_url", raw.get("public_url"),
             "starts with http:// but immich_proxy_tls is '%s'; use an https:// public URL" % tls)
    if public and tls == "off" and public["scheme"] == "https":
        warnings.append("immich_proxy_public_url is https:// but immich_proxy_tls is 'off': this proxy serves "
                        "plain HTTP and something in front of it must terminate TLS")

    for name in ("tls_cert", "tls_key", "acme_ca_file"):
        out[name] = None
        if values[name] is not None:
            try:
                out[name] = _path(values[name])
            except ValueError as exc:
                fail(name, values[name], exc)
    if tls == "provided":
        for name in ("tls_cert", "tls_key"):
            if values[name] is None:
                problems.append("%s is required when immich_proxy_tls is 'provided' "
                                "(the path of the certificate files on the host)" % _var(name))

    out["acme_email"] = None
    out["acme_directory"] = None
    if tls == "acme":
        email = values["acme_email"]
        if not email:
            problems.append("immich_proxy_acme_email is required when immich_proxy_tls is 'acme' "
                            "(the ACME CA sends expiry warnings there)")
        elif not isinstance(email, str) or not _EMAIL_RE.match(email):
            fail("acme_email", email, "is not an e-mail address")
        else:
            out["acme_email"] = email
        try:
            directory = parse_url_with_path(values["acme_directory"])
            out["acme_directory"] = directory
        except ValueError as exc:
            fail("acme_directory", values["acme_directory"], exc)
        if public and _is_ip(public["host"]):
            fail("public_url", raw.get("public_url"),
                 "has an IP address; ACME http-01 certificates need a DNS name")
        if out.get("http_port") not in (None, 80):
            warnings.append("immich_proxy_http_port is %s; ACME http-01 validation always connects to port 80, "
                            "so port 80 must be forwarded to it" % out["http_port"])

    out["hsts"] = bool(values["hsts"]) and tls != "off"
    try:
        out["hsts_max_age"] = int(values["hsts_max_age"])
        if out["hsts_max_age"] < 0:
            raise ValueError
    except (TypeError, ValueError):
        fail("hsts_max_age", values["hsts_max_age"], "must be a whole number of seconds")

    trusted = values["trusted_proxies"]
    if isinstance(trusted, str):
        trusted = [trusted]
    if not isinstance(trusted, list):
        fail("trusted_proxies", trusted, "must be a list of CIDRs such as ['10.0.0.0/8']")
        trusted = []
    out["trusted_proxies"] = []
    for cidr in trusted:
        try:
            if not isinstance(cidr, str) or "/" in cidr and not cidr.split("/", 1)[1].isdigit():
                raise ValueError
            network = ipaddress.ip_network(cidr.strip(), strict=False)
        except ValueError:
            fail("trusted_proxies", cidr, "is not an IP address or CIDR such as '10.0.0.0/8'")
            continue
        out["trusted_proxies"].append(str(network))

    if cloudflare_plan is not None:
        limit = CLOUDFLARE_UPLOAD_LIMITS.get(cloudflare_plan)
        size = out.get("max_body_size_bytes")
        if limit and size is not None and (size == 0 or size > limit):
            warnings.append("immich_proxy_max_body_size is %s but Cloudflare's %s plan cuts request bodies at %s; "
                            "larger uploads fail with 413 at Cloudflare"
                            % (format_size(size), cloudflare_plan, format_size(limit)))

    # The files the proxy serves: the user's for provided, the role-managed pair
    # (self-signed, or links to certbot's) otherwise.
    out["tls_dir"] = out["tls_cert_path"] = out["tls_key_path"] = None
    if public and tls in ("selfsigned", "acme"):
        out["tls_dir"] = "%s/%s" % (TLS_ROOT, public["host"])
        out["tls_cert_path"] = out["tls_dir"] + "/fullchain.pem"
        out["tls_key_path"] = out["tls_dir"] + "/privkey.pem"
    elif tls == "provided":
        out["tls_cert_path"], out["tls_key_path"] = out["tls_cert"], out["tls_key"]
    out["acme_webroot"] = ACME_WEBROOT

    out["well_known_path"] = WELL_KNOWN_PATH
    out["websocket_path"] = WEBSOCKET_PATH
    out["acme_challenge_path"] = ACME_CHALLENGE_PATH
    out["tls_protocols"] = list(TLS_PROTOCOLS)
    out["tls_ciphers"] = list(TLS_CIPHERS)

    if problems:
        raise SettingsError(problems)
    return out, warnings


# Cloudflare's request body limit per plan (developers.cloudflare.com, "Limits").
CLOUDFLARE_UPLOAD_LIMITS = {
    "free": 100 * 1024 ** 2,
    "pro": 100 * 1024 ** 2,
    "business": 200 * 1024 ** 2,
    "enterprise": 500 * 1024 ** 2,
}


def _is_ip(host):
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def parse_url_with_path(value):
    """An http(s) URL that may carry a path (an ACME directory)."""
    if not isinstance(value, str) or not value:
        raise ValueError("is empty")
    _check_text(value)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("is not an http(s) URL")
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError("must not have a query, fragment or user info")
    return value
