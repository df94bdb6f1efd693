# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: homelab.immich_proxy contributors
"""The shared settings contract: what Immich asks of every reverse proxy.

Every role renders what ``normalise()`` returns, so Immich's rules (root path
only, body size, timeouts, headers, the well-known path, TLS policy, Cloudflare
limits) are written here once. ``CONTRACT`` is the one source of the
``immich_proxy_*`` variables: their types, defaults and documentation; roles'
argument specs and defaults, and the settings module's options, are made from it.

The values returned are written into five config languages (nginx, Apache
httpd, Caddyfile, Traefik YAML, cloudflared YAML), each with its own quoting,
variables and comment syntax. So nothing given is passed through: each variable
has its own parser that takes the value apart, every returned string is rebuilt
from the parsed parts, and a final allowlist (a full regex match per returned
field) refuses the result if a parser ever lets something through, naming the
variable. Parsers never use ``re.IGNORECASE`` (it matches the Kelvin sign as
'k'), ``$`` (it matches before a trailing newline), ``\\d`` or ``int()`` on
unchecked text (both take any Unicode digit).
"""
from __future__ import annotations

import copy
import ipaddress
import re
from functools import partial

from ansible.module_utils.parsing.convert_bool import BOOLEANS, boolean

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
# speaks TLS 1.2 to Immich also speaks ECDHE. The curves are named because
# OpenSSL's default list also offers secp521r1 and X448, which the profile (and
# sslyze's check of it) does not allow.
TLS_PROTOCOLS = ("TLSv1.2", "TLSv1.3")
TLS_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
)
TLS_CURVES = ("X25519", "prime256v1", "secp384r1")
# The same suites and curves by their IANA registry names, which Go's proxies
# (Caddy, Traefik) read: Go has no DHE suite, and its TLS 1.3 suites are fixed.
TLS_IANA_NAMES = {
    "ECDHE-ECDSA-AES128-GCM-SHA256": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384": "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384": "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305": "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "ECDHE-RSA-CHACHA20-POLY1305": "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "X25519": "x25519",
    "prime256v1": "secp256r1",
    "secp384r1": "secp384r1",
}
HSTS_DEFAULT_MAX_AGE = 63072000

TLS_MODES = ("off", "provided", "selfsigned", "acme")

# Cloudflare's request body limit per plan (developers.cloudflare.com, "Limits").
CLOUDFLARE_UPLOAD_LIMITS = {
    "free": 100 * 1024 ** 2,
    "pro": 100 * 1024 ** 2,
    "business": 200 * 1024 ** 2,
    "enterprise": 500 * 1024 ** 2,
}

# Upper bounds: far beyond any real use, and numbers every proxy's parser reads
# (nginx's off_t and time values, Caddy's and Traefik's Go durations and int64s).
MAX_BODY_SIZE = 16 * 1024 ** 4
MAX_TIMEOUT = 7 * 24 * 3600
MAX_HSTS_MAX_AGE = 10 * 365 * 24 * 3600
MAX_BACKENDS = 64
MAX_TRUSTED_PROXIES = 1024
MAX_LINES = 256
MAX_LINE_LENGTH = 4096
MAX_PATH_LENGTH = 4096
MAX_URL_LENGTH = 2048
# A default range for role ints without bounds: what a 32-bit C int holds.
ROLE_INT_RANGE = (0, 2 ** 31 - 1)

_UNITS = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4}

# The building blocks of the input parsers and of the output allowlist. Only
# ASCII classes: see the module docstring.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DNS = r"%s(?:\.%s)*" % (_LABEL, _LABEL)
# A backend may be a Docker container name, and Immich's compose file names its
# server container immich_server: '_' is allowed there (not in the public name).
_BACKEND_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_BACKEND_DNS = r"%s(?:\.%s)*" % (_BACKEND_LABEL, _BACKEND_LABEL)
_IPV4 = r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}"
_IPV6 = r"[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){1,7}(?::%s)?|[0-9a-f:]*:%s" % (_IPV4, _IPV4)
_HOST = r"(?:%s|%s)" % (_DNS, _IPV6)
_HOST_IN_URL = r"(?:%s|\[(?:%s)\])" % (_DNS, _IPV6)
_PORT = r"[1-9][0-9]{0,4}"
_AUTHORITY = r"%s(?::%s)?" % (_HOST_IN_URL, _PORT)
_PATH_SEGMENT = r"[A-Za-z0-9._@+-]{1,255}"
_PATH = r"(?:/(?!\.\.?(?:/|\Z))%s)+" % _PATH_SEGMENT
_URL_SEGMENT = r"[A-Za-z0-9._~-]{1,255}"
_EMAIL_LOCAL = r"[A-Za-z0-9_+](?:[A-Za-z0-9_+-]|\.(?![.@]|\Z)){0,63}"
# One config line: no C0 or C1 control characters (line breaks, NUL, vertical
# tab, form feed, tab, NEL), no Unicode line or paragraph separators (YAML and
# Python's splitlines() break lines there), no invisible format characters
# (zero-width, bidi overrides, BOM) and no lone surrogates (not encodable).
_LINE = (r"[^\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f"
         r"\ufeff\ufff9-\uffff\ud800-\udfff]*")

_URL_CHARS_RE = re.compile(r"[A-Za-z0-9._~:/?=&%@\[\]-]")
_URL_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?]*)([^?]*)(?:\?(.*))?")
_BRACKETED_RE = re.compile(r"\[([^\]]*)\](?::(.*))?")
_DNS_RE = re.compile(_DNS)
_BACKEND_DNS_RE = re.compile(_BACKEND_DNS)
_IPV4_RE = re.compile(_IPV4)
_IPV6_CHARS_RE = re.compile(r"[0-9A-Fa-f:.]{2,45}")
_URL_PORT_RE = re.compile(r"[0-9]{1,5}")
_URL_SEGMENT_RE = re.compile(_URL_SEGMENT)
_PATH_SEGMENT_RE = re.compile(_PATH_SEGMENT)
_EMAIL_RE = re.compile(r"([^@]{1,64})@([^@]{1,253})")
_EMAIL_CHARS_RE = re.compile(r"[A-Za-z0-9._+@-]")
_EMAIL_LOCAL_RE = re.compile(_EMAIL_LOCAL)
_TLD_RE = re.compile(r"[a-z]{2,63}|xn--[a-z0-9-]{1,59}")
_INT_RE = re.compile(r"-?[0-9]{1,19}")
_SIZE_RE = re.compile(r"([0-9]{1,15})([kKmMgGtT]?)[bB]?")
_BOOL_RE = re.compile(r"[A-Za-z0-9]{1,5}")
_CIDR_RE = re.compile(r"[0-9A-Fa-f.:]{2,45}(?:/[0-9]{1,3})?")
_LINE_RE = re.compile(_LINE)
_TOKEN = r"[A-Za-z0-9._-]*"


