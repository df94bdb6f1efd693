# SPDX-License-Identifier: GPL-3.0-or-later
"""The controller-side digest the roles compare with the one recorded on the host for a binary they copied.

Run through ansible-playbook: the controller's plugin code loaded in this process would change how the modules
under test here report their warnings.
"""
from __future__ import annotations

import hashlib
import os
import pathlib
import subprocess
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[4]


def lookup(tmp_path, path):
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"ansible.builtin.debug": {"msg": "digest=<{{ lookup('homelab.immich_proxy.file_sha1', '%s') }}>" % path}}]}]))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="false")
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(ROOT / ".cache" / "collections"))
    result = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,",
                             str(playbook)], capture_output=True, text=True, timeout=300, check=False, env=env)
    return result.returncode, result.stdout + result.stderr


def test_file_sha1_is_the_sha1_of_the_file_as_sha1sum_gives_it_found_where_copy_finds_its_src(tmp_path):
    (tmp_path / "files").mkdir()
    binary = tmp_path / "files" / "traefik"
    binary.write_bytes(b"\x7fELF" + bytes(range(256)) * 5000)
    expected = "digest=<%s>" % hashlib.sha1(binary.read_bytes()).hexdigest()
    for path in (str(binary), "traefik"):
        returncode, output = lookup(tmp_path, path)
        assert returncode == 0 and expected in output, output[-2000:]


def test_file_sha1_of_a_missing_file_says_which(tmp_path):
    returncode, output = lookup(tmp_path, str(tmp_path / "nothing-here"))
    assert returncode != 0
    assert "file_sha1: %s is not a file on the controller" % (tmp_path / "nothing-here") in output, output[-2000:]
