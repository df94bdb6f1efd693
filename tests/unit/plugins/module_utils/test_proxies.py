# SPDX-License-Identifier: GPL-3.0-or-later
"""Each adapter, through a patched run_command: what it runs and how it reads the answers."""
from __future__ import annotations

import json
import os
import re
import socket
import threading

import pytest

from ansible_collections.homelab.immich_proxy.plugins.module_utils import _proxies
from ansible_collections.homelab.immich_proxy.plugins.module_utils._settings import normalise
from ansible_collections.homelab.immich_proxy.plugins.module_utils._transaction import FileChange


class Module:
    """Just what an adapter asks of an AnsibleModule; answers come from a table of argv prefixes."""

    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    def get_bin_path(self, name, required=False, opt_dirs=None):
        return "/usr/sbin/" + name

    def run_command(self, argv, **kwargs):
        self.calls.append(argv)
        for prefix, answer in self.answers.items():
            if tuple(argv[:len(prefix)]) == prefix:
                return answer
        raise AssertionError("unexpected command %r" % (argv,))


# kind -> (the in-place test argv, the command that dumps the effective config)
COMMANDS = {
    "nginx": (["/usr/sbin/nginx", "-t", "-q"], ("/usr/sbin/nginx", "-T", "-q")),
    "apache": (["/usr/sbin/apache2ctl", "-t"], ("/usr/sbin/apache2ctl", "-t", "-D", "DUMP_INCLUDES")),
    # caddy validates as its own user, who reads the key
    "caddy": (["/usr/sbin/runuser", "-u", "caddy", "--", "/usr/sbin/caddy", "validate", "--adapter", "caddyfile",
               "--config", "/etc/caddy/Caddyfile"],
              ("/usr/sbin/caddy", "adapt", "--adapter", "caddyfile", "--config", "/etc/caddy/Caddyfile")),
}


def test_every_kind_has_its_commands_in_this_table():
    # a proxy that applies files as written (Traefik) has no checker command: a throwaway instance of the real
    # binary checks it, which the behaviour suite exercises
    # (cloudflared: the collection's validator first, then cloudflared's own; tested below)
    assert sorted(COMMANDS) == sorted(k for k, cls in _proxies.PROXIES.items()
                                      if cls.strategy != "watch" and k != "cloudflared")


def test_traefiks_files_are_read_back_as_the_json_the_role_writes():
    text = "# Ansible managed\n# a comment\n{\n  \"entryPoints\": {\"web\": {\"address\": \":80\"}}\n}\n"
    assert _proxies._json_yaml(text, "x") == {"entryPoints": {"web": {"address": ":80"}}}
    with pytest.raises(_proxies.ProxyError, match="/etc/traefik/traefik.yml is not the file the traefik role writes"):
        _proxies._json_yaml("entryPoints:\n  web: {}\n", "/etc/traefik/traefik.yml")


def test_traefiks_log_errors_are_found_but_not_the_resolver_left_out_on_purpose(tmp_path):
    log = tmp_path / "traefik.log"
    log.write_text("\n".join([
        '{"level":"info","message":"Configuration loaded from file"}',
        '{"level":"error","message":"Router uses a nonexistent certificate resolver","routerName":"immich@file"}',
        '{"level":"error","error":"field not found, node: bogus","message":"Error while building configuration"}',
        "not json",
    ]))
    assert _proxies._log_errors(str(log)) == ["Error while building configuration field not found, node: bogus"]


def test_a_static_change_is_a_restart_and_a_dynamic_one_a_reload(tmp_path):
    proxy = _proxies.get_proxy("traefik", Module({}))
    proxy.config_path = str(tmp_path / "traefik.yml")
    proxy.loaded_config_path = str(tmp_path / "loaded.yml")
    (tmp_path / "traefik.yml").write_text("{}")
    assert proxy.pending_action() == "restarted", "nothing says what the running Traefik started with"
    (tmp_path / "loaded.yml").write_text("{}")
    assert proxy.pending_action() == "reloaded"
    (tmp_path / "traefik.yml").write_text('{"log": {}}')
    assert proxy.pending_action() == "restarted"


