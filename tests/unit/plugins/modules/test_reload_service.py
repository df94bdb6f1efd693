# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import json

import pytest

from ansible_collections.homelab.immich_proxy.plugins.module_utils import _proxies
from ansible_collections.homelab.immich_proxy.plugins.module_utils._state import LoadedState
from ansible_collections.homelab.immich_proxy.plugins.modules import reload_service


class FakeNginx(_proxies.Nginx):
    """nginx as systemd and /proc would show it; what it does is recorded in ``log``."""

    running = True
    config = "http { server {} }"
    reload_works = True
    master = 100
    workers = frozenset({101})
    log = []

    def installed(self):
        return True

    def effective_config(self):
        return FakeNginx.config

    def test(self):
        FakeNginx.log.append("test")
        return ""

    def is_running(self):
        return FakeNginx.running

    def main_pid(self):
        return FakeNginx.master if FakeNginx.running else 0

    def start(self):
        FakeNginx.log.append("start")
        FakeNginx.running = True

    def systemctl(self, *args, check=True):
        FakeNginx.log.append(" ".join(args))
        if args[0] == "reload" and FakeNginx.reload_works:
            FakeNginx.workers = frozenset({max(FakeNginx.workers) + 1})
        return 0, ""

    def generation(self):
        return (FakeNginx.master, FakeNginx.workers)

    @staticmethod
    def wait_until(predicate, seconds):
        return predicate()


@pytest.fixture
def nginx(monkeypatch):
    monkeypatch.setitem(_proxies.PROXIES, "nginx", FakeNginx)
    FakeNginx.running, FakeNginx.reload_works, FakeNginx.log = True, True, []
    FakeNginx.config = "http { server {} }"
    return FakeNginx


def test_a_stopped_proxy_is_started_after_its_config_is_tested(tmp_path, nginx, run_module):
    nginx.running = False
    result, failed = run_module(reload_service, {"kind": "nginx", "state_dir": str(tmp_path)})
    assert not failed and result["action"] == "started"
    assert nginx.log == ["test", "start"]


def test_a_changed_config_is_reloaded_once_and_then_left_alone(tmp_path, nginx, run_module):
    result, _failed = run_module(reload_service, {"kind": "nginx", "state_dir": str(tmp_path)})
    assert result["action"] == "reloaded" and nginx.log == ["test", "reload nginx"]
    state = json.loads((tmp_path / "nginx.loaded.json").read_text())
    assert state == {"digest": result["digest"], "pid": 100}
    result, _failed = run_module(reload_service, {"kind": "nginx", "state_dir": str(tmp_path)})
    assert result == {"changed": False, "action": "none", "drops": None, "digest": state["digest"],
                      "diff": result["diff"]}
    assert nginx.log == ["test", "reload nginx"], "an unchanged config must not be reloaded again"


def test_a_reload_that_did_not_take_effect_is_an_error(tmp_path, nginx, run_module):
    nginx.reload_works = False
    result, failed = run_module(reload_service, {"kind": "nginx", "state_dir": str(tmp_path)})
    assert failed
    assert "still runs the previous one" in result["msg"]
    assert not (tmp_path / "nginx.loaded.json").exists()


def test_a_changed_certificate_is_a_changed_config(tmp_path, nginx, run_module):
    cert = tmp_path / "fullchain.pem"
    cert.write_text("one")
    args = {"kind": "nginx", "state_dir": str(tmp_path), "watch": [str(cert)]}
    run_module(reload_service, args)
    cert.write_text("two")
    result, _failed = run_module(reload_service, args)
    assert result["action"] == "reloaded"


def test_check_mode_predicts_without_touching_the_service(tmp_path, nginx, run_module):
    result, failed = run_module(reload_service, {"kind": "nginx", "state_dir": str(tmp_path)}, check_mode=True)
    assert not failed and result["changed"] and result["action"] == "reloaded"
    assert nginx.log == []


def test_a_restarted_service_is_reloaded_since_what_it_loaded_is_unknown(tmp_path, nginx, run_module):
    run_module(reload_service, {"kind": "nginx", "state_dir": str(tmp_path)})
    nginx.master = 200
    result, _failed = run_module(reload_service, {"kind": "nginx", "state_dir": str(tmp_path)})
    assert result["action"] == "reloaded"
    nginx.master = 100


def test_a_config_rewritten_by_apply_is_reloaded_even_when_its_digest_was_recorded(tmp_path, nginx, run_module):
    """A hand edit reloaded by hand, then a run that writes the file back: the digest equals the record."""
    args = {"kind": "nginx", "state_dir": str(tmp_path)}
    run_module(reload_service, args)
    LoadedState(str(tmp_path), "nginx").mark_pending()
    result, failed = run_module(reload_service, args)
    assert not failed and result["action"] == "reloaded", "a changed apply must be followed by a reload"
    assert nginx.log == ["test", "reload nginx"] * 2
    result, _failed = run_module(reload_service, args)
    assert result["action"] == "none", "the pending mark must be cleared by the reload"


class FakeRestartingProxy(FakeNginx):
    strategy = "restart"

    def systemctl(self, *args, check=True):
        FakeNginx.log.append(" ".join(args))
        if args[0] == "restart":
            FakeNginx.master += 1
        return 0, ""

    def generation_moved(self, before):
        return self.generation() != before


def test_a_proxy_without_reload_is_restarted_and_reported_so(tmp_path, nginx, run_module, monkeypatch):
    monkeypatch.setitem(_proxies.PROXIES, "nginx", FakeRestartingProxy)
    result, failed = run_module(reload_service, {"kind": "nginx", "state_dir": str(tmp_path)})
    assert not failed and result["action"] == "restarted"
    assert nginx.log == ["test", "restart nginx"]
    FakeNginx.master = 100


def test_a_proxy_that_only_restarts_is_left_alone_after_it_restarted_by_itself(tmp_path, nginx, run_module,
                                                                               monkeypatch):
    """After a reboot or systemd's Restart=on-failure it runs the files on disk: no second drop."""
    monkeypatch.setitem(_proxies.PROXIES, "nginx", FakeRestartingProxy)
    args = {"kind": "nginx", "state_dir": str(tmp_path)}
    run_module(reload_service, args)
    FakeNginx.master = 300
    result, failed = run_module(reload_service, args)
    assert not failed and result["action"] == "none", result
    FakeNginx.config = "changed"
    result, failed = run_module(reload_service, args)
    assert not failed and result["action"] == "restarted", "a changed config still restarts it"
    FakeNginx.master = 100
