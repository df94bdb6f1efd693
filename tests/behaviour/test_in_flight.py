# SPDX-License-Identifier: GPL-3.0-or-later
"""Nothing lost in flight: an upload and a websocket open while the role applies a config change that also adds a
backend to the pool; new connections while the proxy reloads."""
from __future__ import annotations

import http.client
import json
import ssl
import threading
import time

import pytest
import websocket

from harness import backend_json, multipart_upload, sh

pytestmark = [pytest.mark.needs(listens=True), pytest.mark.faults]

GiB = 1024 ** 3
# reloads while clients open a new connection for each request (20 reset 61 connections of Caddy's without
# net.ipv4.tcp_migrate_req, bench/README.md)
RELOADS = 20
CLIENTS = 16
# slow enough (about a minute) that the upload spans the whole run of the role
RATE = 24 * 1024 ** 2
SIZE = 2 * GiB


def _socket_io(proxy):
    scheme = "wss" if proxy.scheme == "https" else "ws"
    url = "%s://%s:%d/api/socket.io/?EIO=4&transport=websocket" % (scheme, proxy.ip, proxy.port)
    sslopt = {"ca_certs": proxy.ca_file, "server_hostname": proxy.host, "cert_reqs": ssl.CERT_REQUIRED}
    ws = websocket.create_connection(url, host=proxy.host_header, sslopt=sslopt, timeout=15)
    assert ws.recv().startswith("0")
    ws.send("40")
    assert ws.recv().startswith("40")
    return ws


def _loaded(host, kind):
    """The digest reload_service recorded when the proxy last took its config."""
    return json.loads(sh(host, "cat /var/lib/immich-proxy/%s.loaded.json" % kind).stdout).get("digest")


def _echo(ws, text):
    ws.send('42["on_upload_success","%s"]' % text)
    assert ws.recv() == '42["on_upload_success","%s"]' % text, "the websocket stopped carrying messages"


def _joins_the_pool(proxy, backend, seconds=60):
    """Whether requests through the proxy reach this backend within the time given."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status, _headers, payload = proxy.json("GET", "/_double/echo")
        if status == 200 and payload.get("backend") == backend:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.disruptive
def test_an_upload_and_a_websocket_in_flight_survive_a_config_change_that_adds_a_backend(
        proxy, host, kind, traits, converge, backend_ports, figures):
    """The kind's own config change (a new timeout, say) and a third backend, in one run of the role."""
    added = max(backend_ports) + 1
    change = dict(traits["config_change_vars"], immich_proxy_backends=[
        "http://127.0.0.1:%d" % port for port in list(backend_ports) + [added]])
    try:
        sh(host, "systemctl start immich-double@%d && for i in $(seq 100); do curl -fs -o /dev/null "
                 "http://127.0.0.1:%d/api/server/ping && exit 0; sleep 0.1; done; exit 1" % (added, added))
        _in_flight(proxy, host, kind, traits, converge, backend_ports, figures, added, change)
    finally:
        sh(host, "systemctl stop immich-double@%d; rm -rf /var/lib/immich-double/%d" % (added, added), check=False)


