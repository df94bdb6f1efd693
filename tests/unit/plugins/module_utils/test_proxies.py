# SPDX-License-Identifier: GPL-3.0-or-later
"""Each adapter, through a patched run_command: what it runs and how it reads the answers."""
from __future__ import annotations

import pytest

from ansible_collections.homelab.immich_proxy.plugins.module_utils import _proxies


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
}


def test_every_kind_has_its_commands_in_this_table():
    assert sorted(COMMANDS) == sorted(_proxies.PROXIES)


@pytest.mark.parametrize("kind", sorted(_proxies.PROXIES))
def test_the_adapter_declares_how_it_takes_a_config(kind):
    cls = _proxies.PROXIES[kind]
    assert cls.name == kind
    assert cls.strategy in _proxies.STRATEGIES
    assert cls.acme in ("certbot", "builtin", "none")
    assert (cls.deploy_hook is not None) == (cls.acme == "certbot"), "certbot needs a deploy hook, others none"
    assert set(cls.describe()) == {"kind", "service", "strategy", "acme", "deploy_hook"}
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
    config = {"text": "server {}"}

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
    config["text"] = "server { listen 81; }"
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


def test_a_proxy_without_a_checker_is_not_tested():
    class Unchecked(_proxies.Proxy):
        name = "demo"

    module = Module({})
    assert Unchecked(module).test() == ""
    assert module.calls == []


def test_an_unknown_kind_names_the_known_ones():
    with pytest.raises(_proxies.ProxyError, match="unknown proxy kind 'lighttpd'; known: apache, nginx"):
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