def test_in_check_mode_a_static_change_not_yet_on_disk_is_a_restart(tmp_path):
    proxy = _proxies.get_proxy("traefik", Module({}))
    proxy.config_path = str(tmp_path / "traefik.yml")
    proxy.loaded_config_path = str(tmp_path / "loaded.yml")
    for path in (proxy.config_path, proxy.loaded_config_path):
        with open(path, "w") as handle:
            handle.write("{}")
    static = FileChange(proxy.config_path, '{"log": {}}', "0644", "root", "root", check_mode=True)
    dynamic = FileChange(str(tmp_path / "dynamic.yml"), '{"http": {}}', "0644", "root", "root", check_mode=True)
    assert proxy.pending_action([dynamic]) == "reloaded"
    assert proxy.pending_action([dynamic, static]) == "restarted"
    # the same static file as the running one: a reload
    assert proxy.pending_action([FileChange(proxy.config_path, "{}", "0644", "root", "root", check_mode=True)]) \
        == "reloaded"


def _traefik_with_plugin(tmp_path):
    """A Traefik adapter whose working directory (on tmp_path) holds the role's plugin: main.go and go.mod."""
    proxy = _proxies.get_proxy("traefik", Module({}))
    proxy.workdir = str(tmp_path / "work")
    plugin = tmp_path / "work" / "plugins-local" / "src" / "github.com" / "homelab" / "immichguard"
    plugin.mkdir(parents=True)
    (plugin / "main.go").write_text("package immichguard // old\n")
    (plugin / "go.mod").write_text("module github.com/homelab/immichguard\n")
    return proxy, str(plugin)


STATIC = {"experimental": {"localPlugins": {"immichguard": {"moduleName": "github.com/homelab/immichguard"}}}}


def test_the_throwaway_traefik_is_given_the_plugin_files_not_in_place_yet(tmp_path):
    proxy, plugin = _traefik_with_plugin(tmp_path)
    changes = [
        FileChange(plugin + "/main.go", "package immichguard // new\n", "0644", "root", "root"),
        FileChange(plugin + "/go.mod"),  # removed
        FileChange(plugin + "/.traefik.yml", "import: github.com/homelab/immichguard\n", "0644", "root", "root"),
        # not a plugin file: the config and the unit are not copied into its working directory
        FileChange(str(tmp_path / "traefik.service"), "[Unit]\n", "0644", "root", "root"),
        FileChange(proxy.workdir + "/plugins-localx/a.go", "x", "0644", "root", "root"),
    ]
    plugins = proxy._plugins(changes)
    assert sorted(plugins) == [plugin + "/.traefik.yml", plugin + "/go.mod", plugin + "/main.go"]
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    roots = proxy._plugin_roots(STATIC)
    assert roots == [plugin]
    work = proxy._overlay(str(scratch), plugins, roots)
    copied = scratch / "work" / "plugins-local" / "src" / "github.com" / "homelab" / "immichguard"
    assert work == str(scratch / "work")
    assert sorted(p.name for p in copied.iterdir()) == [".traefik.yml", "main.go"]
    assert (copied / "main.go").read_text() == "package immichguard // new\n"
    # the files on disk are left as they are
    assert sorted(p.name for p in (tmp_path / "work" / "plugins-local" / "src" / "github.com" / "homelab"
                                   / "immichguard").iterdir()) == ["go.mod", "main.go"]
    with open(plugin + "/main.go") as handle:
        assert handle.read() == "package immichguard // old\n"


