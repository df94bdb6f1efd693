# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: homelab.immich_proxy contributors
"""What a proxy service last loaded, remembered between runs.

reload_service records the digest of the config the running service loaded
and the service's main PID. apply_config marks the record pending whenever it
changes files: the next reload_service must then make the service take the
config, even when the digest equals the recorded one. Without the mark, a
hand-edited config that was reloaded by hand and then rewritten by a run back
to what was recorded would keep serving (same digest, so no reload), and a run
interrupted between apply and reload would leave the new files unloaded.
"""
from __future__ import annotations

import json
import os
import re
import stat
import tempfile

DEFAULT_STATE_DIR = "/var/lib/immich-proxy"


def load_plan(proxy, state, watch=()):
    """How the service takes the config on disk now: (action, digest, recorded, running).

    action is "started" when the service is stopped, "none" when it runs exactly
    what is on disk (same digest, no change pending, same main PID), else the
    proxy's own way of taking a config ("reloaded" or "restarted").
    reload_service acts on it; apply_config reports it, so the roles know before
    their handlers run what taking the config will do.
    """
    digest = proxy.config_digest(watch)
    recorded = state.read()
    running = proxy.is_running()
    pid = proxy.main_pid() if running else 0
    if not running:
        action = "started"
    elif not recorded.get("pending") and recorded.get("digest") == digest and (
            recorded.get("pid") == pid or proxy.strategy == "restart"):
        # a proxy that only restarts reads the files on disk whenever it starts (after a reboot, or systemd's
        # Restart=on-failure): a new PID alone is no reason to drop its connections again
        action = "none"
    else:
        action = proxy.pending_action()
    return action, digest, recorded, running


def deployed_kinds(state_dir=DEFAULT_STATE_DIR):
    """The proxy kinds this collection deployed on this host: those with a record in the state directory."""
    try:
        names = os.listdir(state_dir)
    except OSError:
        return set()
    return {name[:-len(".loaded.json")] for name in names if name.endswith(".loaded.json") and name[0] != "."}


class LoadedState:
    def __init__(self, state_dir, kind):
        self.path = os.path.join(state_dir, "%s.loaded.json" % kind)

    def read(self):
        try:
            with open(self.path) as handle:
                state = json.load(handle)
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def write(self, state):
        directory = os.path.dirname(self.path)
        os.makedirs(directory, mode=0o755, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=directory, prefix=".loaded-", suffix=".json")
        try:
            with os.fdopen(handle, "w") as out:
                json.dump(state, out, sort_keys=True)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def mark_pending(self):
        state = self.read()
        state["pending"] = True
        self.write(state)

    def restore(self, state):
        """Put back what read() returned earlier ({} when there was no record)."""
        if state:
            self.write(state)
        elif os.path.exists(self.path):
            os.unlink(self.path)

    def forget(self):
        """The service no longer serves Immich for this collection (another kind took its ports over)."""
        if os.path.exists(self.path):
            os.unlink(self.path)

    def record(self, digest, pid):
        self.write({"digest": digest, "pid": pid})


def binary_record_path(kind, state_dir=DEFAULT_STATE_DIR):
    """Where the role records the SHA-1 of the proxy binary it copied from the controller (sha1sum's format)."""
    return os.path.join(state_dir, "%s.binary.sha1" % kind)


def recorded_binary_sha1(record, binary):
    """The SHA-1 the record gives for binary, when the record still speaks for it; None otherwise.

    Hashing a 185 MB Traefik on every run is most of a no-op re-run's cost, so
    the role writes the digest down after it copied the binary, and a re-run
    compares the controller's digest with the record instead. The record speaks
    for the binary only while it names that path and was written after the
    binary's inode last changed: a binary replaced or touched since (a new file
    moved there, a write, chmod or chown all set its ctime, which no one can set
    back) is hashed again by the copy, and recorded anew. The role dates the
    record with the host's clock after every copy; a clock set back across
    a replacement of the binary would fool this, as it fools make.
    """
    try:
        with open(record) as handle:
            text = handle.read(4096)
        recorded = os.lstat(record)
        installed = os.lstat(binary)
    except OSError:
        return None
    found = re.fullmatch(r"([0-9a-f]{40})  (\S+)\n", text)
    # a link at the binary's path (Cloudflare's package makes one) is no binary the role copied: the copy replaces it
    if not found or found.group(2) != binary or not stat.S_ISREG(installed.st_mode) \
            or not stat.S_ISREG(recorded.st_mode) \
            or not installed.st_ctime_ns < recorded.st_mtime_ns:
        return None
    return found.group(1)
