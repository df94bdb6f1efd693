# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: homelab.immich_proxy contributors
"""cloudflared's config.yml, checked the way cloudflared checks it, and stricter.

cloudflared cannot reload, and ``cloudflared tunnel ingress validate`` exits 0
on keys it does not know (a misspelt ``noTlsVerify`` is ignored with a warning,
an unknown top-level key silently), so a config is checked here before it goes
live. The rules follow cloudflared's own parser (ingress/ingress.go
``validateIngress`` and ``validateHostname``, config/configuration.go, read at
2026.8.2); where cloudflared only warns or ignores, this refuses:

- every key must be one cloudflared reads (top level, rule, originRequest, its
  access and ipRules), with the type it decodes it into;
- the last rule matches everything (no hostname, or ``*``, and no path), and
  only the last;
- a hostname has no port and at most one ``*``, as its whole leftmost label
  (cloudflared lets ``*example.com`` through, which then matches only literally);
- a service is ``http_status:100``..``999``, ``hello_world``, ``bastion``,
  ``socks-proxy``, ``unix:``/``unix+tls:`` a path, or a URL with a scheme and a
  host and no path (not even ``/``);
- a path is a regular expression that Go's RE2 and Python both read the same way
  (lookarounds, backreferences and the like are refused: RE2 has none);
- durations are Go duration strings (``30s``, ``1m30s``): a bare number is a
  type error in cloudflared.

``validate_config`` takes the parsed YAML (what PyYAML's safe_load returns) and
returns every problem, each naming where it is (``ingress[2].service``).
``matching_rule`` answers what ``cloudflared tunnel ingress rule URL`` would.
"""
from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

# Top-level keys a locally managed tunnel's config.yml may hold: the config
# struct's own and the file-readable flags of ``tunnel run`` that a homelab uses.
TOP_LEVEL = {
    "tunnel": "str", "credentials-file": "str", "ingress": "ingress", "originRequest": "origin",
    "warp-routing": "warp", "token-file": "str", "loglevel": "str", "transport-loglevel": "str",
    "logfile": "str", "log-directory": "str", "metrics": "str", "protocol": "str", "no-autoupdate": "bool",
    "autoupdate-freq": "duration", "retries": "int", "grace-period": "duration", "ha-connections": "int",
    "edge-ip-version": "str", "edge-bind-address": "str", "region": "str", "post-quantum": "bool",
    "pidfile": "str", "tag": "list", "management-hostname": "str",
}
RULE = {"hostname": "str", "path": "str", "service": "str", "originRequest": "origin"}
ORIGIN_REQUEST = {
    "connectTimeout": "duration", "tlsTimeout": "duration", "tcpKeepAlive": "duration",
    "noHappyEyeballs": "bool", "keepAliveConnections": "int", "keepAliveTimeout": "duration",
    "httpHostHeader": "str", "originServerName": "str", "matchSNItoHost": "bool", "caPool": "str",
    "noTLSVerify": "bool", "disableChunkedEncoding": "bool", "bastionMode": "bool", "proxyAddress": "str",
    "proxyPort": "uint", "proxyType": "str", "ipRules": "iprules", "http2Origin": "bool", "access": "access",
}
ACCESS = {"required": "bool", "teamName": "str", "audTag": "strlist", "environment": "str"}
IP_RULE = {"prefix": "str", "ports": "portlist", "allow": "bool"}
WARP_ROUTING = {"connectTimeout": "duration", "tcpKeepAlive": "duration", "maxActiveFlows": "uint"}
PROTOCOLS = ("auto", "http2", "quic")

# Go's time.ParseDuration: "0", or signed groups of a number and a unit.
_DURATION = re.compile(r"[-+]?(?:0|(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:ns|us|µs|μs|ms|s|m|h))+)")
# Go's strconv.Atoi: optional sign, ASCII digits only.
_ATOI = re.compile(r"[-+]?[0-9]+")
# What RE2 (Go's regexp) does not have, or reads differently from Python's re.
_NOT_RE2 = (
    (re.compile(r"\(\?(?:[=!]|<[=!])"), "a lookahead or lookbehind"),
    (re.compile(r"\(\?>"), "an atomic group"),
    (re.compile(r"\(\?\("), "a conditional"),
    (re.compile(r"\\[1-9]"), "a backreference"),
    (re.compile(r"(?<!\\)[*+?}]\+"), "a possessive quantifier"),
    (re.compile(r"\\[ZzQEpP]|\\x\{"), "an escape the two regex dialects read differently (\\Z, \\z, \\Q, \\p, \\x{})"),
    (re.compile(r"\[\[:"), "a POSIX class ([[:alpha:]] is a class in Go, a set in Python)"),
    (re.compile(r"(?<!\\)\{,"), "a '{,n}' repeat (literal in Go, a repeat in Python)"),
)
_REPEAT = re.compile(r"(?<!\\)\{([0-9]+)(?:,([0-9]*))?\}")
_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?")