def test_a_plugin_directory_that_is_a_link_is_copied_not_written_through(tmp_path):
    """The throwaway's copy follows links as Traefik reads them; what is written over it never reaches the files
    in place (nor a link's target elsewhere)."""
    proxy = _proxies.get_proxy("traefik", Module({}))
    proxy.workdir = str(tmp_path / "work")
    elsewhere = tmp_path / "checkout"
    elsewhere.mkdir()
    (elsewhere / "main.go").write_text("package immichguard // in place\n")
    (elsewhere / "dangling.go").symlink_to(tmp_path / "nothing")
    homelab = tmp_path / "work" / "plugins-local" / "src" / "github.com" / "homelab"
    homelab.mkdir(parents=True)
    (homelab / "immichguard").symlink_to(elsewhere)
    (homelab / "other").mkdir()  # a plugin the config does not load: not copied
    (homelab / "other" / "big.go").write_text("package other\n")
    plugin = str(homelab / "immichguard")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    work = proxy._overlay(str(scratch), {plugin + "/main.go": b"package immichguard // new\n"},
                          proxy._plugin_roots(STATIC))
    copied = os.path.join(work, "plugins-local/src/github.com/homelab/immichguard")
    assert not os.path.islink(copied) and sorted(os.listdir(copied)) == ["main.go"]
    with open(copied + "/main.go") as handle:
        assert handle.read() == "package immichguard // new\n"
    assert (elsewhere / "main.go").read_text() == "package immichguard // in place\n"
    assert not os.path.exists(os.path.join(work, "plugins-local/src/github.com/homelab/other"))


def test_only_plugins_under_plugins_local_src_are_roots(tmp_path):
    proxy = _proxies.get_proxy("traefik", Module({}))
    proxy.workdir = str(tmp_path / "work")
    static = {"experimental": {"localPlugins": {"a": {"moduleName": "../../../etc"}, "b": {"moduleName": ""},
                                                "c": "x", "d": {"moduleName": "example.com/d"}}}}
    assert proxy._plugin_roots(static) == [str(tmp_path / "work" / "plugins-local" / "src" / "example.com" / "d")]
    assert proxy._plugin_roots({}) == []


def test_a_first_install_gives_the_throwaway_traefik_the_whole_plugin(tmp_path):
    proxy = _proxies.get_proxy("traefik", Module({}))
    proxy.workdir = str(tmp_path / "work")  # not there yet
    path = proxy.workdir + "/plugins-local/src/github.com/homelab/immichguard/main.go"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    work = proxy._overlay(str(scratch), proxy._plugins([FileChange(path, "package immichguard\n", "0644")]),
                          proxy._plugin_roots(STATIC))
    written = tmp_path / "scratch" / "work" / "plugins-local" / "src" / "github.com" / "homelab" / "immichguard"
    assert work == str(tmp_path / "scratch" / "work")
    assert (written / "main.go").read_text() == "package immichguard\n"


def test_the_precheck_loads_the_new_plugin_with_the_config(tmp_path, monkeypatch):
    proxy, plugin = _traefik_with_plugin(tmp_path)
    proxy.config_path = str(tmp_path / "traefik.yml")
    (tmp_path / "traefik.yml").write_text('{"providers": {"file": {"directory": "%s"}}}' % (tmp_path / "dyn"))
    loaded = []
    monkeypatch.setattr(proxy, "_throwaway", lambda static, dynamic, plugins=None: loaded.append(plugins))
    new = FileChange(plugin + "/main.go", "package immichguard // new\n", "0644", "root", "root")
    proxy.precheck([new])
    assert loaded == [{plugin + "/main.go": b"package immichguard // new\n"}]
    proxy.precheck([FileChange(str(tmp_path / "dyn" / "immich-proxy.yml"), "{}", "0644")])
    assert loaded[-1] == {}


@pytest.mark.parametrize("pending", [True, False])
def test_a_live_traefik_due_a_restart_for_a_start_file_is_not_waited_for(tmp_path, monkeypatch, pending):
    """The role restarts a Traefik whose binary, unit or plugin is newer than its start: what the old process
    serves in the meantime proves nothing (and an older binary may refuse what the new one loads)."""
    proxy = _proxies.get_proxy("traefik", Module({}))
    monkeypatch.setattr(proxy, "test", lambda: "")
    monkeypatch.setattr(proxy, "is_running", lambda: True)
    monkeypatch.setattr(proxy, "restart_pending", lambda changes=(): False)
    monkeypatch.setattr(_proxies, "changed_since_start", lambda adapter, module: pending)
    monkeypatch.setattr(proxy, "wait_until", lambda predicate, seconds: False)
    if pending:
        assert proxy.test_applied() == ""
    else:
        with pytest.raises(_proxies.ProxyError, match="did not take the new dynamic configuration"):
            proxy.test_applied()