# The contract, in the form of a role's meta/argument_specs.yml (without the
# immich_proxy_ prefix). Plain data only: it is dumped into YAML as it is.
CONTRACT = {
    "public_url": {
        "type": "str",
        "required": True,
        "description": [
            "The URL clients use: C(https://) or C(http://), the host, an optional port, no path.",
            "Immich must be served at the root of a (sub)domain; it does not support a sub-path such as "
            "C(https://example.org/immich), so one is refused.",
            "The host is a DNS name (an internationalised one in punycode, C(xn--...)) or an IP address. IPv6 "
            "zone IDs are refused: they are free text that each proxy's config language would read differently.",
        ],
    },
    "backends": {
        "type": "list",
        "elements": "str",
        "default": ["http://127.0.0.1:%d" % IMMICH_PORT],
        "description": [
            "Immich server URLs without a path: C(http://10.0.0.5:2283), a container name "
            "(C(http://immich-server:2283)) or a bracketed IPv6 address (C(http://[fd00::5]:2283)).",
            "Two or more form a load-balanced pool with passive health checks: a backend that fails a request is "
            "skipped for a while.",
            "C(https://) backends are always verified, against C(immich_proxy_backend_ca_file) and the backends' "
            "host name, so every backend of an https pool must use the same host name.",
        ],
    },
    "backend_ca_file": {
        "type": "path",
        "description": [
            "CA bundle (PEM) on the host that signs the certificates of C(https://) backends, for a private CA; "
            "null trusts the system's CAs.",
            "An unverified connection to Immich would let anyone between the proxy and Immich read every photo "
            "and session token, so https backends are verified or refused.",
        ],
    },
    "max_body_size": {
        "type": "raw",
        "default": IMMICH_DEFAULT_BODY_SIZE,
        "description": [
            "Largest request body the proxy admits, in bytes or with a C(k), C(M), C(G) or C(T) suffix "
            "(1024-based, as nginx reads them); C(0) is unlimited.",
            "Immich's documentation uses C(50000M) because videos from phones are large; a smaller limit fails "
            "their upload with 413. More than C(16T) is refused.",
        ],
    },
    "timeout": {
        "type": "int",
        "default": IMMICH_MIN_TIMEOUT,
        "description": [
            "Seconds the proxy waits on a client or on Immich; nginx's and Apache's 60 s defaults and Traefik's "
            "60 s readTimeout cut video uploads.",
            "Immich recommends at least 600; less gives a warning. At most 604800 (a week).",
        ],
    },
    "tls": {
        "type": "str",
        "choices": list(TLS_MODES),
        "default": "off",
        "description": [
            "How the proxy gets its certificate. C(off) serves plain HTTP (TLS ends in front of this proxy, if "
            "anywhere); C(provided) uses C(immich_proxy_tls_cert) and C(immich_proxy_tls_key); C(selfsigned) makes "
            "a certificate on the host; C(acme) gets one from an ACME CA (Let's Encrypt by default) by http-01.",
            "With TLS on, plain HTTP redirects to HTTPS (except the ACME challenge), HSTS is sent and the public "
            "URL must be C(https://).",
            "YAML reads an unquoted C(off) as false, which is taken as C(off) too.",
        ],
    },
    "tls_cert": {
        "type": "path",
        "description": [
            "Path on the host of the certificate chain (PEM), leaf first, for C(immich_proxy_tls=provided).",
            "Absolute, with letters, digits and C(._@+-) between the slashes: the path is written into the "
            "proxy's config, where spaces and quotes would need each language's own escaping.",
        ],
    },
    "tls_key": {
        "type": "path",
        # The path of the key, not the key: nothing to hide from the log.
        "no_log": False,
        "description": [
            "Path on the host of the private key (PEM) for C(immich_proxy_tls=provided); only its path is given, "
            "so it is not a secret.",
            "Absolute, with letters, digits and C(._@+-) between the slashes, as for C(immich_proxy_tls_cert).",
        ],
    },
    "acme_email": {
        "type": "str",
        "description": [
            "Contact address of the ACME account; required for C(immich_proxy_tls=acme): the CA sends expiry "
            "warnings there.",
            "It must not start with C(-), which an ACME client such as certbot would read as an option.",
        ],
    },
    "acme_directory": {
        "type": "str",
        "default": LETS_ENCRYPT_DIRECTORY,
        "description": [
            "ACME directory URL: Let's Encrypt's production directory by default, "
            "C(https://acme-staging-v02.api.letsencrypt.org/directory) for tests, or a private CA's.",
            "C(https://) only, so the account's requests and the certificate order cannot be changed on the way; "
            "a host, an optional port and a path, without user info, query or fragment.",
        ],
    },
    "acme_ca_file": {
        "type": "path",
        "description": [
            "CA bundle (PEM) that signs a private ACME server's HTTPS certificate (step-ca, pebble); null trusts "
            "the system's CAs. The renewal timer is given it too, so renewals verify the same way.",
        ],
    },
    "hsts": {
        "type": "bool",
        "default": True,
        "description": [
            "Send C(Strict-Transport-Security) when TLS is on, so browsers never try plain HTTP again and a "
            "downgrade on a hostile network fails.",
        ],
    },
    "hsts_max_age": {
        "type": "int",
        "default": HSTS_DEFAULT_MAX_AGE,
        "description": [
            "HSTS C(max-age) in seconds: two years by default, as in Mozilla's profile; at most ten years.",
        ],
    },
    "trusted_proxies": {
        "type": "list",
        "elements": "str",
        "default": [],
        "description": [
            "Addresses or CIDRs of the proxies in front of this one (a CDN, a load balancer). Only from those are "
            "C(X-Forwarded-For) and C(X-Forwarded-Proto) believed; anyone else's are replaced, so a client cannot "
            "pass a forged address or scheme on to Immich.",
            "C(0.0.0.0/0) and C(::/0) (everyone) are refused unless C(immich_proxy_trusted_proxies_allow_any) is "
            "true. IPv6 zone IDs are refused.",
        ],
    },
    "trusted_proxies_allow_any": {
        "type": "bool",
        "default": False,
        "description": [
            "Allow C(0.0.0.0/0) or C(::/0) in C(immich_proxy_trusted_proxies), believing anyone's "
            "C(X-Forwarded-For).",
            "Right only when nothing but the trusted proxies can reach this one (a firewall, a tunnel); otherwise "
            "any client can pose as any address.",
        ],
    },
    "http_port": {
        "type": "int",
        "default": 80,
        "description": [
            "Port the proxy listens on for HTTP, 1-65535. With TLS on it serves the redirect and the ACME "
            "http-01 challenge, which the CA always sends to port 80.",
        ],
    },
    "https_port": {
        "type": "int",
        "default": 443,
        "description": [
            "Port the proxy listens on for HTTPS, 1-65535; it must differ from C(immich_proxy_http_port).",
        ],
    },
    "cloudflare_plan": {
        "type": "str",
        # null is a choice: the default (no Cloudflare) must pass a role's
        # argument validation, which checks a null value against the choices.
        "choices": [None, "free", "pro", "business", "enterprise"],
        "description": [
            "The Cloudflare plan when this proxy sits behind Cloudflare, null when it does not.",
            "Cloudflare cuts request bodies at 100 MB (free, pro), 200 MB (business) or 500 MB (enterprise); a "
            "larger C(immich_proxy_max_body_size) gives a warning, because such uploads fail at Cloudflare with "
            "413 whatever this proxy admits.",
        ],
    },
    "check": {
        "type": "bool",
        "default": True,
        "description": [
            "Run the end-to-end check (M(homelab.immich_proxy.check)) at the end of the role: it talks to the "
            "proxy as a client would, so a config that loads but does not serve Immich fails the run.",
        ],
    },
    "check_ca_path": {
        "type": "path",
        "description": [
            "CA bundle (PEM) the end-to-end check verifies the proxy's certificate with, needed for a certificate "
            "from a private CA (provided, or from a private ACME CA).",
            "Null uses the self-signed certificate itself for C(immich_proxy_tls=selfsigned) and the system's CAs "
            "otherwise.",
        ],
    },
}

