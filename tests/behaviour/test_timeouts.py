# SPDX-License-Identifier: GPL-3.0-or-later
"""Immich asks for timeouts of at least 600 s: slow uploads and slow answers must pass.

The two slow exchanges start together in the background, so the module takes
about 90 s rather than 165 s.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time

import pytest

from harness import random_stream

SLOW_UPLOAD_BYTES = 6 * 1024 * 1024
SLOW_UPLOAD_RATE = 80 * 1024  # bytes/s: about 77 s, past the 60 s proxy defaults
BACKEND_DELAY = 90

pytestmark = pytest.mark.needs(listens=True)


class Background(threading.Thread):
    def __init__(self, work):
        super().__init__(daemon=True)
        self.work = work
        self.result = None
        self.error = None
        self.seconds = None

    def run(self):
        started = time.monotonic()
        try:
            self.result = self.work()
        except Exception as exc:  # reported by the test that joins it
            self.error = exc
        self.seconds = time.monotonic() - started

    def outcome(self, timeout):
        self.join(timeout)
        assert not self.is_alive(), "still running after %d s" % timeout
        if self.error:
            raise AssertionError("failed after %.0f s: %s" % (self.seconds, self.error))
        return self.result


@pytest.fixture(scope="module")
def slow_exchanges(proxy):
    digest = hashlib.sha1()

    def slow_upload():
        body = random_stream(SLOW_UPLOAD_BYTES, chunk=16 * 1024, rate=SLOW_UPLOAD_RATE, digest=digest)
        headers = {"Content-Length": str(SLOW_UPLOAD_BYTES), "Content-Type": "application/octet-stream"}
        return proxy.request("POST", "/_double/sink", headers=headers, body=body, timeout=700)

    def slow_backend():
        return proxy.request("GET", "/_double/delay?seconds=%d" % BACKEND_DELAY, timeout=700)

    threads = {"upload": Background(slow_upload), "backend": Background(slow_backend)}
    for thread in threads.values():
        thread.start()
    threads["digest"] = digest
    return threads


def test_an_upload_taking_more_than_70_seconds_succeeds(slow_exchanges):
    status, _headers, data = slow_exchanges["upload"].outcome(600)
    seconds = slow_exchanges["upload"].seconds
    assert status == 200, "the slow upload got HTTP %d %r after %.0f s" % (status, data[:200], seconds)
    answer = json.loads(data)
    assert answer["bytes"] == SLOW_UPLOAD_BYTES and answer["sha1"] == slow_exchanges["digest"].hexdigest()
    assert seconds > 70, "the upload took only %.0f s; the test must outlast 70 s" % seconds


def test_a_backend_answering_after_90_seconds_succeeds(slow_exchanges):
    status, _headers, data = slow_exchanges["backend"].outcome(600)
    seconds = slow_exchanges["backend"].seconds
    assert status == 200, "a backend answering after %d s gave HTTP %d %r" % (BACKEND_DELAY, status, data[:200])
    assert seconds >= BACKEND_DELAY, "answered after %.0f s, before the backend's delay" % seconds