@pytest.mark.parametrize("kind", sorted(_proxies.PROXIES))
def test_the_adapter_declares_how_it_takes_a_config(kind):
    cls = _proxies.PROXIES[kind]
    assert cls.name == kind
    assert cls.title and cls.title.lower() == kind, "messages name the proxy by its title, the kind as it is written"
    # a proxy that cannot reload restarts for every watched file (its role's __immich_proxy_watch): start files,
    # which the serve step restarts a reloading proxy for, would never be looked at
    assert not (cls.strategy == "restart" and cls.start_files), "a restart proxy lists its start files as watched"
    assert cls.strategy in _proxies.STRATEGIES
    assert cls.acme in ("certbot", "builtin", "none")
    assert (cls.deploy_hook is not None) == (cls.acme == "certbot"), "certbot needs a deploy hook, others none"
    facts = cls.describe()
    assert {"kind", "service", "strategy", "acme", "deploy_hook", "key_reader", "key_group", "key_mode"} <= set(facts)
    assert (facts["key_group"], facts["key_mode"]) == ((cls.key_reader, "0640") if cls.key_reader else ("root", "0600"))
    for name, spec in cls.variables.items():
        assert name.startswith(kind + "_"), "%s: role variables are named %s_*" % (name, kind)
        assert spec["type"] in ("bool", "int", "size", "str", "path", "lines")


@pytest.mark.parametrize("kind", sorted(COMMANDS))
def test_a_config_the_proxy_accepts_passes_and_its_words_are_returned(kind):
    test_argv, _dump = COMMANDS[kind]
    module = Module({tuple(test_argv): (0, "", "syntax is ok")})
    assert _proxies.get_proxy(kind, module).test() == "syntax is ok"
    assert module.calls == [test_argv]


@pytest.mark.parametrize("kind", sorted(COMMANDS))
def test_a_config_the_proxy_rejects_raises_with_the_proxys_words(kind):
    test_argv, _dump = COMMANDS[kind]
    module = Module({tuple(test_argv): (1, "", 'unknown directive "bogus" in immich-proxy.conf:3')})
    with pytest.raises(_proxies.ProxyError, match='%s rejected the configuration .*unknown directive "bogus"' % kind):
        _proxies.get_proxy(kind, module).test()


@pytest.mark.parametrize("kind", sorted(COMMANDS))
def test_the_digest_follows_the_effective_config_and_the_watched_files(kind, tmp_path):
    _test, dump = COMMANDS[kind]
    cert = tmp_path / "fullchain.pem"
    cert.write_text("one")
    config = {"text": '{"apps": {}}'}

    class Dumping(Module):
        def run_command(self, argv, **kwargs):
            self.calls.append(argv)
            assert tuple(argv) == dump
            return 0, config["text"], ""

    proxy = _proxies.get_proxy(kind, Dumping({}))
    first = proxy.config_digest([str(cert)])
    assert proxy.config_digest([str(cert)]) == first
    cert.write_text("two")
    second = proxy.config_digest([str(cert)])
    assert second != first, "a renewed certificate must change the digest"
    config["text"] = '{"apps": {"http": {}}}'
    assert proxy.config_digest([str(cert)]) != second, "a changed config must change the digest"


@pytest.mark.parametrize("strategy, command", [("reload", "reload"), ("restart", "restart"), ("watch", None)])
def test_take_config_uses_the_strategy_and_waits_for_proof(strategy, command, monkeypatch):
    calls = []

    class Adapter(_proxies.Proxy):
        name = service = "demo"
        generations = iter([1, 1, 2])

        def systemctl(self, *args, check=True):
            calls.append(args[0])
            return 0, ""

        def generation(self):
            return next(self.generations)

    Adapter.strategy = strategy
    monkeypatch.setattr(_proxies.time, "sleep", lambda seconds: None)
    Adapter(Module({})).take_config()
    assert calls == ([command] if command else []), "%s must run %r" % (strategy, command)