DEFAULTS = {name: copy.deepcopy(spec.get("default")) for name, spec in CONTRACT.items() if not spec.get("required")}


class SettingsError(Exception):
    """One or more settings are invalid; ``problems`` lists every one."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class _Invalid(ValueError):
    """Parts of one value are wrong (list entries): ``parts`` holds (part, why) pairs, each a problem.

    ``partial`` is what did parse, for the rules between variables to see in the
    same run (a '0.0.0.0/0' next to a typo); it never reaches the settings, which
    are only built when there are no problems.
    """

    def __init__(self, parts, partial=None):
        self.parts = list(parts)
        self.partial = partial
        super().__init__("; ".join(why for _part, why in self.parts))


class _Report:
    """Collects every problem and warning of a run, so they are all reported together."""

    def __init__(self):
        self.problems = []
        self.warnings = []

    def problem(self, name, value, why):
        self.problems.append("%s %s %s" % (name, _quote(value), why))

    def missing(self, name, why):
        self.problems.append("%s %s" % (name, why))

    def failed(self, name, value, exc):
        """Turn a parser's exception into one problem per wrong part."""
        if isinstance(exc, _Invalid):
            for part, why in exc.parts:
                self.problem(name, part, why)
        else:
            self.problem(name, value, str(exc))

    def warn(self, text):
        self.warnings.append(text)


def _var(name):
    return "immich_proxy_" + name


def _quote(value):
    """A value as a message shows it: escaped to printable ASCII, so a message can never carry a line break."""
    text = str(value)
    if len(text) > 120:
        text = text[:117] + "..."
    return "'" + text.encode("unicode_escape").decode("ascii") + "'"


def _kind(value):
    """The type of a value in the words of a YAML user."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a dict"
    return "a %s" % type(value).__name__


def _string(value, what, max_length):
    """``value`` if it is a string of sane length, else ValueError saying what was expected."""
    if not isinstance(value, str):
        raise ValueError("is %s; give %s" % (_kind(value), what))
    if len(value) > max_length:
        raise ValueError("is longer than %d characters" % max_length)
    return value


def _list(value, example, max_items, min_items=0):
    """``value`` if it is a list of acceptable length; a scalar is not silently made a list."""
    if not isinstance(value, list):
        raise ValueError("is %s, not a list; give a list such as %s" % (_kind(value), example))
    if len(value) < min_items:
        raise ValueError("is empty; give a non-empty list such as %s" % example)
    if len(value) > max_items:
        raise ValueError("has %d entries; at most %d are accepted" % (len(value), max_items))
    return value


def _first_bad_char(text, allowed):
    for char in text:
        if not allowed.fullmatch(char):
            return char
    return None


# -- Generic typed parsers (also named by the proxies' role-only variables) ----

def parse_bool(value):
    """A boolean as Ansible reads one (true/false, yes/no, on/off, 1/0); anything else is refused, not coerced."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and _BOOL_RE.fullmatch(value) and value.lower() in BOOLEANS:
        return boolean(value)
    raise ValueError("is not a boolean; use true or false (yes/no, on/off and 1/0 are read too)")


