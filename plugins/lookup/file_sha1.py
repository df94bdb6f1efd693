# Copyright: homelab.immich_proxy contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
---
name: file_sha1
short_description: The SHA-1 of a file on the controller
version_added: 0.7.0
description:
  - Returns the SHA-1 (hex) of each file, found where M(ansible.builtin.copy) finds its
    O(ansible.builtin.copy#module:src) (a role's C(files/), the playbook's directory, or an absolute path).
  - The roles compare it with the digest recorded on the host for a proxy binary they copied there
    (C(host.binary_sha1) of M(homelab.immich_proxy.settings)), so that a re-run hashes the binary on the controller
    only, not on every host again.
  - The controller remembers what it hashed in C($XDG_CACHE_HOME/homelab.immich_proxy/file_sha1.json)
    (C(~/.cache) without an absolute C(XDG_CACHE_HOME)), by the file's device, inode, size, modification and
    change times. A file that is written to, replaced, moved or touched in any way has another change time, and
    is hashed again; a re-run no longer reads an unchanged 185 MB Traefik binary for each host.
  - A file changed in the last two seconds is not remembered (its times may not have moved yet). The cache is
    used only where that cache directory exists and belongs to the user running Ansible, and only when the
    collection's directory and file in it belong to that user and no one else may write them.
  - A cache that cannot be read or written is no error, the file is hashed then.
author:
  - homelab.immich_proxy contributors (@homelab)
options:
  _terms:
    description: The files.
    required: true
    type: list
    elements: path
"""

EXAMPLES = r"""
- name: Validate the settings (the result says which digest the host's record vouches for)
  homelab.immich_proxy.settings:
    kind: traefik
    public_url: https://photos.example.org
    backends: [http://10.0.0.21:2283]
    role_variables: {traefik_install: binary, traefik_binary_src: /srv/traefik/traefik}
  register: validated

- name: Say whether the host has this Traefik binary already
  ansible.builtin.debug:
    msg: "{{ lookup('homelab.immich_proxy.file_sha1', '/srv/traefik/traefik') == validated.settings.host.binary_sha1 }}"
"""

RETURN = r"""
_raw:
  description: The SHA-1 of each file, as 40 lowercase hex digits.
  type: list
  elements: str
  sample: [0ea3bd2bf4f2e4ac7e9e3f6b5d2f1f0c9a8b7c6d]
"""

import hashlib
import json
import os
import stat as stat_module
import tempfile
import time

from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase

# at most this many files are remembered (the newest)
_CACHE_ENTRIES = 32
# A file changed this recently is not remembered: on a kernel whose file times move once a tick, a write right after
# the read could leave them as they were (git's "racily clean" entries).
_SETTLE_NS = 2 * 10 ** 9


def _cache_path():
    """$XDG_CACHE_HOME (only if absolute, as the XDG spec says) or ~/.cache, then the collection's own directory;
    None without an absolute home."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    if not os.path.isabs(base):
        return None
    return os.path.join(base, "homelab.immich_proxy", "file_sha1.json")


def _private(stat):
    """Owned by whoever runs Ansible, and writable by no one else: anyone else could plant a digest there."""
    return stat.st_uid == os.geteuid() and not stat.st_mode & 0o022


def _stamp(stat):
    """What changes whenever the file does: a write, a replacement or a touch changes the change time (ctime),
    which no program can set back."""
    return [stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]


def _read_cache(path):
    """The remembered digests, from a regular file (never a link, a FIFO or a device) in a directory, both the
    user's own and private; {} otherwise."""
    try:
        if path is None or not _private(os.lstat(os.path.dirname(path))):
            return {}
        handle = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        try:
            found = os.fstat(handle)
            if not stat_module.S_ISREG(found.st_mode) or not _private(found):
                return {}
            with os.fdopen(handle, encoding="utf-8", closefd=False) as cache_file:
                cache = json.load(cache_file)
        finally:
            os.close(handle)
    except (OSError, ValueError):
        return {}
    return cache if isinstance(cache, dict) else {}


def _write_cache(path, cache):
    """Atomically, best effort: two runs at once both write a valid file, the later one stays. The collection's
    own directory is made only in a cache directory of the user's own (never ~/.cache itself, nor a directory in
    another user's, as under sudo with HOME kept)."""
    if path is None:
        return
    directory = os.path.dirname(path)
    try:
        if not os.path.isdir(directory) and os.lstat(os.path.dirname(directory)).st_uid == os.geteuid():
            try:
                os.mkdir(directory, 0o700)
            except FileExistsError:
                pass
        if not _private(os.lstat(directory)):
            return
        handle, temporary = tempfile.mkstemp(prefix=".file_sha1.", dir=directory)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(cache, out)
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise
    except OSError:
        pass


def _sha1(path):
    """The digest, and the file's stamp if it may be remembered: not if it changed while it was read, or so
    recently that its times may not have moved yet."""
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        before = os.fstat(handle.fileno())
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
        after = os.fstat(handle.fileno())
    settled = time.time_ns() - max(after.st_mtime_ns, after.st_ctime_ns) >= _SETTLE_NS
    return digest.hexdigest(), _stamp(before) if _stamp(before) == _stamp(after) and settled else None


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        cache_path = _cache_path()
        cache = None
        digests = []
        for term in terms:
            path = self.find_file_in_search_path(variables, "files", term, ignore_missing=True)
            if not path:
                raise AnsibleError("file_sha1: %s is not a file on the controller" % term)
            path = os.path.realpath(path)
            try:
                stamp = _stamp(os.stat(path))
                if cache is None:
                    cache = _read_cache(cache_path)
                known = cache.get(path)
                if isinstance(known, dict) and known.get("stamp") == stamp and isinstance(known.get("sha1"), str):
                    digests.append(known["sha1"])
                    continue
                digest, stamp = _sha1(path)
            except OSError as error:
                raise AnsibleError("file_sha1: cannot read %s: %s" % (path, error.strerror)) from None
            digests.append(digest)
            if stamp is not None:
                cache.pop(path, None)
                cache[path] = {"stamp": stamp, "sha1": digest}
                while len(cache) > _CACHE_ENTRIES:
                    cache.pop(next(iter(cache)))
                _write_cache(cache_path, cache)
        return digests