def test_take_config_without_proof_is_an_error(monkeypatch):
    class Stuck(_proxies.Proxy):
        name = service = "demo"

        def systemctl(self, *args, check=True):
            return 0, ""

        def generation(self):
            return 1

    monkeypatch.setattr(_proxies.Proxy, "wait_until", staticmethod(lambda predicate, seconds: predicate()))
    with pytest.raises(_proxies.ProxyError, match="still runs the previous one"):
        Stuck(Module({})).take_config()


@pytest.mark.parametrize("active, words", [
    ("active", "the previous one keeps serving"),
    ("failed", "the service is stopped"),
])
def test_a_reload_the_service_refuses_says_why_what_is_serving_and_that_the_next_run_loads_it(active, words):
    class Refusing(_proxies.Proxy):
        name = service = "demo"

        def systemctl(self, *args, check=True):
            if args[0] == "is-active":
                return (0 if active == "active" else 3), active
            return 1, "Job for demo.service failed because the control process exited with error code."

        def generation(self):
            return 1

    with pytest.raises(_proxies.ProxyError) as caught:
        Refusing(Module({})).take_config()
    message = str(caught.value)
    assert message.startswith("demo refused to reload (Job for demo.service failed because the control process")
    assert words in message and "journalctl -u demo" in message and "the next run reloads it" in message


def test_a_proxy_without_a_checker_is_not_tested():
    class Unchecked(_proxies.Proxy):
        name = "demo"

    module = Module({})
    assert Unchecked(module).test() == ""
    assert module.calls == []


def test_an_unknown_kind_names_the_known_ones():
    known = "apache, caddy, cloudflared, nginx, traefik"
    with pytest.raises(_proxies.ProxyError, match="unknown proxy kind 'lighttpd'; known: %s$" % known):
        _proxies.proxy_class("lighttpd")


def test_apaches_effective_config_is_every_file_it_includes(tmp_path):
    site = tmp_path / "immich-proxy.conf"
    site.write_text("ProxyTimeout 600")
    listing = "Included configuration files:\n  (*) %s\n    (146) %s\n" % (tmp_path / "apache2.conf", site)
    module = Module({("/usr/sbin/apache2ctl", "-t", "-D", "DUMP_INCLUDES"): (0, listing, "")})
    proxy = _proxies.get_proxy("apache", module)
    first = proxy.config_digest()
    assert "ProxyTimeout 600" in proxy.effective_config()
    site.write_text("ProxyTimeout 900")
    assert proxy.config_digest() != first, "a changed included file must change the digest"


class _AdminAPI(threading.Thread):
    """A unix-socket HTTP server that answers GET /config/ like Caddy's admin API (and records the Host sent)."""

    def __init__(self, path, config):
        super().__init__(daemon=True)
        self.config, self.hosts = config, []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(8)

    def run(self):
        while True:
            try:
                conn, _address = self.server.accept()
            except OSError:
                return
            with conn:
                request = conn.recv(65536).decode()
                self.hosts.append(re.search(r"(?m)^Host:(.*)\r$", request).group(1).strip())
                body = json.dumps(self.config["live"]).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + body)


def test_caddys_reload_is_proven_by_the_admin_apis_live_config_equal_to_the_file(tmp_path):
    adapted = {"apps": {"http": {"servers": {"srv0": {"listen": [":443"]}}}}}
    config = {"live": {"apps": {"http": {"servers": {"srv0": {"listen": [":80"]}}}}}}
    api = _AdminAPI(str(tmp_path / "admin.sock"), config)
    api.start()
    module = Module({("/usr/sbin/caddy", "adapt"): (0, json.dumps(adapted), "")})
    proxy = _proxies.get_proxy("caddy", module)
    proxy.admin_socket = str(tmp_path / "admin.sock")
    before = proxy.generation()
    assert not proxy.generation_moved(before), "the old config is still live"
    config["live"] = adapted
    assert proxy.generation_moved(before), "the admin API serves the file's config"
    assert set(api.hosts) == {""}, "Caddy 2.6 refuses any Host but an empty one on its admin socket"
    api.server.close()
    proxy.admin_socket = str(tmp_path / "gone.sock")
    assert proxy.generation() is None and not proxy.generation_moved(before), "no admin API, no proof"