def parse_int(value, lo, hi, what="a whole number"):
    """A whole number in [lo, hi], given as an int or a decimal string; floats are refused, not truncated."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError("is %s; give %s from %d to %d" % (_kind(value), what, lo, hi))
    if isinstance(value, str):
        if not _INT_RE.fullmatch(value):
            raise ValueError("is not %s; give %s from %d to %d" % (what, what, lo, hi))
        value = int(value)
    if not lo <= value <= hi:
        raise ValueError("is outside %d-%d; give %s in that range" % (lo, hi, what))
    return value


parse_port = partial(parse_int, lo=1, hi=65535, what="a port number")


def parse_size(value, lo=0, hi=MAX_BODY_SIZE):
    """A size in bytes, given as an int or as nginx writes one (50000M, 1g, 512k, 100MB); 0 means unlimited."""
    how = "a whole number of bytes, or one with a k, M, G or T suffix such as '50000M'" + (
        " (0 is unlimited)" if lo == 0 else "")
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError("is %s; give %s" % (_kind(value), how))
    if isinstance(value, str):
        match = _SIZE_RE.fullmatch(value)
        if not match:
            raise ValueError("is not a size; give %s" % how)
        value = int(match.group(1)) * _UNITS[match.group(2).lower()]
    if value < lo:
        raise ValueError("is below %s, the smallest accepted size" % (format_size(lo) if lo else "0"))
    if value > hi:
        raise ValueError("is above %s, the largest accepted size" % format_size(hi))
    return value


def parse_str(value, pattern=None, max_length=255, choices=None):
    """A single-line string that fully matches ``pattern`` (or is one of ``choices``)."""
    _string(value, "a string", max_length)
    if choices is not None:
        if value not in choices:
            raise ValueError("must be one of %s" % ", ".join(str(c) for c in choices))
        return value
    bad = _first_bad_char(value, _LINE_RE)
    if bad is not None:
        raise ValueError("contains %s, a control, line-breaking or invisible character" % _quote(bad))
    if not re.fullmatch(pattern or _TOKEN, value):
        raise ValueError("does not have the expected form (it must match %s)" % _quote(pattern or _TOKEN))
    return value


def parse_path(value):
    """An absolute path rebuilt from its components; no quoting is needed for it in any config language."""
    _string(value, "an absolute path such as '/etc/ssl/immich.pem'", MAX_PATH_LENGTH)
    if not value.startswith("/"):
        raise ValueError("is not an absolute path; give one such as '/etc/ssl/immich.pem'")
    segments = value[1:].split("/")
    for segment in segments:
        if segment in ("", ".", ".."):
            raise ValueError("has an empty, '.' or '..' component; give the plain absolute path of a file")
        bad = _first_bad_char(segment, _PATH_SEGMENT_RE)
        if bad is not None or not _PATH_SEGMENT_RE.fullmatch(segment):
            raise ValueError("contains %s; a path here holds only letters, digits and ._@+- between slashes "
                             "(it is written unquoted into the proxy's config)" % _quote(bad or segment))
    return "/" + "/".join(segments)


def parse_lines(value):
    """Raw config lines (an escape hatch): a list of single lines without control or line-breaking characters."""
    _list(value, "['one directive per entry']", MAX_LINES)
    errors = []
    for line in value:
        try:
            _string(line, "one config line as a string", MAX_LINE_LENGTH)
            bad = _first_bad_char(line, _LINE_RE)
            if bad is not None:
                raise ValueError("contains %s; each entry must be one line without control, line-breaking or "
                                 "invisible characters" % _quote(bad))
        except ValueError as exc:
            errors.append((line, str(exc)))
    if errors:
        raise _Invalid(errors)
    return list(value)


def _nullable(parser):
    """``parser`` that lets null through, for variables whose default is null."""

    def parse(value):
        return None if value is None else parser(value)

    parse.__doc__ = parser.__doc__
    return parse


def _choice(choices, value):
    if value is None and None in choices:
        return None
    if not isinstance(value, str) or value not in choices:
        raise ValueError("must be one of %s" % ", ".join("null" if c is None else c for c in choices))
    return value


# -- Hosts and URLs -------------------------------------------------------------

def _parse_ipv6(text):
    """An IPv6 address in its compressed form; a zone ID (``%eth0``) is refused."""
    if "%" in text:
        raise ValueError("has an IPv6 zone ID (%s); zone IDs are refused: they are free text that no proxy "
                         "config can carry safely, and name an interface of one host only"
                         % _quote(text[text.index("%"):]))
    if not _IPV6_CHARS_RE.fullmatch(text):
        raise ValueError("has an invalid IPv6 address %s" % _quote(text))
    try:
        return str(ipaddress.IPv6Address(text))
    except ValueError:
        raise ValueError("has an invalid IPv6 address %s" % _quote(text)) from None


def parse_host(host, names=None):
    """Return a DNS name (lower case, no trailing dot) or an IP address in its canonical form, or raise.

    ``names`` is the pattern a name must match (DNS names; backends also take container names with '_').
    """
    names = names or _DNS_RE
    if not isinstance(host, str) or not host:
        raise ValueError("has no host name")
    if ":" in host:
        return _parse_ipv6(host)
    if _IPV4_RE.fullmatch(host):
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise ValueError("has an invalid IPv4 address %s" % _quote(host)) from None
    name = host[:-1] if host.endswith(".") else host
    name = name.lower()
    if len(name) > 253 or not names.fullmatch(name) or name.rsplit(".", 1)[-1].isdigit():
        raise ValueError("has an invalid host name %s; a host name has letters, digits and '-' between dots "
                         "(internationalised names in punycode, 'xn--...')" % _quote(host))
    return name


def _is_ip(host):
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _host_in_url(host):
    return "[%s]" % host if ":" in host else host


def _check_url_text(value, what, example):
    """Refuse a URL that is not a string, is empty, or holds a character outside the URL allowlist."""
    _string(value, "a %s such as %s" % (what, _quote(example)), MAX_URL_LENGTH)
    if not value.strip():
        raise ValueError("is empty; give a %s such as %s" % (what, _quote(example)))
    bad = _first_bad_char(value, _URL_CHARS_RE)
    if bad is not None and ord(bad) > 127 and bad not in "\x85\u2028\u2029":
        raise ValueError("contains the non-ASCII character %s; write an internationalised host name in "
                         "punycode, e.g. 'https://xn--bcher-kva.example'" % _quote(bad))
    if bad is not None:
        raise ValueError("contains %s, which is not allowed in a URL here (only letters, digits and . _ ~ : / "
                         "[ ] and '-' are)" % _quote(bad))


def _split_authority(netloc, example, names=None):
    """(host, port or None) of a URL's authority; IPv6 only in brackets, never with a zone ID."""
    if "@" in netloc:
        raise ValueError("contains user info ('user@'); credentials do not belong in a proxy URL")
    if netloc.startswith("["):
        match = _BRACKETED_RE.fullmatch(netloc)
        if not match:
            raise ValueError("has an invalid bracketed IPv6 address")
        host, port = _parse_ipv6(match.group(1)), match.group(2)
    elif netloc.count(":") > 1:
        raise ValueError("has an IPv6 address without brackets; write it in brackets, e.g. %s" % _quote(example))
    else:
        host_text, colon, port = netloc.partition(":")
        host = parse_host(host_text, names)
        port = port if colon else None
    if port is None:
        return host, None
    if not _URL_PORT_RE.fullmatch(port) or not 1 <= int(port) <= 65535:
        raise ValueError("has an invalid port %s; ports are 1-65535" % _quote(port))
    return host, int(port)


def _split_url(value, what, example):
    """(scheme, netloc, path, query or None) of a URL whose characters were checked."""
    _check_url_text(value, what, example)
    match = _URL_RE.fullmatch(value)
    if not match:
        raise ValueError("has no scheme; write it as 'https://%s' or 'http://%s'" % (value, value))
    return match.group(1).lower(), match.group(2), match.group(3), match.group(4)


def _url_parts(scheme, host, port):
    default_port = 443 if scheme == "https" else 80
    return {"scheme": scheme, "host": host, "port": port or default_port,
            "explicit_port": port is not None and port != default_port}


def _parse_root_url(value, what, example, path_hint, names=None):
    """Parts of an http(s) URL at the root of its host: scheme, host, port, explicit_port."""
    scheme, netloc, path, query = _split_url(value, what, example)
    if scheme not in ("http", "https"):
        raise ValueError("has scheme '%s'; only http:// and https:// are supported" % scheme)
    if query is not None:
        raise ValueError("has a query string; give the bare URL")
    if path not in ("", "/"):
        raise ValueError("has the path %s; %s" % (_quote(path), path_hint))
    host, port = _split_authority(netloc, example, names)
    return _url_parts(scheme, host, port)


def parse_url(value, allow_root_path=True, what="URL"):
    """Parse an http(s) URL that must sit at the root of its host (kept for the check module).

    Returns a dict with scheme, host, port (always set), explicit_port, authority, address and url.
    """
    if allow_root_path:
        hint = ("Immich must be served at the root of a (sub)domain, it does not support a sub-path: use e.g. "
                "'https://photos.example.org'")
    else:
        hint = "a backend is the Immich server's root, e.g. 'http://10.0.0.5:2283'"
    parts = _parse_root_url(value, what, "https://photos.example.org", hint)
    return dict(parts, authority=_authority(parts), address=_address(parts), url=_url(parts))


def _authority(parts):
    """What a client sends as Host: the host, bracketed if IPv6, with the port only when not the default."""
    return _host_in_url(parts["host"]) + (":%d" % parts["port"] if parts["explicit_port"] else "")


def _address(parts):
    return "%s:%d" % (_host_in_url(parts["host"]), parts["port"])


def _url(parts):
    return "%s://%s" % (parts["scheme"], _authority(parts))


# -- The contract's own parsers -------------------------------------------------

def parse_public_url(value):
    """The public URL: Immich only works at the root of a (sub)domain."""
    return _parse_root_url(
        value, "public URL", "https://photos.example.org",
        "Immich must be served at the root of a (sub)domain, it does not support a sub-path: use e.g. "
        "'https://photos.example.org'")


def _parse_backend(value):
    return _parse_root_url(value, "backend URL", "http://[fd00::5]:2283",
                           "a backend is the Immich server's root, e.g. 'http://10.0.0.5:2283'", _BACKEND_DNS_RE)


