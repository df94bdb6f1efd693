# SPDX-License-Identifier: GPL-3.0-or-later
"""The controller-side digest the roles compare with the one recorded on the host for a binary they copied.

Run through ansible-playbook: the controller's plugin code loaded in this process would change how the modules
under test here report their warnings.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import stat
import subprocess
import sys
import time

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[4]


def lookup(tmp_path, path, cache_home=None):
    """The lookup's answer through ansible-playbook; its digest cache in cache_home (the test's own)."""
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"ansible.builtin.debug": {"msg": "digest=<{{ lookup('homelab.immich_proxy.file_sha1', '%s') }}>" % path}}]}]))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="false")
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(ROOT / ".cache" / "collections"))
    env["XDG_CACHE_HOME"] = str(cache_home or tmp_path / "cache")
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


def test_file_sha1_remembers_a_digest_until_the_file_changes_in_any_way(tmp_path):
    """A re-run (and every host of a run) must not read a 185 MB binary again, and must never trust a digest of
    what the file was: a same-size rewrite with its modification time set back is hashed again."""
    (tmp_path / "cache").mkdir()
    binary = tmp_path / "traefik"
    binary.write_bytes(b"\x7fELF" + b"a" * 100000)
    first = hashlib.sha1(binary.read_bytes()).hexdigest()
    cache_file = tmp_path / "cache" / "homelab.immich_proxy" / "file_sha1.json"

    # just written: hashed, not remembered (its times may not have moved yet on a coarse clock)
    returncode, output = lookup(tmp_path, str(binary))
    assert returncode == 0 and "digest=<%s>" % first in output, output[-2000:]
    assert str(binary) not in json.loads(cache_file.read_text() if cache_file.exists() else "{}")
    time.sleep(2.1)
    returncode, output = lookup(tmp_path, str(binary))
    assert returncode == 0 and "digest=<%s>" % first in output, output[-2000:]
    cache = json.loads(cache_file.read_text())
    assert cache[str(binary)]["sha1"] == first
    assert stat.S_IMODE(cache_file.parent.stat().st_mode) == 0o700

    # a hit does not read the file: what the cache says for the unchanged file is what the lookup returns
    cache[str(binary)]["sha1"] = "0" * 40
    cache_file.write_text(json.dumps(cache))
    returncode, output = lookup(tmp_path, str(binary))
    assert returncode == 0 and "digest=<%s>" % ("0" * 40) in output, output[-2000:]

    # ... but only from a cache no one else may write
    cache_file.parent.chmod(0o777)
    returncode, output = lookup(tmp_path, str(binary))
    assert returncode == 0 and "digest=<%s>" % first in output, output[-2000:]
    cache_file.parent.chmod(0o700)

    # same size, same modification time, other content: its change time differs, so it is hashed again
    before = binary.stat()
    with open(binary, "r+b") as handle:
        handle.seek(4)
        handle.write(b"b")
    os.utime(binary, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (binary.stat().st_size, binary.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    second = hashlib.sha1(binary.read_bytes()).hexdigest()
    returncode, output = lookup(tmp_path, str(binary))
    assert returncode == 0 and "digest=<%s>" % second in output, output[-2000:]


def test_file_sha1_hashes_the_file_when_its_cache_cannot_be_used(tmp_path):
    cache_home = tmp_path / "cache"
    cache_home.write_text("not a directory")
    binary = tmp_path / "caddy"
    binary.write_bytes(b"caddy" * 1000)
    returncode, output = lookup(tmp_path, str(binary), cache_home)
    assert returncode == 0 and "digest=<%s>" % hashlib.sha1(binary.read_bytes()).hexdigest() in output, output[-2000:]
