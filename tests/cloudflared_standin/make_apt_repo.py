#!/usr/bin/env python
# SPDX-License-Identifier: GPL-3.0-or-later
"""TEST-ONLY: a signed apt repository in the layout of Cloudflare's (suite "any", component "main").

Cloudflare's repository (https://pkg.cloudflare.com/cloudflared) cannot be
reached here, so the cloudflared scenario serves one made by this script on
loopback: the .deb built around the cloudflared stand-in, Packages and a Release
file signed with a throwaway key (InRelease and Release.gpg), and the key as a
binary keyring at cloudflare-main.gpg, as Cloudflare publishes its own. The role
installs from it exactly as from Cloudflare's: signed-by keyring, suite any.

    make_apt_repo.py DEB OUTPUT_DIR
"""
import email.utils
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile


def control_fields(deb):
    text = subprocess.run(["dpkg-deb", "-f", deb], capture_output=True, text=True, check=True).stdout
    return text.rstrip("\n")


def main(deb, out):
    if os.path.exists(out):
        shutil.rmtree(out)
    pool = os.path.join(out, "pool", "main", "c", "cloudflared")
    binary = os.path.join(out, "dists", "any", "main", "binary-amd64")
    os.makedirs(pool)
    os.makedirs(binary)
    name = os.path.basename(deb)
    shutil.copy(deb, os.path.join(pool, name))
    with open(deb, "rb") as handle:
        data = handle.read()
    stanza = "%s\nFilename: pool/main/c/cloudflared/%s\nSize: %d\nSHA256: %s\n" % (
        control_fields(deb), name, len(data), hashlib.sha256(data).hexdigest())
    with open(os.path.join(binary, "Packages"), "w") as handle:
        handle.write(stanza)
    suite = os.path.join(out, "dists", "any")
    lines = ["Origin: homelab.immich_proxy tests", "Label: TEST-ONLY stand-in of pkg.cloudflare.com",
             "Suite: any", "Codename: any", "Architectures: amd64", "Components: main",
             "Date: %s" % email.utils.formatdate(usegmt=True), "SHA256:"]
    for relative in ("main/binary-amd64/Packages",):
        with open(os.path.join(suite, relative), "rb") as handle:
            content = handle.read()
        lines.append(" %s %d %s" % (hashlib.sha256(content).hexdigest(), len(content), relative))
    with open(os.path.join(suite, "Release"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    home = tempfile.mkdtemp(prefix="gpg-", dir="/tmp")
    gpg = ["gpg", "--homedir", home, "--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", ""]
    try:
        subprocess.run(gpg + ["--quick-gen-key", "homelab.immich_proxy test repository (TEST ONLY)", "default",
                              "default", "never"], check=True, capture_output=True)
        subprocess.run(gpg + ["--clearsign", "-o", os.path.join(suite, "InRelease"), os.path.join(suite, "Release")],
                       check=True, capture_output=True)
        subprocess.run(gpg + ["--detach-sign", "-o", os.path.join(suite, "Release.gpg"),
                              os.path.join(suite, "Release")], check=True, capture_output=True)
        with open(os.path.join(out, "cloudflare-main.gpg"), "wb") as handle:
            handle.write(subprocess.run(gpg + ["--export"], check=True, capture_output=True).stdout)
    finally:
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "gpg-agent"], check=False, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
