# SPDX-License-Identifier: GPL-3.0-or-later
"""The TLS modes besides the scenario's own: provided files, ACME against a real test CA, plain HTTP.

ACME runs against Debian's `pebble`, a real ACME server for tests, inside the
proxy's container: the role's certbot gets a certificate through http-01 served
by the proxy, and a forced renewal must reach clients through the deploy hook.
These tests re-run the role and run last; the scenario's settings are restored.
"""
from __future__ import annotations

import json
import re
import shlex
import socket
import ssl
import time
import uuid

import pytest

from harness import Proxy, host_probe, mozilla_intermediate_report, sh

PEBBLE_CONFIG = {
    "pebble": {
        "listenAddress": "0.0.0.0:14000",
        "managementListenAddress": "0.0.0.0:15000",
        "certificate": "/etc/pebble/api.pem",
        "privateKey": "/etc/pebble/api.key",
        "httpPort": 80,
        "tlsPort": 5001,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": False,
        # 90 days, as Let's Encrypt: pebble's default of five years fails Mozilla's 366-day limit
        "certificateValidityPeriod": 90 * 86400,
    }
}

pytestmark = [pytest.mark.disruptive, pytest.mark.last, pytest.mark.needs(listens=True)]


@pytest.fixture(scope="module")
def restore_scenario(converge):
    yield
    converge()