@pytest.mark.parametrize("trusted, role, problem", [
    (["fd00::/64"], {}, "immich_proxy_trusted_proxies: the caddy role believes X-Forwarded-For only from IPv4"),
    ([], {"caddy_install": "binary", "caddy_binary_src": None}, "caddy_binary_src: caddy_install is 'binary'"),
])
def test_caddy_names_the_variable_of_settings_it_cannot_serve(trusted, role, problem):
    settings, _warnings = normalise({"public_url": "https://photos.example.org",
                                     "backends": ["http://127.0.0.1:2283"], "trusted_proxies": trusted})
    settings["role"] = role
    assert [p for p in _proxies.Caddy.settings_problems(settings) if p.startswith(problem)], (
        _proxies.Caddy.settings_problems(settings))
    settings.update(trusted_proxies=["10.0.0.0/8", "::1/128"], trusted_proxies_regex="^x$", role={})
    assert _proxies.Caddy.settings_problems(settings) == []


@pytest.mark.parametrize("name, ok", [
    ("authelia@docker", True), ("crowdsec-bouncer@file", True), ("ratelimit", True),
    ("{{ env \"HOME\" }}", False), ("a b", False), ("x@Docker", False), ("@file", False),
])
def test_traefik_extra_middlewares_are_plain_names(name, ok):
    settings = {"role": {"traefik_extra_router_middlewares": [name]}, "http_port": 80, "https_port": 443}
    problems = _proxies.PROXIES["traefik"].settings_problems(settings)
    assert (not problems) == ok, problems
    if not ok:
        assert problems[0].startswith("traefik_extra_router_middlewares: ")


def build_info(go):
    """What ``caddy build-info`` prints first (Go's debug.BuildInfo)."""
    return (0, "go\t%s\npath\tcaddy\nmod\tcaddy\t(devel)\t\n" % go, "")


@pytest.mark.parametrize("version, go, drops", [
    ("v2.6.2 h1:PBglEL7/+p3Fjhfp2fP0bPNOwD4qgl9dcFJ2pF+XzCI=", "go1.19.8",
     ["Caddy v2.6.2 closes open websockets on every reload"]),
    ("v2.10.0 h1:fonubSaQKF1YANl8TXqGcn4IbIRUDdfAkpcsfI/vX5U=", "go1.24.2", []),
    ("v2.10.2 h1:g/gTYjGMD0dec+UgMw8SnfmJ3I9+M2TdvoRL/Ovu6U8=", "go1.25.0",
     ["Caddy v2.10.2, built with Go 1.25, may close a new connection unanswered"]),
    ("v2.11.7 h1:yj0Y4fYZGPkSvibBJ1sTWE33xC0fxztVyXEW5iIdUT4=", "go1.26.8",
     ["Caddy v2.11.7, built with Go 1.26, may close a new connection unanswered"]),
    # a Caddy 2.6 that a distribution builds with a newer Go
    ("v2.6.2", "go1.25.1",
     ["Caddy v2.6.2 closes open websockets", "Caddy v2.6.2, built with Go 1.25, may close a new connection"]),
    # Debian's caddy says its version without a v
    ("2.6.2", "go1.19.8", ["Caddy 2.6.2 closes open websockets on every reload"]),
    # what it does not say is taken at its worst for new connections
    ("v2.11.7", None, ["Caddy v2.11.7, built with a Go release that caddy build-info did not name, may close a new "
                       "connection"]),
    ("v2.11.7", "devel go1.26-abc123 Tue Jan 6 2026",
     ["Caddy v2.11.7, built with a Go release that caddy build-info did not name, may close a new connection"]),
    ("v2.11.7", "go2.0.1", ["Caddy v2.11.7, built with Go 2.0, may close a new connection"]),
    ("something else", "go1.24.2", []),
    ("something else", "go1.25.0", ["this Caddy, built with Go 1.25, may close a new connection"]),
    (None, None, ["this Caddy, built with a Go release that caddy build-info did not name, may close a new "
                  "connection"]),
])
def test_caddy_says_what_a_reload_of_its_build_drops(version, go, drops, kernel):
    """Before 2.7 the websockets (from 2.7 the role keeps them with stream_close_delay); built with Go 1.25 or
    later, new connections the old configuration had just accepted (Go 1.25's net/http closes a connection whose
    request it reads after Shutdown began). None: the command fails."""
    kernel("1")
    answers = {
        ("/usr/sbin/caddy", "version"): (0, version + "\n", "") if version else (1, "", "not found\n"),
        ("/usr/sbin/caddy", "build-info"): build_info(go) if go else (1, "", "no build information\n"),
    }
    said = _proxies.Caddy(Module(answers)).reload_drops()
    assert (said is None) == (not drops), said
    for drop in drops:
        assert drop in said, said
    assert said is None or said.startswith(drops[0])
    for what in ("websockets", "may close a new connection"):
        assert (what in (said or "")) == any(what in drop for drop in drops), said


