# SPDX-License-Identifier: GPL-3.0-or-later
"""Immich's live updates: Socket.IO over a websocket at /api/socket.io/."""
from __future__ import annotations

import json
import ssl

import pytest
import websocket

pytestmark = pytest.mark.needs(listens=True)


def test_socket_io_websocket_upgrades_and_carries_messages_both_ways(proxy):
    scheme = "wss" if proxy.scheme == "https" else "ws"
    url = "%s://%s:%d/api/socket.io/?EIO=4&transport=websocket" % (scheme, proxy.ip, proxy.port)
    sslopt = {"ca_certs": proxy.ca_file, "server_hostname": proxy.host, "cert_reqs": ssl.CERT_REQUIRED}
    host_header = proxy.host if proxy.port in (80, 443) else "%s:%d" % (proxy.host, proxy.port)
    ws = websocket.create_connection(url, host=host_header, sslopt=sslopt, timeout=15)
    try:
        assert ws.getstatus() == 101, "expected 101 Switching Protocols, got %s" % ws.getstatus()
        opening = ws.recv()
        assert opening.startswith("0"), "expected Engine.IO's open packet, got %r" % opening
        assert "sid" in json.loads(opening[1:])
        ws.send("40")
        assert ws.recv().startswith("40"), "Socket.IO connect was not acknowledged"
        ws.send('42["on_upload_success","behaviour-suite"]')
        assert ws.recv() == '42["on_upload_success","behaviour-suite"]'
        ws.send("2")
        assert ws.recv() == "3", "Engine.IO ping got no pong"
    finally:
        ws.close()