def _is_duration(value):
    return isinstance(value, str) and _DURATION.fullmatch(value) is not None


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_str_list(value):
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


# cloudflared's type -> (does the value decode into it, what to say when it does not)
_TYPES = {
    "duration": (_is_duration, "must be a Go duration string such as '30s' or '1m30s' (a bare number is a type error)"),
    "bool": (lambda value: isinstance(value, bool), "must be true or false"),
    "int": (_is_int, "must be a whole number"),
    "uint": (lambda value: _is_int(value) and value >= 0, "must be a whole number of 0 or more"),
    "str": (lambda value: isinstance(value, str), "must be a string"),
    "list": (_is_str_list, "must be a list of strings"),
    "strlist": (_is_str_list, "must be a list of strings"),
    "portlist": (lambda value: isinstance(value, list) and all(_is_int(p) and 1 <= p <= 65535 for p in value),
                 "must be a list of ports between 1 and 65535"),
}


def _type_problem(value, kind):
    """Why ``value`` does not decode into cloudflared's type ``kind``, or None."""
    check, message = _TYPES[kind]
    return None if check(value) else message


def _check_map(value, keys, where, problems, nested=None):
    """Known keys only, each of its type; ``nested`` checks the keys whose type is a structure."""
    if not isinstance(value, dict):
        problems.append("%s must be a mapping" % where)
        return
    for key in value:
        if key not in keys:
            problems.append("%s.%s is not a key cloudflared knows here (known: %s)"
                            % (where, key, ", ".join(sorted(keys))))
            continue
        kind = keys[key]
        if nested and kind in nested:
            nested[kind](value[key], "%s.%s" % (where, key), problems)
            continue
        problem = _type_problem(value[key], kind)
        if problem:
            problems.append("%s.%s %r %s" % (where, key, value[key], problem))


def _check_ip_rules(value, where, problems):
    if not isinstance(value, list):
        problems.append("%s must be a list of {prefix, ports, allow}" % where)
        return
    for index, rule in enumerate(value):
        here = "%s[%d]" % (where, index)
        _check_map(rule, IP_RULE, here, problems)
        if isinstance(rule, dict):
            prefix = rule.get("prefix")
            if not prefix:
                problems.append("%s.prefix is missing: each IP rule needs a CIDR" % here)
            else:
                try:
                    ipaddress.ip_network(str(prefix), strict=False)
                except ValueError:
                    problems.append("%s.prefix %r is not a CIDR" % (here, prefix))


def _check_access(value, where, problems):
    _check_map(value, ACCESS, where, problems)
    if isinstance(value, dict) and value.get("required") and not value.get("teamName") and value.get("audTag"):
        problems.append("%s.teamName cannot be blank when %s.audTag is given" % (where, where))


def _check_origin(value, where, problems):
    _check_map(value, ORIGIN_REQUEST, where, problems, nested={"iprules": _check_ip_rules, "access": _check_access})


def check_path_regex(pattern):
    """Why ``pattern`` is not a regular expression both RE2 and Python read the same way, or None."""
    for construct, what in _NOT_RE2:
        if construct.search(pattern):
            return "uses %s, which Go's RE2 (cloudflared's regex engine) does not read as Python does" % what
    for match in _REPEAT.finditer(pattern):
        if any(int(n) > 1000 for n in match.groups() if n):
            return "repeats more than 1000 times, which RE2 refuses"
    try:
        re.compile(pattern)
    except re.error as exc:
        return "is not a valid regular expression: %s" % exc
    return None


def check_service(service, bastion=False):
    """Why cloudflared would refuse ``service`` as a rule's service, or None (ingress.go validateIngress)."""
    if bastion:
        return None
    if not service:
        return "is missing: every rule needs a service"
    if service.startswith("unix:") or service.startswith("unix+tls:"):
        return None if service.split(":", 1)[1] else "names no socket path"
    if service.startswith("http_status:"):
        code = service[len("http_status:"):]
        if not _ATOI.fullmatch(code) or not 100 <= int(code) <= 999:
            return "has an invalid HTTP status code %r (100-999)" % code
        return None
    if service in ("hello_world", "hello-world", "socks-proxy", "bastion"):
        return None
    try:
        parts = urlsplit(service)
        host = parts.hostname
    except ValueError as exc:
        return "is not a URL: %s" % exc
    if not parts.scheme or not host or not parts.netloc:
        return "is an invalid address: it needs a scheme and a host, such as http://localhost:2283"
    try:
        _port = parts.port
    except ValueError:
        return "has an invalid port"
    if re.search(r"\s", parts.netloc):
        return "has a space in its host"
    if parts.path:
        return ("has a path (%s): cloudflared proxies to the same path the client asked for, never another one"
                % parts.path)
    return None