def served_certificate(proxy, ca_file):
    ctx = ssl.create_default_context(cafile=ca_file)
    with socket.create_connection((proxy.ip, proxy.https_port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname=proxy.host) as tls:
        return tls.getpeercert()


def copy_out(host, path, tmp_path, name):
    local = tmp_path / name
    local.write_text(host.file(path).content_string)
    return str(local)


def test_provided_certificate_files_are_served(host, proxy, traits, converge, restore_scenario, tmp_path):
    sh(host, "mkdir -p /etc/ssl/lab && cd /etc/ssl/lab && "
             "openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj '/CN=Lab CA' -keyout ca.key -out ca.pem "
             "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null && "
             "openssl req -newkey rsa:2048 -nodes -subj '/CN=%s' -keyout site.key -out site.csr 2>/dev/null && "
             "printf 'subjectAltName=DNS:%s\\n' > ext && "
             "openssl x509 -req -in site.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 -extfile ext "
             "-out site.pem 2>/dev/null && chmod 600 site.key" % (proxy.host, proxy.host))
    provided = {"immich_proxy_tls": "provided", "immich_proxy_tls_cert": "/etc/ssl/lab/site.pem",
                "immich_proxy_tls_key": "/etc/ssl/lab/site.key", "immich_proxy_check_ca_path": "/etc/ssl/lab/ca.pem"}
    if traits["key_group"] != "root":
        # a proxy that reads the key as its own user: a key only root reads is refused, naming the variable
        refused = converge(provided, check=False)
        assert refused.returncode != 0 and "immich_proxy_tls_key" in refused.output, refused.output[-3000:]
        sh(host, "chgrp %s /etc/ssl/lab/site.key && chmod 640 /etc/ssl/lab/site.key" % traits["key_group"])
    converge({"immich_proxy_tls": "provided", "immich_proxy_tls_cert": "/etc/ssl/lab/site.pem",
              "immich_proxy_tls_key": "/etc/ssl/lab/site.key", "immich_proxy_check_ca_path": "/etc/ssl/lab/ca.pem"})
    ca_file = copy_out(host, "/etc/ssl/lab/ca.pem", tmp_path, "lab-ca.pem")
    issuer = dict(item[0] for item in served_certificate(proxy, ca_file)["issuer"])
    assert issuer["commonName"] == "Lab CA", "the provided certificate is not served: issuer %r" % issuer
    lab = Proxy(proxy.public_url, proxy.ip, ca_file, proxy.http_port, proxy.https_port)
    assert lab.json("GET", "/.well-known/immich")[0] == 200
    compliant, report = mozilla_intermediate_report(lab)
    assert compliant, "with provided files, TLS is not Mozilla intermediate:\n%s" % report


@pytest.fixture(scope="module")
def pebble(host, proxy, traits):
    """Debian's pebble, a real ACME server for tests, inside the proxy's container; stopped afterwards."""
    # (a host whose proxy came without a package has no apt lists yet)
    sh(host, "export DEBIAN_FRONTEND=noninteractive; apt-get install -y -q pebble >/dev/null 2>&1 "
             "|| { apt-get update -q >/dev/null && apt-get install -y -q pebble >/dev/null; }")
    # pebble starts empty with a new root each time: forget an earlier run's account and certificate
    sh(host, "rm -rf %s" % " ".join(shlex.quote(path.format(host=proxy.host)) for path in traits["acme_state"]))
    sh(host, "mkdir -p /etc/pebble && cd /etc/pebble && "
             "openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=pebble -keyout api.key -out api.pem "
             "-addext subjectAltName=IP:127.0.0.1,DNS:localhost 2>/dev/null")
    sh(host, "cat > /etc/pebble/config.json <<'EOF'\n%s\nEOF" % json.dumps(PEBBLE_CONFIG))
    sh(host, "grep -q ' %s$' /etc/hosts || echo '127.0.0.1 %s' >> /etc/hosts" % (proxy.host, proxy.host))
    sh(host, "systemctl is-active -q pebble-test || systemd-run --unit pebble-test "
             "--setenv=PEBBLE_VA_NOSLEEP=1 --setenv=PEBBLE_WFE_NONCEREJECT=0 --setenv=PEBBLE_AUTHZREUSE=0 "
             "/usr/bin/pebble -config /etc/pebble/config.json")
    sh(host, "for i in $(seq 50); do curl -s --cacert /etc/pebble/api.pem https://127.0.0.1:14000/dir >/dev/null "
             "&& exit 0; sleep 0.2; done; exit 1")
    sh(host, "curl -s --cacert /etc/pebble/api.pem https://127.0.0.1:15000/roots/0 > /etc/pebble/root.pem")
    yield {"immich_proxy_tls": "acme", "immich_proxy_acme_email": "admin@example.org",
           "immich_proxy_acme_directory": "https://127.0.0.1:14000/dir",
           "immich_proxy_acme_ca_file": "/etc/pebble/api.pem",
           "immich_proxy_check_ca_path": "/etc/pebble/root.pem"}
    sh(host, "systemctl stop pebble-test", check=False)


@pytest.fixture(scope="module")
def acme_certificate(host, proxy, converge, restore_scenario, pebble, tmp_path_factory):
    """The role run twice with immich_proxy_tls=acme against pebble; what clients are served.

    First in check mode, before the ACME client is installed: it must predict, not fail.
    """
    converge(pebble, check_mode=True)
    converge(pebble)
    again = converge(pebble)
    root = copy_out(host, "/etc/pebble/root.pem", tmp_path_factory.mktemp("pebble"), "pebble-root.pem")
    return {"second_run": again, "root": root, "served": served_certificate(proxy, root)}


@pytest.mark.needs(acme=["certbot", "builtin"])
def test_acme_gets_a_certificate_through_http01_and_a_second_run_changes_nothing(proxy, acme_certificate):
    again = acme_certificate["second_run"]
    assert re.search(r"changed=0\s", again.output.split("PLAY RECAP")[-1]), (
        "a second ACME run changed something:\n%s" % again.output[-3000:])
    issuer = acme_certificate["served"]["issuer"]
    assert "Pebble" in json.dumps(issuer), "not issued by the ACME CA: %r" % (issuer,)
    acme = Proxy(proxy.public_url, proxy.ip, acme_certificate["root"], proxy.http_port, proxy.https_port)
    assert acme.json("GET", "/.well-known/immich")[2] == {"api": {"endpoint": "/api"}}
    status, _headers, _body = proxy.request("GET", "/.well-known/acme-challenge/missing", scheme="http")
    assert status == 404, "the challenge path must be served from the webroot, got %d" % status
    compliant, report = mozilla_intermediate_report(acme)
    assert compliant, "with an ACME certificate, TLS is not Mozilla intermediate:\n%s" % report


@pytest.mark.needs(acme="certbot")
def test_certbots_renewal_timer_trusts_the_private_ca_and_a_renewal_reaches_clients(host, proxy, acme_certificate):
    renewal_env = sh(host, "systemctl show certbot.service -p Environment").stdout
    assert "REQUESTS_CA_BUNDLE=/etc/pebble/api.pem" in renewal_env, "the renewal timer cannot reach the CA"
    assert host.service("certbot.timer").is_enabled, "certbot's renewal timer is not enabled"
    first = acme_certificate["served"]
    sh(host, "REQUESTS_CA_BUNDLE=/etc/pebble/api.pem certbot renew --force-renewal --no-random-sleep-on-renew -q")
    # the deploy hook's reload returns before the proxy's new generation serves: give it a few seconds
    for _attempt in range(50):
        second = served_certificate(proxy, acme_certificate["root"])
        if second["serialNumber"] != first["serialNumber"]:
            break
        time.sleep(0.2)
    assert second["serialNumber"] != first["serialNumber"], "the renewed certificate is not served after 10 s"


def test_plain_http_on_another_port_keeps_the_port_in_host_and_the_real_scheme_and_refuses_other_hosts(
        host, proxy, converge, restore_scenario, backend_ports):
    plain_url = "http://%s:8080" % proxy.host
    converge({"immich_proxy_tls": "off", "immich_proxy_public_url": plain_url, "immich_proxy_http_port": 8080})
    plain = Proxy(plain_url, proxy.ip, None, 8080, proxy.https_port)
    status, _headers, seen = plain.json("GET", "/_double/echo")
    assert status == 200
    headers = dict((k, v) for k, v in seen["headers"])
    assert headers["Host"] == "%s:8080" % proxy.host, "Immich must see the port in Host, got %r" % headers["Host"]
    assert headers["X-Forwarded-Proto"] == "http"
    # On a plain-HTTP server nothing redirects: only the public authority itself may reach Immich.
    for host_header in ("evil.example", "evil.example:8080", proxy.host):
        status, head, reached = host_probe(plain, host, backend_ports, "http", host_header)
        assert not reached and status in (None, 400, 421), (
            "Host %r on plain HTTP: HTTP %r, reached Immich %r" % (host_header, head[:120], reached))
    # no open proxy: an absolute URI for another host, with the public Host
    status, head, reached = host_probe(plain, host, backend_ports, "http", plain.host_header,
                                       absolute_host="evil.example")
    assert not reached and status in (None, 400, 421), (
        "GET http://evil.example/ on plain HTTP: HTTP %r, reached Immich %r" % (head[:120], reached))


@pytest.fixture(scope="module")
def https_backend(host):
    """An Immich test double behind its own TLS on 2443, its certificate for immich-backend.test from a lab CA."""
    sh(host, "mkdir -p /etc/ssl/backend && cd /etc/ssl/backend && "
             "openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj '/CN=Backend CA' -keyout ca.key -out ca.pem "
             "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null && "
             "openssl req -newkey rsa:2048 -nodes -subj /CN=immich-backend.test -keyout site.key -out site.csr "
             "2>/dev/null && printf 'subjectAltName=DNS:immich-backend.test\\n' > ext && "
             "openssl x509 -req -in site.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 -extfile ext "
             "-out site.pem 2>/dev/null")
    sh(host, "grep -q ' immich-backend.test$' /etc/hosts || echo '127.0.0.1 immich-backend.test' >> /etc/hosts")
    sh(host, "systemctl stop immich-double-tls 2>/dev/null; systemctl reset-failed immich-double-tls 2>/dev/null; "
             "systemd-run --unit immich-double-tls /usr/bin/python3 /opt/immich-double/immich_double.py --port 2443 "
             "--name double-tls --tls-cert /etc/ssl/backend/site.pem --tls-key /etc/ssl/backend/site.key && "
             "for i in $(seq 50); do curl -s --cacert /etc/ssl/backend/ca.pem "
             "https://immich-backend.test:2443/api/server/ping && exit 0; sleep 0.2; done; exit 1")
    yield "https://immich-backend.test:2443"
    sh(host, "systemctl stop immich-double-tls", check=False)


def _through_the_proxy(proxy, host):
    """(status, backend name or None, whether the request reached the https backend)."""
    marker = "/_double/echo?backend-probe=%s" % uuid.uuid4().hex
    status, _headers, data = proxy.request("GET", marker)
    seen = json.loads(sh(host, "curl -s --cacert /etc/ssl/backend/ca.pem "
                               "https://immich-backend.test:2443/_double/requests").stdout)
    reached = any(record["path"] == marker for record in seen)
    backend = json.loads(data).get("backend") if status == 200 else None
    return status, backend, reached


@pytest.mark.parametrize("ca_file, url, works", [
    ("/etc/ssl/backend/ca.pem", "https://immich-backend.test:2443", True),
    (None, "https://immich-backend.test:2443", False),
    ("/etc/ssl/backend/ca.pem", "https://localhost:2443", False),
], ids=["trusted-ca-and-name", "unknown-ca", "wrong-name"])
def test_an_https_backend_is_used_only_when_its_certificate_and_name_verify(
        host, proxy, converge, restore_scenario, https_backend, pytestconfig, tmp_path, ca_file, url, works):
    # The role's own end-to-end check would (rightly) fail where the backend does not verify.
    converge({"immich_proxy_backends": [url], "immich_proxy_backend_ca_file": ca_file, "immich_proxy_check": works})
    # the scenario's self-signed certificate was made anew after the ACME test: trust the one served now
    ca_path = pytestconfig.getoption("ca_path")
    current = Proxy(proxy.public_url, proxy.ip, copy_out(host, ca_path, tmp_path, "ca.pem") if ca_path else None,
                    proxy.http_port, proxy.https_port)
    status, backend, reached = _through_the_proxy(current, host)
    if works:
        assert (status, backend) == (200, "double-tls"), "a verified https backend did not answer: %r" % status
    else:
        # a server-side error, never the backend's answer: nginx says 502, Apache 500 (its
        # "Error during SSL Handshake with remote server", AH00898)
        assert status in (500, 502, 503) and not reached, (
            "an https backend that does not verify (%s) was used: HTTP %d, reached %s" % (url, status, reached))


@pytest.mark.faults
def test_a_public_name_as_long_as_dns_allows_is_served(host, proxy, converge, restore_scenario, tmp_path):
    """253 characters, labels of 63: longer than nginx's hashes of exact names and a certificate's common name
    (64) hold; the property test drew such a name and nginx refused its config."""
    name = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 49, "immich.test"])
    assert len(name) == 253
    public_url = proxy.public_url.replace(proxy.host, name, 1)
    converge({"immich_proxy_public_url": public_url, "immich_proxy_tls": "selfsigned", "immich_proxy_check": False})
    ca_file = copy_out(host, "/etc/immich-proxy/tls/%s/fullchain.pem" % name, tmp_path, "long.pem")
    long = Proxy(public_url, proxy.ip, ca_file, proxy.http_port, proxy.https_port)
    status, _headers, payload = long.json("GET", "/api/server/ping")
    assert (status, payload) == (200, {"res": "pong"}), "the long public name is not served: HTTP %d" % status
    # Host is case-insensitive (RFC 9110): the same name in capitals reaches Immich too
    shouted = long.host_header.upper()
    status, _headers, _payload = long.request("GET", "/api/server/ping", headers={"Host": shouted})
    assert status == 200, "Host %s... in capitals was refused: HTTP %d" % (shouted[:20], status)
