# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: homelab.immich_proxy contributors
"""Transactional config apply: all files land together, or none do.

A proxy config is a tree of files that is only valid as a whole, so a snippet
cannot be checked on its own (``template: validate:`` tests a temporary copy as
if it were the whole config). Here every file is staged next to its
destination, the live copies are kept aside, the staged files are swapped in,
the proxy tests the whole tree in place, and on any failure every file is put
back and every new one removed. The running proxy only rereads its config on
reload, so the tested-and-reverted candidate never serves a request.
"""
from __future__ import annotations

import grp
import hashlib
import os
import pwd
import stat
import tempfile
import uuid


class ApplyError(Exception):
    """The candidate was rejected or could not be written; the old files are back."""


class FileChange:
    """One desired file (content set), one symlink (link set) or one file to remove (neither)."""

    def __init__(self, path, content=None, mode=None, owner=None, group=None, secret=False, link=None,
                 check_mode=False):
        self.path = path
        # in check mode, an owner or group the run creates earlier (a service user) may not exist yet
        self.check_mode = check_mode
        self.secret = secret
        self.link = link
        if link is not None:
            # A symlink (Debian's sites-enabled and mods-enabled) is compared by its target.
            content = ("-> %s" % link).encode()
        self.content = content.encode() if isinstance(content, str) else content
        self.mode = mode
        self.owner = owner
        self.group = group
        self.before = None
        self.exists = False
        self.before_meta = None
        self.meta = None if self.remove else self._desired_meta()

    @property
    def remove(self):
        return self.content is None

    def read_current(self):
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        self.exists = True
        if stat.S_ISLNK(st.st_mode):
            self.before = ("-> %s" % os.readlink(self.path)).encode()
            self.before_meta = ("link", None, None)
            return
        if not stat.S_ISREG(st.st_mode):
            raise ApplyError("%s exists and is not a regular file" % self.path)
        with open(self.path, "rb") as handle:
            self.before = handle.read()
        self.before_meta = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)

    def _desired_meta(self):
        if self.link is not None:
            return ("link", None, None)
        try:
            mode = int(self.mode, 8) if isinstance(self.mode, str) else self.mode
        except ValueError:
            raise ApplyError("mode '%s' of %s is not an octal number such as '0644'" % (self.mode, self.path)) from None
        try:
            uid = pwd.getpwnam(self.owner).pw_uid if self.owner else 0
        except KeyError:
            if not self.check_mode:
                raise ApplyError("owner '%s' of %s does not exist on this host" % (self.owner, self.path)) from None
            uid = -1
        try:
            gid = grp.getgrnam(self.group).gr_gid if self.group else 0
        except KeyError:
            if not self.check_mode:
                raise ApplyError("group '%s' of %s does not exist on this host" % (self.group, self.path)) from None
            gid = -1
        return (mode if mode is not None else 0o644, uid, gid)

    @property
    def changed(self):
        if self.remove:
            return self.exists
        if not self.exists:
            return True
        return self.before != self.content or self.before_meta != self.meta

    def diff(self):
        def text(data):
            if data is None:
                return ""
            if self.secret:
                # A credential never reaches Ansible's output, not even as a diff.
                return "(secret: %d bytes, sha256 %s)\n" % (len(data), hashlib.sha256(data).hexdigest()[:12])
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                # a binary (a Caddy the other install path put there): not megabytes of mojibake in the result
                return "(binary: %d bytes, sha256 %s)\n" % (len(data), hashlib.sha256(data).hexdigest()[:12])
        return {
            "before_header": self.path if self.exists else "%s (absent)" % self.path,
            "after_header": "%s (absent)" % self.path if self.remove else self.path,
            "before": text(self.before),
            "after": "" if self.remove else text(self.content),
        }