def parse_backends(value):
    """The pool: one scheme, no duplicates, and for https one host name (the one certificate name verified)."""
    _list(value, "['http://127.0.0.1:2283']", MAX_BACKENDS, min_items=1)
    parsed, errors = [], []
    for item in value:
        try:
            backend = _parse_backend(item)
        except ValueError as exc:
            errors.append((item, str(exc)))
            continue
        if any(_address(b) == _address(backend) for b in parsed):
            errors.append((item, "is listed twice"))
            continue
        parsed.append(backend)
    if errors:
        raise _Invalid(errors)
    if len({b["scheme"] for b in parsed}) > 1:
        raise ValueError("mixes http:// and https://; every backend in the pool must use the same scheme")
    hosts = sorted({b["host"] for b in parsed})
    if parsed[0]["scheme"] == "https" and _is_ip(hosts[0]):
        # nginx checks only DNS names of a certificate (and sends no SNI to an address), so an
        # https backend given by address could never be verified: every request would fail.
        raise ValueError("are https:// backends given by IP address (%s); a backend's certificate is verified "
                         "by name: give it a DNS name (in DNS or /etc/hosts) that its certificate carries"
                         % ", ".join(hosts))
    if parsed[0]["scheme"] == "https" and len(hosts) > 1:
        raise ValueError("are https:// backends with different host names (%s); the proxy verifies one "
                         "certificate name for the whole pool: give every backend the same name (in DNS or "
                         "/etc/hosts, with different ports if need be) or use http://" % ", ".join(hosts))
    return parsed


def parse_tls(value):
    """The TLS mode; YAML's unquoted ``off`` arrives as false and means off."""
    if value is False:
        return "off"
    return _choice(TLS_MODES, value)


def parse_email(value):
    """An e-mail address rebuilt from its local part and a checked domain; never starts with '-'."""
    _string(value, "an e-mail address such as 'admin@example.org'", 254)
    if value.startswith("-"):
        raise ValueError("starts with '-', which certbot and other ACME clients would read as an option")
    bad = _first_bad_char(value, _EMAIL_CHARS_RE)
    if bad is not None:
        raise ValueError("contains %s, which is not allowed in an e-mail address here" % _quote(bad))
    match = _EMAIL_RE.fullmatch(value)
    if not match or not _EMAIL_LOCAL_RE.fullmatch(match.group(1)):
        raise ValueError("is not an e-mail address such as 'admin@example.org' (letters, digits and ._+- before "
                         "the '@')")
    try:
        domain = parse_host(match.group(2))
    except ValueError:
        raise ValueError("has an invalid domain after the '@'") from None
    if _is_ip(domain) or "." not in domain or not _TLD_RE.fullmatch(domain.rsplit(".", 1)[1]):
        raise ValueError("has an invalid domain after the '@'; ACME CAs want a DNS name such as 'example.org'")
    return "%s@%s" % (match.group(1), domain)


def parse_acme_directory(value):
    """An https ACME directory: host, port and path checked one by one, to be rebuilt from them."""
    example = "https://acme-v02.api.letsencrypt.org/directory"
    scheme, netloc, path, query = _split_url(value, "ACME directory URL", example)
    if scheme != "https":
        raise ValueError("is not https://; an ACME directory must be https://, so the account's requests and "
                         "the certificate order cannot be read or changed on the way")
    if query is not None:
        raise ValueError("has a query string; give the directory URL without one")
    host, port = _split_authority(netloc, example)
    segments = path.split("/")[1:]
    if segments and segments[-1] == "":
        segments.pop()
        trailing = True
    else:
        trailing = False
    for segment in segments:
        if segment in (".", "..") or not _URL_SEGMENT_RE.fullmatch(segment):
            raise ValueError("has an invalid path component %s (letters, digits and ._~- between slashes)"
                             % _quote(segment))
    return dict(_url_parts("https", host, port), segments=segments, trailing_slash=trailing)


def parse_trusted_proxies(value):
    """Networks whose X-Forwarded-* headers are believed, as ip_network objects (duplicates dropped)."""
    _list(value, "['10.0.0.0/8', '192.168.1.7']", MAX_TRUSTED_PROXIES)
    networks, errors = [], []
    for item in value:
        try:
            network = _parse_cidr(item)
        except ValueError as exc:
            errors.append((item, str(exc)))
            continue
        if network not in networks:
            networks.append(network)
    if errors:
        raise _Invalid(errors, partial=networks)
    return networks


def _parse_cidr(item):
    if isinstance(item, str) and "%" in item:
        _parse_ipv6(item.split("/", 1)[0])
    if not isinstance(item, str) or not _CIDR_RE.fullmatch(item):
        raise ValueError("is not an IP address or CIDR such as '10.0.0.0/8'")
    try:
        return ipaddress.ip_network(item, strict=False)
    except ValueError:
        raise ValueError("is not an IP address or CIDR such as '10.0.0.0/8'") from None


PARSERS = {
    "public_url": parse_public_url,
    "backends": parse_backends,
    "backend_ca_file": _nullable(parse_path),
    "max_body_size": parse_size,
    "timeout": partial(parse_int, lo=1, hi=MAX_TIMEOUT, what="a whole number of seconds"),
    "tls": parse_tls,
    "tls_cert": _nullable(parse_path),
    "tls_key": _nullable(parse_path),
    "acme_email": _nullable(parse_email),
    "acme_directory": parse_acme_directory,
    "acme_ca_file": _nullable(parse_path),
    "hsts": parse_bool,
    "hsts_max_age": partial(parse_int, lo=0, hi=MAX_HSTS_MAX_AGE, what="a whole number of seconds"),
    "trusted_proxies": parse_trusted_proxies,
    "trusted_proxies_allow_any": parse_bool,
    "http_port": parse_port,
    "https_port": parse_port,
    "cloudflare_plan": partial(_choice, CONTRACT["cloudflare_plan"]["choices"]),
    "check": parse_bool,
    "check_ca_path": _nullable(parse_path),
}


# -- Rules between variables ----------------------------------------------------
# Each sees only the variables that parsed; one that failed is already reported.

def _check_ports(values, report):
    if "http_port" in values and values.get("http_port") == values.get("https_port"):
        report.problem(_var("https_port"), values["https_port"], "is the same as immich_proxy_http_port")


def _check_tls_and_scheme(values, report):
    public, tls = values.get("public_url"), values.get("tls")
    if not public or not tls:
        return
    if tls != "off" and public["scheme"] != "https":
        report.problem(_var("public_url"), _url(public),
                       "starts with http:// but immich_proxy_tls is '%s'; use an https:// public URL" % tls)
    if tls == "off" and public["scheme"] == "https":
        report.warn("immich_proxy_public_url is https:// but immich_proxy_tls is 'off': this proxy serves plain "
                    "HTTP and something in front of it must terminate TLS")


def _check_provided_files(values, report):
    if values.get("tls") != "provided":
        return
    for name in ("tls_cert", "tls_key"):
        if name in values and values[name] is None:
            report.missing(_var(name), "is required when immich_proxy_tls is 'provided' "
                                       "(the path of the certificate files on the host)")


def _check_acme(values, report):
    if values.get("tls") != "acme":
        return
    if "acme_email" in values and values["acme_email"] is None:
        report.missing(_var("acme_email"), "is required when immich_proxy_tls is 'acme' "
                                           "(the ACME CA sends expiry warnings there)")
    public = values.get("public_url")
    if public and _is_ip(public["host"]):
        report.problem(_var("public_url"), _url(public), "has an IP address; ACME http-01 certificates need a "
                                                         "DNS name")
    if values.get("http_port") not in (None, 80):
        report.warn("immich_proxy_http_port is %s; ACME http-01 validation always connects to port 80, so port 80 "
                    "must be forwarded to it" % values["http_port"])


