# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import grp
import os
import pwd

import pytest

from ansible_collections.homelab.immich_proxy.plugins.module_utils._transaction import (
    ApplyError,
    FileChange,
    Transaction,
)

ME = pwd.getpwuid(os.getuid()).pw_name
MY_GROUP = grp.getgrgid(os.getgid()).gr_name


def change(path, content, mode="0644"):
    return FileChange(str(path), content, mode, ME, MY_GROUP)


def listing(directory):
    return sorted(os.listdir(directory))


def test_new_and_changed_files_land_together_when_the_test_passes(tmp_path):
    (tmp_path / "a.conf").write_text("old a")
    seen = {}

    def proxy_test():
        seen["a"] = (tmp_path / "a.conf").read_text()
        seen["b"] = (tmp_path / "b.conf").read_text()
        return "syntax is ok"

    tx = Transaction([change(tmp_path / "a.conf", "new a"), change(tmp_path / "b.conf", "new b")])
    assert tx.apply(proxy_test) == "syntax is ok"
    assert seen == {"a": "new a", "b": "new b"}, "the test must see the whole candidate tree in place"
    assert (tmp_path / "a.conf").read_text() == "new a"
    assert listing(tmp_path) == ["a.conf", "b.conf"], "no staging files may be left"


def test_a_rejected_candidate_restores_every_file_and_removes_new_ones(tmp_path):
    (tmp_path / "a.conf").write_text("old a")
    (tmp_path / "default").write_text("default site")
    os.chmod(tmp_path / "a.conf", 0o600)

    def proxy_test():
        raise RuntimeError("nginx: [emerg] unknown directive")

    tx = Transaction([change(tmp_path / "a.conf", "broken"), change(tmp_path / "b.conf", "new b"),
                      FileChange(str(tmp_path / "default"))])
    with pytest.raises(ApplyError, match="unknown directive.*every file was restored"):
        tx.apply(proxy_test)
    assert (tmp_path / "a.conf").read_text() == "old a"
    assert oct(os.stat(tmp_path / "a.conf").st_mode & 0o777) == "0o600"
    assert (tmp_path / "default").read_text() == "default site"
    assert listing(tmp_path) == ["a.conf", "default"]


def test_unchanged_files_are_not_pending(tmp_path):
    (tmp_path / "a.conf").write_text("same")
    os.chmod(tmp_path / "a.conf", 0o644)
    tx = Transaction([change(tmp_path / "a.conf", "same"), FileChange(str(tmp_path / "gone"))])
    assert tx.pending == []


def test_a_mode_change_alone_is_a_change(tmp_path):
    (tmp_path / "key.pem").write_text("secret")
    os.chmod(tmp_path / "key.pem", 0o644)
    tx = Transaction([change(tmp_path / "key.pem", "secret", mode="0600")])
    assert [c.path for c in tx.pending] == [str(tmp_path / "key.pem")]
    tx.apply(lambda: "")
    assert os.stat(tmp_path / "key.pem").st_mode & 0o777 == 0o600


def test_the_diff_shows_before_and_after(tmp_path):
    (tmp_path / "a.conf").write_text("old\n")
    tx = Transaction([change(tmp_path / "a.conf", "new\n"), FileChange(str(tmp_path / "nothing"))])
    assert [c.diff() for c in tx.pending] == [{
        "before_header": str(tmp_path / "a.conf"), "after_header": str(tmp_path / "a.conf"),
        "before": "old\n", "after": "new\n"}]


def test_a_missing_directory_is_an_error_that_changes_nothing(tmp_path):
    (tmp_path / "a.conf").write_text("old a")
    tx = Transaction([change(tmp_path / "a.conf", "new a"), change(tmp_path / "missing" / "b.conf", "b")])
    with pytest.raises(ApplyError, match="does not exist"):
        tx.apply(lambda: "")
    assert (tmp_path / "a.conf").read_text() == "old a"
    assert listing(tmp_path) == ["a.conf"]


def test_a_relative_or_repeated_path_is_refused(tmp_path):
    with pytest.raises(ApplyError, match="absolute"):
        Transaction([FileChange("etc/nginx.conf", "x")])
    with pytest.raises(ApplyError, match="twice"):
        Transaction([change(tmp_path / "a", "x"), change(tmp_path / "a", "y")])


def test_a_symlink_to_remove_is_restored_as_a_symlink(tmp_path):
    (tmp_path / "site").write_text("site")
    os.symlink(tmp_path / "site", tmp_path / "enabled")

    def proxy_test():
        raise RuntimeError("rejected")

    tx = Transaction([FileChange(str(tmp_path / "enabled"))])
    with pytest.raises(ApplyError):
        tx.apply(proxy_test)
    assert os.readlink(tmp_path / "enabled") == str(tmp_path / "site")


def test_links_land_with_the_files_and_are_compared_by_target(tmp_path):
    (tmp_path / "available").mkdir()
    (tmp_path / "enabled").mkdir()
    (tmp_path / "available" / "site.conf").write_text("site")
    link = tmp_path / "enabled" / "site.conf"
    seen = {}

    def proxy_test():
        seen["through the link"] = link.read_text()
        return ""

    tx = Transaction([FileChange(str(link), link="../available/site.conf")])
    assert [c.path for c in tx.pending] == [str(link)]
    tx.apply(proxy_test)
    assert seen == {"through the link": "site"}, "the test must see the link in place"
    assert os.readlink(link) == "../available/site.conf"
    assert listing(tmp_path / "enabled") == ["site.conf"], "no staging links may be left"
    assert Transaction([FileChange(str(link), link="../available/site.conf")]).pending == []
    elsewhere = Transaction([FileChange(str(link), link="../available/other.conf")])
    assert [c.diff()["after"] for c in elsewhere.pending] == ["-> ../available/other.conf"]


def test_a_rejected_candidate_removes_new_links_and_puts_a_replaced_file_back(tmp_path):
    (tmp_path / "mod.load").write_text("LoadModule")
    (tmp_path / "plain.conf").write_text("a regular file where a link is wanted")

    def proxy_test():
        raise RuntimeError("rejected")

    tx = Transaction([FileChange(str(tmp_path / "new.load"), link="mod.load"),
                      FileChange(str(tmp_path / "plain.conf"), link="mod.load")])
    with pytest.raises(ApplyError):
        tx.apply(proxy_test)
    assert listing(tmp_path) == ["mod.load", "plain.conf"]
    assert not os.path.islink(tmp_path / "plain.conf")
    assert (tmp_path / "plain.conf").read_text() == "a regular file where a link is wanted"