class DirectoryChange(FileChange):
    """One directory that must exist with this mode and owner (made or set before the files, undone with them)."""

    def __init__(self, path, mode="0755", owner="root", group="root", check_mode=False):
        if not os.path.isabs(path):
            raise ApplyError("'%s' is not an absolute path" % path)
        super().__init__(path, content=b"", mode=mode, owner=owner, group=group, check_mode=check_mode)
        try:
            # a link to a directory (moved to another disk) is that directory
            st = os.stat(path)
        except FileNotFoundError:
            if os.path.islink(path):
                raise ApplyError("%s is a link to nothing; it must be a directory" % path) from None
            return
        if not stat.S_ISDIR(st.st_mode):
            raise ApplyError("%s exists and is not a directory" % path)
        self.exists = True
        self.before_meta = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)

    @property
    def changed(self):
        return not self.exists or self.before_meta != self.meta

    def _describe(self, meta):
        mode, uid, gid = meta
        try:
            owner = pwd.getpwuid(uid).pw_name
            group = grp.getgrgid(gid).gr_name
        except KeyError:
            owner, group = uid, gid
        return "directory, mode %04o, owner %s:%s\n" % (mode, owner, group)

    def diff(self):
        return {"before_header": self.path if self.exists else "%s (absent)" % self.path, "after_header": self.path,
                "before": self._describe(self.before_meta) if self.exists else "",
                "after": "directory, mode %04o, owner %s:%s\n" % (self.meta[0], self.owner, self.group)}

    def apply(self):
        mode, uid, gid = self.meta
        if not self.exists:
            os.mkdir(self.path, mode)
        os.chown(self.path, uid, gid)
        os.chmod(self.path, mode)

    def undo(self):
        """Put back what apply() changed: remove a directory it made (if still empty), or its mode and owner."""
        try:
            if not self.exists:
                os.rmdir(self.path)
            else:
                mode, uid, gid = self.before_meta
                os.chown(self.path, uid, gid)
                os.chmod(self.path, mode)
        except OSError:
            pass


class Transaction:
    """Stage, swap, test, and roll back on failure."""

    SUFFIX_NEW = ".immich-proxy-new"
    SUFFIX_OLD = ".immich-proxy-old"

    def __init__(self, changes):
        self.changes = list(changes)
        paths = [c.path for c in self.changes]
        if len(set(paths)) != len(paths):
            raise ApplyError("a file is listed twice: %s" % sorted(p for p in paths if paths.count(p) > 1))
        for change in self.changes:
            if not os.path.isabs(change.path):
                raise ApplyError("'%s' is not an absolute path" % change.path)
            change.read_current()
        self.staged = {}
        self.kept = {}
        self.swapped = []

    @property
    def pending(self):
        return [c for c in self.changes if c.changed]

    def _stage(self, change):
        directory = os.path.dirname(change.path)
        if not os.path.isdir(directory):
            raise ApplyError("directory %s does not exist (is the proxy package installed?)" % directory)
        if change.link is not None:
            tmp = _sibling(change.path, self.SUFFIX_NEW)
            os.symlink(change.link, tmp)
            self.staged[change.path] = tmp
            return
        handle, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(change.path),
                                       suffix=self.SUFFIX_NEW)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(change.content)
                out.flush()
                os.fsync(out.fileno())
            mode, uid, gid = change.meta
            os.chown(tmp, uid, gid)
            os.chmod(tmp, mode)
        except BaseException:
            os.unlink(tmp)
            raise
        self.staged[change.path] = tmp

    def _keep(self, change):
        # A hard link keeps the live file without a moment in which it is missing.
        keep = _sibling(change.path, self.SUFFIX_OLD)
        os.link(change.path, keep, follow_symlinks=False)
        self.kept[change.path] = keep

    def apply(self, test):
        """Swap every pending file in, run ``test()``; roll everything back if anything fails."""
        pending = self.pending
        try:
            for change in pending:
                if not change.remove:
                    self._stage(change)
                if change.exists:
                    self._keep(change)
            for change in pending:
                if change.remove:
                    os.unlink(change.path)
                else:
                    os.replace(self.staged.pop(change.path), change.path)
                self.swapped.append(change)
            _fsync_dirs(c.path for c in pending)
            result = test()
        except BaseException as exc:
            self.rollback()
            if isinstance(exc, ApplyError):
                raise
            if isinstance(exc, Exception):
                raise ApplyError("%s; every file was restored, the previous configuration is still in place"
                                 % exc) from exc
            raise
        self._discard_kept()
        return result

    def rollback(self):
        for change in reversed(self.swapped):
            kept = self.kept.pop(change.path, None)
            if kept:
                os.replace(kept, change.path)
            elif os.path.lexists(change.path):
                os.unlink(change.path)
        self.swapped = []
        for tmp in list(self.staged.values()) + list(self.kept.values()):
            if os.path.lexists(tmp):
                os.unlink(tmp)
        self.staged = {}
        self.kept = {}

    def _discard_kept(self):
        for kept in self.kept.values():
            if os.path.lexists(kept):
                os.unlink(kept)
        self.kept = {}


def _sibling(path, suffix):
    """A hidden, unique name next to ``path`` (same directory, so a rename is atomic)."""
    return os.path.join(os.path.dirname(path), ".%s.%s%s" % (os.path.basename(path), uuid.uuid4().hex[:8], suffix))


def _fsync_dirs(paths):
    for directory in {os.path.dirname(p) for p in paths}:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