def _check_timeout(values, report):
    timeout = values.get("timeout")
    if timeout is not None and timeout < IMMICH_MIN_TIMEOUT:
        report.warn("immich_proxy_timeout is %d s; Immich's documentation recommends at least %d s (uploads of "
                    "large videos are cut off when the proxy times out)" % (timeout, IMMICH_MIN_TIMEOUT))


def _check_trust_in_everyone(values, report):
    if "trusted_proxies_allow_any" not in values:
        return
    for network in values.get("trusted_proxies", []):
        if network.prefixlen != 0:
            continue
        if values["trusted_proxies_allow_any"]:
            report.warn("immich_proxy_trusted_proxies has %s: anyone who reaches this proxy can set the client "
                        "address Immich sees" % network)
        else:
            report.problem(_var("trusted_proxies"), str(network),
                           "trusts every address, so anyone's X-Forwarded-For would be believed; list the "
                           "networks of the proxies in front, or set immich_proxy_trusted_proxies_allow_any: true "
                           "if nothing else can reach this proxy")


def _check_cloudflare(values, report):
    plan, size = values.get("cloudflare_plan"), values.get("max_body_size")
    limit = CLOUDFLARE_UPLOAD_LIMITS.get(plan)
    if limit and size is not None and (size == 0 or size > limit):
        report.warn("immich_proxy_max_body_size is %s but Cloudflare's %s plan cuts request bodies at %s; larger "
                    "uploads fail with 413 at Cloudflare (Immich has no chunked upload: upload through a LAN proxy "
                    "instead), and Cloudflare answers 524 when Immich takes more than 100 s to respond"
                    % (format_size(size), plan, format_size(limit)))


def _check_backend_ca(values, report):
    backends = values.get("backends")
    if backends and values.get("backend_ca_file") and backends[0]["scheme"] != "https":
        report.warn("immich_proxy_backend_ca_file is set but the backends are http://; it is not used")


CROSS_CHECKS = (
    _check_ports,
    _check_tls_and_scheme,
    _check_provided_files,
    _check_acme,
    _check_timeout,
    _check_trust_in_everyone,
    _check_cloudflare,
    _check_backend_ca,
)


# -- Role-only variables ----------------------------------------------------------

# type -> (parser, the spec keys it takes -> its keyword).
ROLE_TYPES = {
    "bool": (parse_bool, {}),
    "int": (partial(parse_int, lo=ROLE_INT_RANGE[0], hi=ROLE_INT_RANGE[1]), {"min": "lo", "max": "hi"}),
    "size": (parse_size, {"min": "lo", "max": "hi"}),
    "str": (parse_str, {"pattern": "pattern", "max_length": "max_length", "choices": "choices"}),
    "path": (parse_path, {}),
    "lines": (parse_lines, {}),
}


def _role_parser(spec):
    """The parser a role variable's spec names, or ValueError if the spec itself is wrong (a collection bug)."""
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind not in ROLE_TYPES:
        raise ValueError("has no parser: its adapter declares type %s (known: %s); this is a bug in the collection"
                         % (_quote(kind), ", ".join(sorted(ROLE_TYPES))))
    parser, keywords = ROLE_TYPES[kind]
    unknown = sorted(set(spec) - set(keywords) - {"type", "nullable", "quiet"})
    if unknown:
        raise ValueError("has no parser: its adapter gives %s keys it does not know: %s; this is a bug in the "
                         "collection" % (kind, ", ".join(unknown)))
    parser = partial(parser, **{keywords[key]: value for key, value in spec.items() if key in keywords})
    return _nullable(parser) if spec.get("nullable") else parser


def _parse_role(role_spec, role_values, report):
    """The role's own variables, typed and converted by their adapter's spec; every problem named in full."""
    if role_values is None:
        role_values = {}
    if not isinstance(role_values, dict):
        report.missing("role_variables", "is %s, not a dict of the role's variables" % _kind(role_values))
        return {}
    for name in sorted(set(role_values) - set(role_spec)):
        report.missing(str(name), "is not a variable of this proxy's role (known: %s)"
                       % (", ".join(sorted(role_spec)) or "none"))
    role = {}
    for name, spec in role_spec.items():
        try:
            parser = _role_parser(spec)
        except ValueError as exc:
            report.missing(name, str(exc))
            continue
        value = role_values.get(name)
        if value is None and not spec.get("nullable"):
            report.missing(name, "is not set; the role needs a value (its default is in the role's defaults)")
            continue
        try:
            role[name] = parser(value)
        except ValueError as exc:
            if spec.get("quiet"):
                # a path that may hold a secret given in the wrong variable: named, never quoted
                report.missing(name, "(value not shown: it may be a secret) %s" % _unquoted(exc))
            else:
                report.failed(name, value, exc)
    return role


def _unquoted(exc):
    """A parser's reason without the value it quotes (for a value that must never be shown)."""
    if isinstance(exc, _Invalid):
        return "; ".join(why for _part, why in exc.parts)
    return "is not an absolute path of a file on the controller, such as /home/me/.cloudflared/TUNNEL-ID.json"


# -- The settings the roles render ------------------------------------------------

_OCTET_ANY = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"


def _network_regex(network):
    """A regex that matches exactly the addresses of ``network`` as they appear in X-Forwarded-For, or None.

    IPv4 networks of any size, and single IPv6 addresses (in RFC 5952's form and
    written out in full); an IPv6 network has too many spellings to match as text.
    """
    if network.version == 6:
        if network.prefixlen != 128:
            return None
        address = network.network_address
        return "(?:%s)" % "|".join(sorted({re.escape(address.compressed), re.escape(address.exploded)}))
    octets = network.network_address.packed
    full, partial_bits = divmod(network.prefixlen, 8)
    parts = [str(octet) for octet in octets[:full]]
    if partial_bits:
        first = octets[full]
        parts.append("(?:%s)" % "|".join(str(n) for n in range(first, first + 2 ** (8 - partial_bits))))
    parts += [_OCTET_ANY] * (4 - len(parts))
    return r"\.".join(parts)


def _trusted_chain_regex(networks):
    """For proxies without a real-IP module (Caddy): a regex over a trusted peer's X-Forwarded-For.

    Group 1 is the chain up to the real client (the trusted proxies' own entries
    at its end cut off), group 2 the real client: the right-most entry that is
    not a trusted proxy, as nginx's real_ip_recursive finds it. RE2 and Python
    alike (Go's regexp prefers the shortest lazy match, as Perl does). None when
    there is no trusted proxy, or one that cannot be matched as text.
    """
    alternatives = [_network_regex(network) for network in networks]
    if not alternatives or None in alternatives:
        return None
    return r"^\s*((?:[^,]*,)*?\s*([^,\s]+))(?:\s*,\s*(?:%s))*\s*$" % "|".join(alternatives)


