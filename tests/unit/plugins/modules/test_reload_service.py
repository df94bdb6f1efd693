# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import grp
import json
import os
import pwd

import pytest

from ansible_collections.homelab.immich_proxy.plugins.module_utils import _proxies
from ansible_collections.homelab.immich_proxy.plugins.module_utils._state import LoadedState
from ansible_collections.homelab.immich_proxy.plugins.modules import apply_config, reload_service

ME = pwd.getpwuid(os.getuid()).pw_name
MY_GROUP = grp.getgrgid(os.getgid()).gr_name


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


def _apply(tmp_path, run_module, content, check_mode=False, **extra):
    """apply_config of one file with watch given, as the roles call it: (result, failed)."""
    return run_module(apply_config, dict(kind="nginx", state_dir=str(tmp_path / "state"), watch=[], files=[
        {"path": str(tmp_path / "immich.conf"), "content": content, "owner": ME, "group": MY_GROUP}], **extra),
        check_mode=check_mode)


def _predicted(tmp_path, run_module):
    return run_module(reload_service, {"kind": "nginx", "state_dir": str(tmp_path / "state")}, check_mode=True)[0]


def test_apply_config_says_what_reload_service_will_do_so_the_roles_need_not_ask(tmp_path, nginx, run_module):
    (tmp_path / "state").mkdir()
    result, failed = _apply(tmp_path, run_module, "server {}\n")
    assert not failed and result["load"] == {"action": "reloaded", "drops": None}
    assert result["load"]["action"] == _predicted(tmp_path, run_module)["action"]
    run_module(reload_service, {"kind": "nginx", "state_dir": str(tmp_path / "state")})
    # a re-run: the service runs exactly what is on disk
    result, _failed = _apply(tmp_path, run_module, "server {}\n")
    assert not result["changed"] and result["load"] == {"action": "none", "drops": None}
    assert _predicted(tmp_path, run_module)["action"] == "none"
    # what is on disk changed by hand since the service loaded it (the effective config differs)
    nginx.config = "http { server { listen 81; } }"
    result, _failed = _apply(tmp_path, run_module, "server {}\n")
    assert not result["changed"] and result["load"]["action"] == "reloaded"
    # stopped
    nginx.running = False
    assert _apply(tmp_path, run_module, "server {}\n")[0]["load"]["action"] == "started"
    assert nginx.log == ["test", "test", "reload nginx"], "apply_config only looks; it never reloads"


def test_apply_config_in_check_mode_says_the_changed_files_would_be_reloaded(tmp_path, nginx, run_module):
    (tmp_path / "state").mkdir()
    _apply(tmp_path, run_module, "server {}\n")
    run_module(reload_service, {"kind": "nginx", "state_dir": str(tmp_path / "state")})
    result, failed = _apply(tmp_path, run_module, "server { listen 81; }\n", check_mode=True)
    assert not failed and result["changed"] and result["load"]["action"] == "reloaded"
    assert (tmp_path / "immich.conf").read_text() == "server {}\n"


def test_apply_config_in_check_mode_lets_the_adapter_weigh_the_files_it_would_change(
        tmp_path, nginx, run_module, monkeypatch):
    """Traefik's static file takes a restart: in check mode it is not on disk yet, so the adapter is shown it."""
    (tmp_path / "state").mkdir()
    _apply(tmp_path, run_module, "server {}\n")
    run_module(reload_service, {"kind": "nginx", "state_dir": str(tmp_path / "state")})
    weighed = []

    def pending_action(self, changes=()):
        weighed.extend((c.path, c.content) for c in changes)
        return "restarted" if any(b"listen 81" in c.content for c in changes) else "reloaded"

    monkeypatch.setattr(nginx, "pending_action", pending_action)
    result, failed = _apply(tmp_path, run_module, "server { listen 81; }\n", check_mode=True)
    assert not failed and result["load"]["action"] == "restarted"
    assert weighed == [(str(tmp_path / "immich.conf"), b"server { listen 81; }\n")]


def test_apply_config_without_watch_says_nothing_of_the_service(tmp_path, nginx, run_module):
    result, failed = run_module(apply_config, dict(kind="nginx", state_dir=str(tmp_path), files=[
        {"path": str(tmp_path / "immich.conf"), "content": "x", "owner": ME, "group": MY_GROUP}]))
    assert not failed and "load" not in result