def check_hostname(hostname):
    """Why ``hostname`` cannot be a rule's hostname, or None (ingress.go validateHostname, stricter)."""
    if not isinstance(hostname, str):
        return "must be a string"
    if hostname in ("", "*"):
        return None
    bracketed = re.fullmatch(r"\[[^\]]*\]:.*", hostname)
    if bracketed or hostname.count(":") == 1:
        return "cannot contain a port"
    if hostname.rfind("*") > 0:
        return "can have one '*' only, as its whole leftmost label (*.example.com)"
    labels = hostname[2:].split(".") if hostname.startswith("*.") else hostname.split(".")
    if hostname.startswith("*") and not hostname.startswith("*."):
        return "has a '*' that is not a whole label: cloudflared would match it only literally"
    if not all(_HOST_LABEL.fullmatch(label) for label in labels):
        return "is not a DNS name"
    return None


def validate_config(config, known_top_level=None, remote=False):
    """Every problem of a cloudflared config.yml (parsed), each naming where it is; [] when it is sound.

    ``remote``: the config of a remotely managed tunnel, whose ingress rules
    come from Cloudflare's dashboard; local ones would only mislead, so none
    may be given.
    """
    problems = []
    if not isinstance(config, dict):
        return ["config.yml must be a mapping of keys to values"]
    top = dict(TOP_LEVEL, **(known_top_level or {}))
    for key, value in config.items():
        if key not in top:
            problems.append("%s is not a key cloudflared reads from config.yml" % key)
            continue
        kind = top[key]
        if kind == "ingress":
            continue
        if kind == "origin":
            _check_origin(value, key, problems)
        elif kind == "warp":
            _check_map(value, WARP_ROUTING, key, problems)
        else:
            problem = _type_problem(value, kind)
            if problem:
                problems.append("%s %r %s" % (key, value, problem))
    if config.get("protocol") is not None and config.get("protocol") not in PROTOCOLS:
        problems.append("protocol %r must be one of %s" % (config["protocol"], ", ".join(PROTOCOLS)))
    if remote:
        if "ingress" in config:
            problems.append("ingress is set, but a remotely managed tunnel takes its rules from Cloudflare's "
                            "dashboard and ignores these")
        return problems
    problems += validate_ingress(config.get("ingress"), config.get("originRequest"))
    return problems


def validate_ingress(rules, origin_request=None):
    """Every problem of an ``ingress`` list; ``origin_request`` is the top-level default it inherits."""
    if not isinstance(rules, list) or not rules:
        return ["ingress must be a list of rules, the last one matching everything (service: http_status:404)"]
    problems = []
    default_bastion = isinstance(origin_request, dict) and origin_request.get("bastionMode") is True
    for index, rule in enumerate(rules):
        where = "ingress[%d]" % index
        _check_map(rule, RULE, where, problems, nested={"origin": _check_origin})
        if not isinstance(rule, dict):
            continue
        origin = rule.get("originRequest")
        bastion = origin.get("bastionMode") if isinstance(origin, dict) and "bastionMode" in origin else default_bastion
        service = rule.get("service")
        # (a value of the wrong type is reported once, by _check_map)
        problem = check_service(service, bastion=bastion is True) if isinstance(service, str) or service is None \
            else None
        if problem:
            problems.append("%s.service %r %s" % (where, rule.get("service"), problem))
        hostname = rule.get("hostname", "")
        problem = check_hostname(hostname) if isinstance(hostname, str) else None
        if problem:
            problems.append("%s.hostname %r %s" % (where, hostname, problem))
        path = rule.get("path") or ""
        if not isinstance(path, str):
            path = ""
        elif path:
            problem = check_path_regex(path)
            if problem:
                problems.append("%s.path %r %s" % (where, path, problem))
        catch_all = hostname in ("", "*", None) and not path
        if index == len(rules) - 1 and not catch_all:
            problems.append("%s is the last rule and must match every request (no hostname or '*', no path), "
                            "such as 'service: http_status:404'" % where)
        elif index < len(rules) - 1 and catch_all:
            problems.append("%s matches every request, so the rules after it would never be used" % where)
    return problems


def matching_rule(rules, url):
    """The index of the rule cloudflared uses for ``url`` (first match wins), as ``ingress rule`` says."""
    parts = urlsplit(url if "://" in url else "https://" + url)
    host = parts.hostname or ""
    for index, rule in enumerate(rules):
        pattern = rule.get("hostname") or ""
        if pattern not in ("", "*"):
            if pattern.startswith("*."):
                if not host.endswith(pattern[1:]):
                    continue
            elif host != pattern:
                continue
        path = rule.get("path")
        if path and not re.search(path, parts.path or "/"):
            continue
        return index
    return None