def _tls_files(values):
    """Where the proxy reads its certificate: the user's files, or the role-managed pair per host name."""
    tls, host = values["tls"], values["public_url"]["host"]
    if tls in ("selfsigned", "acme"):
        directory = "%s/%s" % (TLS_ROOT, host)
        return {"tls_dir": directory, "tls_cert_path": directory + "/fullchain.pem",
                "tls_key_path": directory + "/privkey.pem"}
    if tls == "provided":
        return {"tls_dir": None, "tls_cert_path": values["tls_cert"], "tls_key_path": values["tls_key"]}
    return {"tls_dir": None, "tls_cert_path": None, "tls_key_path": None}


def _acme_directory_url(parts):
    path = "".join("/" + segment for segment in parts["segments"]) + ("/" if parts["trailing_slash"] else "")
    return _url(parts) + path


def _build_public(public):
    return {
        "public_url": _url(public),
        "scheme": public["scheme"],
        "server_name": public["host"],
        "server_name_is_ip": _is_ip(public["host"]),
        "public_port": public["port"],
        "public_authority": _authority(public),
        "public_host_header": _authority(public),
        # Every Host a client may send for the public URL: the default port may also be written out.
        "public_host_headers": [_authority(public)] + (
            [] if public["explicit_port"] else ["%s:%d" % (_host_in_url(public["host"]), public["port"])]),
    }


def _build_backends(values):
    backends = values["backends"]
    https = backends[0]["scheme"] == "https"
    return {
        "backends": [{"scheme": b["scheme"], "host": b["host"], "port": b["port"], "address": _address(b),
                      "url": _url(b)} for b in backends],
        "backend_scheme": backends[0]["scheme"],
        "load_balanced": len(backends) > 1,
        "backend_tls_verify": https,
        "backend_tls_name": backends[0]["host"] if https else None,
        "backend_ca_file": values["backend_ca_file"],
    }


def _build(values, role):
    """The settings from parsed parts only: every string here is assembled, none is the value given."""
    tls = values["tls"]
    acme = tls == "acme"
    settings = _build_public(values["public_url"])
    settings.update(_build_backends(values))
    settings.update(_tls_files(values))
    settings.update({
        "max_body_size_bytes": values["max_body_size"],
        "timeout": values["timeout"],
        "http_port": values["http_port"],
        "https_port": values["https_port"],
        "tls": tls,
        "tls_enabled": tls != "off",
        "tls_cert": values["tls_cert"],
        "tls_key": values["tls_key"],
        "acme_email": values["acme_email"] if acme else None,
        "acme_directory": _acme_directory_url(values["acme_directory"]) if acme else None,
        "acme_ca_file": values["acme_ca_file"],
        "acme_webroot": ACME_WEBROOT,
        "acme_challenge_path": ACME_CHALLENGE_PATH,
        "well_known_path": WELL_KNOWN_PATH,
        "websocket_path": WEBSOCKET_PATH,
        "hsts": values["hsts"] and tls != "off",
        "hsts_max_age": values["hsts_max_age"],
        "trusted_proxies": [str(network) for network in values["trusted_proxies"]],
        "trusted_proxies_allow_any": values["trusted_proxies_allow_any"],
        "trusted_proxies_regex": _trusted_chain_regex(values["trusted_proxies"]),
        "tls_protocols": list(TLS_PROTOCOLS),
        "tls_ciphers": list(TLS_CIPHERS),
        "tls_curves": list(TLS_CURVES),
        "tls_ciphers_iana": [TLS_IANA_NAMES[name] for name in TLS_CIPHERS],
        "tls_curves_iana": [TLS_IANA_NAMES[name] for name in TLS_CURVES],
        "cloudflare_plan": values["cloudflare_plan"],
        "check": values["check"],
        "check_ca_path": values["check_ca_path"],
        "role": role,
    })
    return settings


# -- The final allowlist ----------------------------------------------------------------

class _Text:
    """A string that fully matches every one of ``patterns``."""

    def __init__(self, *patterns, nullable=False):
        self.patterns = [re.compile(p) for p in patterns]
        self.nullable = nullable

    def violations(self, value, where):
        if value is None and self.nullable:
            return
        if not isinstance(value, str) or not all(p.fullmatch(value) for p in self.patterns):
            yield where, value


class _Int:
    def __init__(self, lo, hi, nullable=False):
        self.lo, self.hi, self.nullable = lo, hi, nullable

    def violations(self, value, where):
        if value is None and self.nullable:
            return
        if isinstance(value, bool) or not isinstance(value, int) or not self.lo <= value <= self.hi:
            yield where, value


class _Bool:
    def __init__(self, nullable=False):
        self.nullable = nullable

    def violations(self, value, where):
        if not isinstance(value, bool) and not (value is None and self.nullable):
            yield where, value


class _List:
    def __init__(self, element):
        self.element = element

    def violations(self, value, where):
        if not isinstance(value, list):
            yield where, value
            return
        for index, item in enumerate(value):
            yield from self.element.violations(item, "%s[%d]" % (where, index))


class _Record:
    """A dict with exactly these keys, each of its own shape."""

    def __init__(self, fields):
        self.fields = fields

    def violations(self, value, where):
        if not isinstance(value, dict) or set(value) != set(self.fields):
            yield where, value
            return
        for key, shape in self.fields.items():
            yield from shape.violations(value[key], "%s.%s" % (where, key))


def _exactly(*values):
    return "|".join(re.escape(v) for v in values)


_URL_OUT = r"https?://%s" % _AUTHORITY
_CERT_OUT = r"%s|%s/%s/(?:fullchain|privkey)\.pem" % (_PATH, re.escape(TLS_ROOT), _HOST)
_BACKEND_HOST = r"(?:%s|%s)" % (_BACKEND_DNS, _IPV6)
_BACKEND_HOST_IN_URL = r"(?:%s|\[(?:%s)\])" % (_BACKEND_DNS, _IPV6)
_BACKEND_OUT = _Record({
    "scheme": _Text("https?"),
    "host": _Text(_BACKEND_HOST),
    "port": _Int(1, 65535),
    "address": _Text(r"%s:%s" % (_BACKEND_HOST_IN_URL, _PORT)),
    "url": _Text(r"https?://%s(?::%s)?" % (_BACKEND_HOST_IN_URL, _PORT)),
})