def test_a_changed_config_is_reloaded_once_and_then_left_alone(tmp_path, nginx, run_module):
    result, _failed = run_module(reload_service, {"kind": "nginx", "state_dir": str(tmp_path)})
    assert result["action"] == "reloaded" and nginx.log == ["test", "reload nginx"]
    state = json.loads((tmp_path / "nginx.loaded.json").read_text())
    assert state == {"digest": result["digest"], "pid": 100}
    result, _failed = run_module(reload_service, {"kind": "nginx", "state_dir": str(tmp_path)})
    assert result == {"changed": False, "action": "none", "drops": None, "outage": None, "digest": state["digest"],
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


class World:
    """Which services run and which ports they hold, as systemd and /proc would show it, for a kind switch."""

    def __init__(self, new_starts=True):
        self.running = {"nginx": True, "caddy": False}
        self.enabled = {"nginx": True, "caddy": False}
        self.new_starts = new_starts
        self.log = []

    def proxy(self, base):
        world = self

        class Fake(base):
            def installed(self):
                return True

            def effective_config(self):
                return "config of %s" % self.name

            def config_digest(self, watch=()):
                return "digest-%s" % self.name

            def test(self):
                world.log.append("test " + self.service)
                return ""

            def is_running(self):
                return world.running[self.service]

            def main_pid(self):
                return 7 if world.running[self.service] else 0

            def systemctl(self, *args, check=True):
                verb, unit = args[0], args[-1]
                world.log.append("%s %s" % (verb, unit))
                if verb in ("start", "restart"):
                    if unit == "caddy" and (not world.new_starts or world.running["nginx"]):
                        if check:
                            raise _proxies.ProxyError("'systemctl start caddy' failed: port 80 in use")
                        return 1, "failed"
                    world.running[unit] = True
                elif verb == "stop":
                    world.running[unit] = False
                elif verb in ("enable", "disable"):
                    world.enabled[unit] = verb == "enable"
                return 0, ""

            def holds(self, ports):
                return world.running[self.service]

            @staticmethod
            def wait_until(predicate, seconds):
                return predicate()

        return Fake


@pytest.fixture
def switch(monkeypatch, tmp_path):
    def make(new_starts=True):
        world = World(new_starts)
        monkeypatch.setitem(_proxies.PROXIES, "nginx", world.proxy(_proxies.Nginx))
        monkeypatch.setitem(_proxies.PROXIES, "caddy", world.proxy(_proxies.Caddy))
        LoadedState(str(tmp_path), "nginx").record("digest-nginx", 7)
        return world
    return make


def test_a_kind_switch_stops_the_previous_proxy_then_starts_the_new_one_and_measures_the_outage(
        tmp_path, switch, run_module):
    world = switch()
    result, failed = run_module(reload_service, {"kind": "caddy", "state_dir": str(tmp_path),
                                                 "handover_from": ["nginx"], "ports": [80, 443]})
    assert not failed, result
    assert result["changed"] and result["action"] == "started" and result["outage"] is not None
    assert result["msg"].startswith("caddy took ports 80, 443 over from nginx (now stopped and disabled")
    assert "Immich was unreachable for" in result["msg"]
    assert world.log.index("test caddy") < world.log.index("stop nginx") < world.log.index("start caddy")
    assert world.running == {"nginx": False, "caddy": True}
    assert world.enabled == {"nginx": False, "caddy": True}
    # nginx no longer counts as deployed here; caddy does
    assert LoadedState(str(tmp_path), "nginx").read() == {}
    assert LoadedState(str(tmp_path), "caddy").read() == {"digest": "digest-caddy", "pid": 7}
    # the next run finds caddy serving what it loaded: nothing to do
    again, failed = run_module(reload_service, {"kind": "caddy", "state_dir": str(tmp_path),
                                                "handover_from": [], "ports": []})
    assert not failed and again["action"] == "none" and not again["changed"]


def test_a_new_proxy_that_does_not_start_gives_the_ports_back_to_the_previous_one(tmp_path, switch, run_module):
    world = switch(new_starts=False)
    result, failed = run_module(reload_service, {"kind": "caddy", "state_dir": str(tmp_path),
                                                 "handover_from": ["nginx"], "ports": [80, 443]})
    assert failed
    assert result["msg"].startswith("caddy could not take ports 80, 443 over from nginx: ")
    assert "nginx serves Immich again as before" in result["msg"]
    assert world.running == {"nginx": True, "caddy": False}
    assert world.enabled == {"nginx": True, "caddy": False}
    assert LoadedState(str(tmp_path), "nginx").read() == {"digest": "digest-nginx", "pid": 7}
    assert LoadedState(str(tmp_path), "caddy").read() == {}


def test_check_mode_says_what_a_kind_switch_would_do_and_touches_nothing(tmp_path, switch, run_module):
    world = switch()
    result, failed = run_module(reload_service, {"kind": "caddy", "state_dir": str(tmp_path),
                                                 "handover_from": ["nginx"], "ports": [80, 443]}, check_mode=True)
    assert not failed and result["changed"] and result["outage"] is None
    assert result["msg"] == "nginx would stop and caddy start on ports 80, 443"
    assert world.log == [] and world.running == {"nginx": True, "caddy": False}
