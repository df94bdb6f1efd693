# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures of the behaviour suite, shared by every proxy's molecule scenario.

Run by molecule/_shared/verify.yml once per instance, e.g.
  pytest tests/behaviour --container immich-proxy-nginx-bookworm --kind nginx \
      --public-url https://photos.immich.test --backend-ports 2283,2284 --trusted-proxy 127.0.0.5/32 \
      --inventory "$MOLECULE_EPHEMERAL_DIRECTORY/inventory"

What a client sees is tested with real HTTP, TLS and websocket clients from the
Docker host; what happens on the proxy's host (files, processes, services) is
read through testinfra's docker backend.
"""
from __future__ import annotations

import ipaddress
import json
import os
import shlex

import pytest
import testinfra

import reliability
from harness import KINDS, ROOT, Proxy, ansible_bin, ansible_env, container_address, container_gateway, run


def pytest_addoption(parser):
    group = parser.getgroup("immich_proxy")
    group.addoption("--container", required=True, help="the proxy's container")
    group.addoption("--kind", required=True, choices=sorted(KINDS))
    group.addoption("--public-url", required=True)
    group.addoption("--http-port", type=int, default=80)
    group.addoption("--https-port", type=int, default=443)
    group.addoption("--ca-path", default=None, help="CA file inside the container that signs the proxy's certificate")
    group.addoption("--tls-key-path", default=None, help="the private key the proxy serves with, inside the container")
    group.addoption("--backend-ports", default="2283,2284",
                    help="ports of the Immich test doubles in the container, as in immich_proxy_backends")
    group.addoption("--trusted-proxy", default=None,
                    help="a network of immich_proxy_trusted_proxies; the suite sends from its first address, "
                         "inside the container")
    group.addoption("--inventory", default=None, help="molecule's inventory, for tests that re-run the role")
    group.addoption("--faults", choices=["yes", "no"], default="yes",
                    help="run the fault-injection tests (marker faults); molecule's verify runs them on the first "
                         "host of each scenario only, to keep make test within its time")


def pytest_collection_modifyitems(items):
    # Tests that stop backends or re-run the role go last, so the long
    # uploads before them never meet a stopped backend or a reload.
    # Tests that change the TLS mode go last of all.
    items.sort(key=lambda item: (item.get_closest_marker("disruptive") is not None,
                                 item.get_closest_marker("last") is not None))


def pytest_configure(config):
    config.addinivalue_line("markers", "disruptive: stops services or re-runs the role; runs after the others")
    config.addinivalue_line("markers", "last: changes the scenario's TLS mode; runs at the very end")
    config.addinivalue_line("markers", "faults: injects a fault or changes the config under load (--faults)")
    config.addinivalue_line("markers", "needs(**traits): runs only where the kind has these traits (harness.KINDS)")
    config.immich_proxy_figures = reliability.Figures()


def pytest_sessionfinish(session):
    """This run's figures and outcomes to docs/reliability.md (tests/behaviour/reliability.py)."""
    config = session.config
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or not session.testscollected:
        return
    outcomes = {key: len([report for report in reporter.stats.get(key, []) if getattr(report, "when", "call")
                          in ("call", "setup")]) for key in ("passed", "failed", "skipped", "error")}
    reliability.save(config.immich_proxy_figures, config.getoption("kind"), config.getoption("container"), outcomes)


def pytest_runtest_setup(item):
    kind = item.config.getoption("kind")
    if item.get_closest_marker("faults") is not None and item.config.getoption("faults") != "yes":
        pytest.skip("fault injection runs on the first host of the scenario (--faults=yes), to keep make test "
                    "within its time")
    for marker in item.iter_markers("needs"):
        for trait, needed in marker.kwargs.items():
            wanted = needed if isinstance(needed, (list, tuple)) else [needed]
            have = KINDS[kind][trait]
            if have not in wanted:
                pytest.skip("does not apply to %s: its trait %s is %r, the test needs %s"
                            % (kind, trait, have, " or ".join(repr(w) for w in wanted)))


@pytest.fixture(scope="session")
def figures(pytestconfig):
    """The run's figures for docs/reliability.md: tests add what they tried and what came of it."""
    return pytestconfig.immich_proxy_figures


@pytest.fixture(scope="session")
def kind(pytestconfig):
    return pytestconfig.getoption("kind")


@pytest.fixture(scope="session")
def traits(kind):
    return KINDS[kind]


@pytest.fixture(scope="session")
def host(pytestconfig):
    """The proxy's container as a testinfra host."""
    return testinfra.get_host("docker://" + pytestconfig.getoption("container"))


@pytest.fixture(scope="session")
def backend_ports(pytestconfig):
    return [int(port) for port in pytestconfig.getoption("backend_ports").split(",") if port]


@pytest.fixture(scope="session")
def trusted_source(pytestconfig):
    network = pytestconfig.getoption("trusted_proxy")
    if not network:
        pytest.skip("the scenario trusts no proxy in front (immich_proxy_trusted_proxies is empty)")
    # the first usable address: a /32 is its address, a /24 not its network address
    return str(next(iter(ipaddress.ip_network(network).hosts())))


@pytest.fixture(scope="session")
def proxy(pytestconfig, host, tmp_path_factory):
    ca_file = None
    ca_path = pytestconfig.getoption("ca_path")
    if ca_path:
        ca_file = str(tmp_path_factory.mktemp("ca") / "ca.pem")
        with open(ca_file, "w") as handle:
            handle.write(host.file(ca_path).content_string)
    return Proxy(pytestconfig.getoption("public_url"), container_address(pytestconfig.getoption("container")),
                 ca_file, pytestconfig.getoption("http_port"), pytestconfig.getoption("https_port"))


@pytest.fixture(scope="session")
def client_address(pytestconfig):
    """The address the proxy sees for this suite: the Docker bridge's gateway."""
    return container_gateway(pytestconfig.getoption("container"))


class Converger:
    """Runs playbooks/site.yml against the proxy's container, as a user would."""

    def __init__(self, inventory, container):
        self.inventory = inventory
        self.container = container

    def __call__(self, extra_vars=None, check=True, check_mode=False, args=(), env=None):
        if not self.inventory:
            pytest.fail("--inventory is needed to re-run the role")
        argv = [ansible_bin("ansible-playbook"), "-i", self.inventory, "-l", self.container,
                os.path.join(ROOT, "playbooks", "site.yml")] + (["--check", "--diff"] if check_mode else [])
        if extra_vars:
            argv += ["-e", json.dumps(extra_vars)]
        argv += list(args)
        # Plain, unwrapped output whatever molecule set for its own runs;
        # ansible-core writes task errors to stderr, so both are kept.
        env = ansible_env(ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default", ANSIBLE_CALLBACK_RESULT_FORMAT="json",
                          **(env or {}))
        result = run(argv, check=False, timeout=900, env=env)
        result.output = result.stdout + result.stderr
        if check and result.returncode != 0:
            raise AssertionError("%s failed:\n%s" % (shlex.join(argv), result.output[-5000:]))
        return result


@pytest.fixture(scope="session")
def converge(pytestconfig):
    return Converger(pytestconfig.getoption("inventory"), pytestconfig.getoption("container"))