def test_the_other_proxies_drop_nothing_on_a_reload(kernel):
    kernel("0")
    for kind in ("nginx", "apache", "traefik", "cloudflared"):
        assert _proxies.PROXIES[kind](Module({})).reload_drops() is None


@pytest.fixture
def kernel(tmp_path, monkeypatch):
    """A /proc/sys of the test's own: kernel(value) gives net.ipv4.tcp_migrate_req that value (None: this kernel
    has no such setting), kernel(value, writable=False) one this process cannot set (a container's read-only
    /proc/sys)."""
    monkeypatch.setattr(_proxies, "PROC_SYS", str(tmp_path / "sys"))
    path = tmp_path / "sys" / "net" / "ipv4" / "tcp_migrate_req"

    def make(value, writable=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        if value is not None:
            path.write_text(value + "\n")
        real_access = os.access
        monkeypatch.setattr(_proxies.os, "access", lambda where, mode: (
            False if str(where) == str(path) and not writable else real_access(where, mode)))
        return path

    return make


CADDY_26 = {("/usr/sbin/caddy", "version"): (0, "v2.6.2 h1:x=\n", ""),
            ("/usr/sbin/caddy", "build-info"): build_info("go1.19.8")}


@pytest.mark.parametrize("value, writable, drops", [
    ("1", True, None),
    ("1", False, None),
    # reload_service's view: apply_config's write refused (AppArmor), or the value set back since
    ("0", True, "net.ipv4.tcp_migrate_req is 0 here, not the 1 the role sets (its next run sets it, or says why it "
                "cannot)"),
    ("0", False, "net.ipv4.tcp_migrate_req is 0 here and the role cannot set it (/proc/sys is read-only, as in a "
                 "container by default; in a container, start it with --sysctl net.ipv4.tcp_migrate_req=1)"),
    (None, False, "this kernel has no net.ipv4.tcp_migrate_req (Linux 5.14 and later have it)"),
])
def test_caddy_says_a_reload_resets_new_connections_where_the_kernel_cannot_hand_them_over(
        kernel, value, writable, drops):
    kernel(value, writable)
    said = _proxies.Caddy(Module({})).kernel_drops()
    if drops is None:
        assert said is None
    else:
        assert said == ("a new connection that reaches Caddy just as a reload closes the old configuration's "
                        "listening socket is reset: " + drops)
    # said after what the version drops
    both = _proxies.Caddy(Module(CADDY_26)).reload_drops()
    assert both.startswith("Caddy v2.6.2 closes open websockets")
    assert both.endswith(said or "uploads in progress complete")


def test_kernel_reads_each_setting_as_the_running_kernel_has_it(kernel):
    path = kernel("0")
    caddy = _proxies.Caddy(Module({}))
    assert caddy.kernel() == [
        {"name": "net.ipv4.tcp_migrate_req", "wanted": "1", "live": "0", "path": str(path), "settable": True}]
    assert _proxies.PROXIES["nginx"](Module({})).kernel() == []
    # check mode: as a real run would leave it, and nothing written
    caddy.plan_kernel(caddy.kernel()[0])
    assert caddy.kernel()[0]["live"] == "1" and path.read_text() == "0\n"
    assert caddy.set_kernel(caddy.kernel()[0]) is None and path.read_text() == "1\n"