# Returned key -> (the variable it comes from, the only shape it may have).
OUTPUT = {
    "public_url": ("public_url", _Text(_URL_OUT)),
    "scheme": ("public_url", _Text("https?")),
    "server_name": ("public_url", _Text(_HOST)),
    "server_name_is_ip": ("public_url", _Bool()),
    "public_port": ("public_url", _Int(1, 65535)),
    "public_authority": ("public_url", _Text(_AUTHORITY)),
    "public_host_header": ("public_url", _Text(_AUTHORITY)),
    "public_host_headers": ("public_url", _List(_Text(r"%s(?::%s)?" % (_HOST_IN_URL, _PORT)))),
    "backends": ("backends", _List(_BACKEND_OUT)),
    "backend_scheme": ("backends", _Text("https?")),
    "load_balanced": ("backends", _Bool()),
    "backend_tls_verify": ("backends", _Bool()),
    "backend_tls_name": ("backends", _Text(_BACKEND_DNS, nullable=True)),
    "backend_ca_file": ("backend_ca_file", _Text(_PATH, nullable=True)),
    "max_body_size_bytes": ("max_body_size", _Int(0, MAX_BODY_SIZE)),
    "timeout": ("timeout", _Int(1, MAX_TIMEOUT)),
    "http_port": ("http_port", _Int(1, 65535)),
    "https_port": ("https_port", _Int(1, 65535)),
    "tls": ("tls", _Text(_exactly(*TLS_MODES))),
    "tls_enabled": ("tls", _Bool()),
    "tls_cert": ("tls_cert", _Text(_PATH, nullable=True)),
    "tls_key": ("tls_key", _Text(_PATH, nullable=True)),
    "tls_dir": ("public_url", _Text(r"%s/%s" % (re.escape(TLS_ROOT), _HOST), nullable=True)),
    "tls_cert_path": ("tls_cert", _Text(_CERT_OUT, nullable=True)),
    "tls_key_path": ("tls_key", _Text(_CERT_OUT, nullable=True)),
    "acme_email": ("acme_email", _Text(r"%s@%s" % (_EMAIL_LOCAL, _DNS), nullable=True)),
    "acme_directory": ("acme_directory", _Text(r"https://%s(?:/%s)*/?" % (_AUTHORITY, _URL_SEGMENT),
                                               nullable=True)),
    "acme_ca_file": ("acme_ca_file", _Text(_PATH, nullable=True)),
    "acme_webroot": ("tls", _Text(_exactly(ACME_WEBROOT))),
    "acme_challenge_path": ("tls", _Text(_exactly(ACME_CHALLENGE_PATH))),
    "well_known_path": ("public_url", _Text(_exactly(WELL_KNOWN_PATH))),
    "websocket_path": ("public_url", _Text(_exactly(WEBSOCKET_PATH))),
    "hsts": ("hsts", _Bool()),
    "hsts_max_age": ("hsts_max_age", _Int(0, MAX_HSTS_MAX_AGE)),
    "trusted_proxies": ("trusted_proxies", _List(_Text(r"(?:%s|%s)/[0-9]{1,3}" % (_IPV4, _IPV6)))),
    "trusted_proxies_allow_any": ("trusted_proxies_allow_any", _Bool()),
    # regex syntax only: no quote, brace, backtick, blank or line break reaches a config
    "trusted_proxies_regex": ("trusted_proxies", _Text(r"\^[0-9a-f:.|()?*+,\[\]^\\s-]+\$", nullable=True)),
    "tls_protocols": ("tls", _List(_Text(_exactly(*TLS_PROTOCOLS)))),
    "tls_ciphers": ("tls", _List(_Text(_exactly(*TLS_CIPHERS)))),
    "tls_curves": ("tls", _List(_Text(_exactly(*TLS_CURVES)))),
    "tls_ciphers_iana": ("tls", _List(_Text(_exactly(*(TLS_IANA_NAMES[name] for name in TLS_CIPHERS))))),
    "tls_curves_iana": ("tls", _List(_Text(_exactly(*(TLS_IANA_NAMES[name] for name in TLS_CURVES))))),
    "cloudflare_plan": ("cloudflare_plan", _Text(_exactly(*CLOUDFLARE_UPLOAD_LIMITS), nullable=True)),
    "check": ("check", _Bool()),
    "check_ca_path": ("check_ca_path", _Text(_PATH, nullable=True)),
}


def _role_shape(spec):
    """The allowlist of a role variable's converted value, from its spec."""
    kind, nullable = spec["type"], bool(spec.get("nullable"))
    if kind == "bool":
        return _Bool(nullable)
    if kind in ("int", "size"):
        lo, hi = ROLE_INT_RANGE if kind == "int" else (0, MAX_BODY_SIZE)
        return _Int(spec.get("min", lo), spec.get("max", hi), nullable)
    if kind == "path":
        return _Text(_PATH, nullable=nullable)
    if kind == "lines":
        return _List(_Text(_LINE))
    if spec.get("choices") is not None:
        return _Text(_exactly(*spec["choices"]), nullable=nullable)
    return _Text(spec.get("pattern") or _TOKEN, _LINE, nullable=nullable)


def _enforce_allowlist(settings, role_spec, report):
    """Refuse the whole result if any returned value falls outside its field's allowlist (fail closed)."""
    for key in sorted(set(settings) - set(OUTPUT) - {"role"}):
        report.missing(_var(key), "is returned without an allowlist; refused (a bug in the settings module)")
    for key, (name, shape) in OUTPUT.items():
        for where, value in shape.violations(settings.get(key), key):
            report.problem(_var(name), value, "became %s, which is outside that field's allowlist; it was refused "
                                              "rather than written into a proxy config (a gap in the settings "
                                              "parser: please report it)" % where)
    role = settings.get("role", {})
    for name in sorted(set(role) - set(role_spec)):
        report.missing(name, "is returned without an allowlist; refused (a bug in the settings module)")
    for name, spec in role_spec.items():
        if name in role:
            for where, value in _role_shape(spec).violations(role[name], "role.%s" % name):
                report.problem(name, value, "became %s, which is outside its allowlist; it was refused (a gap in "
                                            "the settings parser: please report it)" % where)


# -- The one entry point ----------------------------------------------------------

def _parse_contract(raw, report):
    """Each variable through its parser; null or absent takes the default. Returns the parsed values."""
    for name in sorted(set(raw) - set(CONTRACT)):
        report.missing(_var(name), "is not a variable of the immich_proxy contract")
    values = {}
    for name, spec in CONTRACT.items():
        value = raw.get(name)
        if value is None and spec.get("required"):
            report.missing(_var(name), "is required: the URL clients use, such as 'https://photos.example.org'")
            continue
        if value is None:
            value = copy.deepcopy(DEFAULTS[name])
        try:
            values[name] = PARSERS[name](value)
        except ValueError as exc:
            report.failed(_var(name), value, exc)
            if getattr(exc, "partial", None) is not None:
                values[name] = exc.partial
    return values


def normalise(raw, role_spec=None, role_values=None):
    """Validate the contract and a proxy role's own variables; return (settings, warnings).

    ``raw`` maps the variable names without the ``immich_proxy_`` prefix to the
    values given; missing or null ones take their CONTRACT default.
    ``role_spec`` is the proxy adapter's ``variables`` (name -> parser spec) and
    ``role_values`` the role's values for them; the converted values come back
    as ``settings["role"]``. Every problem, type errors included, is collected
    and raised together as one SettingsError.
    """
    role_spec = role_spec or {}
    report = _Report()
    values = _parse_contract(raw, report)
    role = _parse_role(role_spec, role_values, report)
    for check in CROSS_CHECKS:
        check(values, report)
    if report.problems:
        raise SettingsError(report.problems)
    settings = _build(values, role)
    _enforce_allowlist(settings, role_spec, report)
    if report.problems:
        raise SettingsError(report.problems)
    return settings, report.warnings


def format_size(size):
    """Human form of a byte count for messages: 52428800000 -> '50000M'."""
    if size == 0:
        return "unlimited"
    for unit in ("T", "G", "M", "K"):
        factor = _UNITS[unit.lower()]
        if size % factor == 0:
            return "%d%s" % (size // factor, unit)
    return str(size)
