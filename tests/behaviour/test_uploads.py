# SPDX-License-Identifier: GPL-3.0-or-later
"""Large uploads: Immich's 50000M body size, streamed, never spooled to the proxy's disk."""
from __future__ import annotations

import json
import uuid

import pytest

from harness import backend_json, multipart_upload, raw_request, sh, written_bytes

pytestmark = pytest.mark.needs(listens=True)

GiB = 1024 ** 3
MiB = 1024 ** 2


def _upload(proxy, size, rate=None, timeout=900):
    headers, body, digest = multipart_upload(size, rate=rate)
    status, _headers, data = proxy.request("POST", "/api/assets", headers=headers, body=body, timeout=timeout)
    return status, json.loads(data or b"null"), digest.hexdigest()


def _received_upload(host, ports, asset_id):
    for port in ports:
        for record in backend_json(host, port, "/_double/uploads"):
            if record["id"] == asset_id:
                return record
    raise AssertionError("no Immich double received upload %s" % asset_id)


def test_a_2_gib_upload_arrives_byte_identical_and_nothing_is_spooled_to_disk(
        proxy, host, traits, backend_ports, figures):
    size = 2 * GiB
    before = written_bytes(host, traits["processes"])
    status, answer, sha1 = _upload(proxy, size)
    after = written_bytes(host, traits["processes"])
    assert status == 201, "the 2 GiB upload got HTTP %d %r" % (status, answer)
    record = _received_upload(host, backend_ports, answer["id"])
    sh(host, "rm -f %s" % record["path"])
    assert record["bytes"] == size, "Immich received %d bytes of %d" % (record["bytes"], size)
    assert record["sha1"] == sha1, "the upload arrived altered: SHA-1 %s, sent %s" % (record["sha1"], sha1)
    figures.add("uploads")
    figures.add("upload_gib", size / GiB)
    written = sum(after[pid] - before[pid] for pid in after if pid in before)
    assert before and after, "no %s process was found to measure" % traits["processes"]
    assert written <= size // 100, (
        "the proxy wrote %d MiB to disk during a %d MiB upload (at most 1%% allowed): it spools request bodies"
        % (written // MiB, size // MiB))


def _announce(proxy, path, size):
    """Announce a body with Expect: 100-continue and read the first answer's status; never send the body."""
    status, _head = raw_request(proxy, proxy.scheme, proxy.host_header, path, method="POST",
                                headers=[("Content-Length", size), ("Expect", "100-continue")])
    return status


def _send_chunked(proxy, path, size):
    """POST ``size`` bytes with Transfer-Encoding: chunked; the status, or None if the proxy closed."""
    def chunks():
        for _index in range(size // (64 * 1024)):
            yield b"x" * (64 * 1024)
    try:
        status, _headers, _body = proxy.request("POST", path, body=chunks(), timeout=60)
    except OSError:
        return None
    return status


@pytest.mark.disruptive
def test_a_body_over_a_small_configured_limit_gets_413_or_is_cut_and_one_under_it_passes(
        proxy, host, traits, converge, backend_ports):
    converge({"immich_proxy_max_body_size": "1M"})
    # Whether the proxy reads what a client still sends after refusing it, so that the client sees the 413
    # (nginx, Apache). Caddy (Go's net/http) closes the connection shortly after its 413, documented in README:
    # a client still sending may see the connection end instead; one that asks first (Expect: 100-continue)
    # always gets the 413.
    drained = sh(host, traits["refused_body_drained"], check=False).rc == 0
    marker = "/_double/sink?over-limit=%s" % uuid.uuid4().hex
    try:
        try:
            status, _headers, _body = proxy.request("POST", marker, body=b"x" * (2 * MiB), timeout=60)
        except OSError as exc:
            assert not drained, "a 2 MiB body with a 1M limit: the connection failed (%r), expected 413" % exc
            status = None
        assert status == 413 or (status is None and not drained), (
            "a 2 MiB body with a 1M limit got HTTP %r, expected 413" % status)
        assert _announce(proxy, marker, 2 * MiB) == 413, "a 2 MiB body announced with Expect was not refused"
        reached = [r for port in backend_ports for r in backend_json(host, port, "/_double/requests")
                   if r["path"] == marker]
        assert not reached, "a body over the limit reached Immich: %r" % reached
        # A chunked body has no length to refuse up front: the proxy must cut it at the limit, so Immich never
        # takes the whole of it (the sink answers 200 with the bytes it read only for a body that ended well).
        assert _send_chunked(proxy, "/_double/sink", 2 * MiB) != 200, (
            "a chunked 2 MiB body with a 1M limit reached Immich whole")
        status, _headers, data = proxy.request("POST", "/_double/sink", body=b"x" * (MiB // 2), timeout=60)
        assert status == 200 and json.loads(data)["bytes"] == MiB // 2, "a 512 KiB body was not passed on"
    finally:
        converge()
    status, _headers, data = proxy.request("POST", "/_double/sink", body=b"x" * (2 * MiB), timeout=60)
    assert status == 200, "after restoring 50000M a 2 MiB body still got %d" % status