def _in_flight(proxy, host, kind, traits, converge, backend_ports, figures, added, change):
    converge()
    loaded = _loaded(host, kind)
    ws = _socket_io(proxy)
    outcome = {}

    def upload():
        headers, body, digest = multipart_upload(SIZE, rate=RATE)
        try:
            status, _headers, data = proxy.request("POST", "/api/assets", headers=headers, body=body, timeout=900)
            outcome.update(status=status, answer=json.loads(data or b"null"), sha1=digest.hexdigest())
        except Exception as exc:  # noqa: BLE001 - the failure is the finding
            outcome.update(error=repr(exc))

    thread = threading.Thread(target=upload, daemon=True)
    thread.start()
    try:
        time.sleep(3)
        result = converge(change)
        assert _loaded(host, kind) != loaded, "the role run took no new config: the test proves nothing"
        assert thread.is_alive(), "the upload ended before the role had applied the change (lower RATE)"
        if "restarts to take its new configuration" in result.output:
            pytest.fail("the role restarted %s for %r (said so first); a restart drops what is in flight"
                        % (traits["service"], change))
        assert _joins_the_pool(proxy, "double-%d" % added), "the added backend never got a request"
        # a proxy whose reload still drops websockets (Caddy before 2.7) must have said so before it reloaded
        dropped = result.output.find("reloads to take its new configuration:")
        if dropped < 0:
            # still carrying messages right after the reload, while the upload goes on
            _echo(ws, "after-the-reload")
        thread.join(timeout=900)
        assert "error" not in outcome and outcome["status"] == 201, (
            "an upload in flight during a config change failed: %r" % outcome)
        record = [r for port in list(backend_ports) + [added] for r in backend_json(host, port, "/_double/uploads")
                  if r["id"] == outcome["answer"]["id"]][0]
        sh(host, "rm -f %s" % record["path"])
        assert (record["bytes"], record["sha1"]) == (SIZE, outcome["sha1"]), "the upload arrived altered"
        figures.add("uploads")
        figures.add("upload_gib", SIZE / GiB)
        if dropped >= 0:
            assert dropped < result.output.find("RUNNING HANDLER"), (
                "the websocket drop was announced after the reload:\n%s" % result.output[-3000:])
            figures.add("in_flight_said")
            return
        _echo(ws, "after-the-upload")
        figures.add("in_flight")
    finally:
        ws.close()
        thread.join(timeout=900)
        converge()


@pytest.mark.needs(strategy="reload")
def test_new_connections_while_the_proxy_reloads_are_all_answered(proxy, host, kind, traits, converge, figures):
    """nginx and Apache keep their listening sockets through a reload. Each config Caddy loads opens a socket of its
    own (SO_REUSEPORT) and the old one is closed: Linux resets the connections queued on it unless
    net.ipv4.tcp_migrate_req is 1, which the role sets, live and in /etc/sysctl.d (the test bed's containers
    may write their /proc/sys, as a host may: molecule/_shared/prepare.yml). With it, Caddy 2.6.2 drops none;
    a Caddy built with Go 1.25 or later (2.11.7) still closes a few unanswered (Go's HTTP server closes a
    connection whose request it reads after shutdown began), which the role says before each reload."""
    for name, value in traits["sysctls"].items():
        assert sh(host, "cat /proc/sys/%s" % name.replace(".", "/")).stdout.strip() == value, (
            "the role left %s as it was" % name)
        kept = sh(host, "cat /etc/sysctl.d/60-immich-proxy-%s.conf" % kind).stdout
        assert "-%s = %s" % (name, value) in kept.splitlines(), "%s is not kept for the next boot:\n%s" % (name, kept)
    answered, lost = [0], []
    stop = threading.Event()
    lock = threading.Lock()

    def client():
        while not stop.is_set():
            try:
                status, _headers, _data = proxy.request("GET", "/api/server/ping", headers={"Connection": "close"},
                                                        timeout=15)
                failure = None if status == 200 else "HTTP %d" % status
            except (OSError, http.client.HTTPException) as exc:
                failure = repr(exc)
            with lock:
                if failure:
                    lost.append(failure)
                else:
                    answered[0] += 1

    clients = [threading.Thread(target=client, daemon=True) for _number in range(CLIENTS)]
    for thread in clients:
        thread.start()
    try:
        time.sleep(1)
        for _number in range(RELOADS):
            sh(host, "systemctl reload %s" % traits["service"])
            time.sleep(0.3)
        time.sleep(1)
    finally:
        stop.set()
        for thread in clients:
            thread.join(timeout=30)
    figures.add("reload_requests", answered[0] + len(lost))
    figures.add("reload_lost", len(lost))
    assert answered[0] > RELOADS * CLIENTS, "too few requests to tell (%d answered)" % answered[0]
    if not lost:
        return
    found = "%d of %d new connections during %d reloads of %s failed: %s" % (
        len(lost), answered[0] + len(lost), RELOADS, traits["service"], sorted(set(lost))[:5])
    # a proxy whose reload still drops some (Caddy built with Go 1.25 or later) must say so before it reloads
    result = converge(traits["config_change_vars"])
    try:
        said = result.output.find("may close a new connection")
        assert 0 <= said < result.output.find("RUNNING HANDLER"), (
            "%s, and the role did not say so before a reload:\n%s" % (found, result.output[-3000:]))
    finally:
        converge()
    figures.add("reload_lost_said", len(lost))
