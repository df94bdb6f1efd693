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

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[4]


def lookup(tmp_path, path, cache_home=None, touch=False, env_extra=None):
    """The lookup's answer through ansible-playbook; its digest cache in cache_home (the test's own). touch: the
    play touches the file first, so that the lookup sees it changed a moment ago, however slow the machine."""
    tasks = [{"ansible.builtin.file": {"path": path, "state": "touch"}}] if touch else []
    tasks.append({"ansible.builtin.debug": {
        "msg": "digest=<{{ lookup('homelab.immich_proxy.file_sha1', '%s') }}>" % path}})
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="false")
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(ROOT / ".cache" / "collections"))
    env["XDG_CACHE_HOME"] = str(cache_home or tmp_path / "cache")
    env.update(env_extra or {})
    result = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,",
                             "-c", "local", "-e", "ansible_python_interpreter=%s" % sys.executable, str(playbook)],
                            capture_output=True, text=True, timeout=300, check=False, env=env)
    return result.returncode, result.stdout + result.stderr


def settled(tmp_path, name, content):
    """A file last changed more than the two seconds the cache waits for."""
    path = tmp_path / name
    path.write_bytes(content)
    time.sleep(2.1)
    return path


def cached(tmp_path):
    cache_file = tmp_path / "cache" / "homelab.immich_proxy" / "file_sha1.json"
    return json.loads(cache_file.read_text()) if cache_file.exists() else {}


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
    key = os.path.realpath(binary)
    first = hashlib.sha1(binary.read_bytes()).hexdigest()

    # changed a moment ago: hashed, not remembered (its times may not have moved yet on a coarse clock)
    returncode, output = lookup(tmp_path, str(binary), touch=True)
    assert returncode == 0 and "digest=<%s>" % first in output, output[-2000:]
    assert key not in cached(tmp_path)
    time.sleep(2.1)
    returncode, output = lookup(tmp_path, str(binary))
    assert returncode == 0 and "digest=<%s>" % first in output, output[-2000:]
    cache = cached(tmp_path)
    assert cache[key]["sha1"] == first
    cache_file = tmp_path / "cache" / "homelab.immich_proxy" / "file_sha1.json"
    assert stat.S_IMODE(cache_file.parent.stat().st_mode) == 0o700

    # a hit does not read the file: what the cache says for the unchanged file is what the lookup returns
    cache[key]["sha1"] = "0" * 40
    cache_file.write_text(json.dumps(cache))
    returncode, output = lookup(tmp_path, str(binary))
    assert returncode == 0 and "digest=<%s>" % ("0" * 40) in output, output[-2000:]

    # same size, same modification time, other content: its change time differs, so it is hashed again, and
    # remembered once it has settled
    before = binary.stat()
    with open(binary, "r+b") as handle:
        handle.seek(4)
        handle.write(b"b")
    os.utime(binary, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (binary.stat().st_size, binary.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    second = hashlib.sha1(binary.read_bytes()).hexdigest()
    time.sleep(2.1)
    returncode, output = lookup(tmp_path, str(binary))
    assert returncode == 0 and "digest=<%s>" % second in output, output[-2000:]
    assert cached(tmp_path)[key]["sha1"] == second


@pytest.mark.parametrize("plant", ["group-writable directory", "group-writable file", "file owned by another user",
                                   "symbolic link to the file", "nothing wrong (the control)"])
def test_file_sha1_trusts_no_cache_someone_else_could_have_written(tmp_path, plant):
    """Anyone who could write the cache could make a changed binary look like the one a host has already."""
    binary = settled(tmp_path, "traefik", b"traefik" * 1000)
    key = os.path.realpath(binary)
    directory = tmp_path / "cache" / "homelab.immich_proxy"
    directory.mkdir(parents=True, mode=0o700)
    planted = json.dumps({key: {"stamp": _plugin_stamp(binary), "sha1": "0" * 40}})
    cache_file = directory / "file_sha1.json"
    if plant == "symbolic link to the file":
        (tmp_path / "elsewhere.json").write_text(planted)
        cache_file.symlink_to(tmp_path / "elsewhere.json")
    else:
        cache_file.write_text(planted)
        cache_file.chmod(0o600)
    if plant == "group-writable directory":
        directory.chmod(0o770)
    elif plant == "group-writable file":
        cache_file.chmod(0o660)
    elif plant == "file owned by another user":
        if os.geteuid() != 0:
            pytest.skip("needs root to give the file to another user")
        os.chown(cache_file, 65534, 65534)
    # the planted digest is what an unguarded cache would return: the control shows it is (a private directory
    # and file of the user's own, a stamp that matches), so each rule above is what keeps it out
    returncode, output = lookup(tmp_path, str(binary))
    assert returncode == 0, output[-2000:]
    trusted = "0" * 40 if plant.endswith("(the control)") else hashlib.sha1(binary.read_bytes()).hexdigest()
    assert "digest=<%s>" % trusted in output, output[-2000:]


def test_file_sha1_makes_no_cache_directory_of_its_own_but_the_collections(tmp_path):
    """No ~/.cache where there was none (under sudo with HOME kept it would be root's, in a user's home), and a
    relative XDG_CACHE_HOME is ignored, as the XDG spec says."""
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    binary = settled(tmp_path, "caddy", b"caddy" * 1000)
    expected = "digest=<%s>" % hashlib.sha1(binary.read_bytes()).hexdigest()
    returncode, output = lookup(tmp_path, str(binary), env_extra={"HOME": str(home), "XDG_CACHE_HOME": "relative"})
    assert returncode == 0 and expected in output, output[-2000:]
    assert not (home / ".cache").exists() and not (ROOT / "relative").exists()
    (home / ".cache").mkdir()
    returncode, output = lookup(tmp_path, str(binary), env_extra={"HOME": str(home), "XDG_CACHE_HOME": "relative"})
    assert returncode == 0 and expected in output, output[-2000:]
    assert (home / ".cache" / "homelab.immich_proxy" / "file_sha1.json").exists()


def test_file_sha1_hashes_the_file_when_its_cache_cannot_be_used(tmp_path):
    cache_home = tmp_path / "cache"
    cache_home.write_text("not a directory")
    binary = tmp_path / "caddy"
    binary.write_bytes(b"caddy" * 1000)
    returncode, output = lookup(tmp_path, str(binary), cache_home)
    assert returncode == 0 and "digest=<%s>" % hashlib.sha1(binary.read_bytes()).hexdigest() in output, output[-2000:]


def _plugin_stamp(path):
    """The plugin's stamp of a file (its _stamp), so that a planted entry differs from a remembered one only where a
    rule says; written out, not imported: loading a lookup plugin sets up the controller's Display, and the module
    tests later in the same run would then print their warnings instead of returning them. The control case of
    test_file_sha1_trusts_no_cache_someone_else_could_have_written fails if the two differ."""
    found = os.stat(path)
    return [found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns, found.st_ctime_ns]
