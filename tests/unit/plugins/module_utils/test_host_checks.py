# SPDX-License-Identifier: GPL-3.0-or-later
"""Checks the settings module makes on the proxy host before a deploy: its ports free, its files there."""
from __future__ import annotations

import grp
import hashlib
import os
import time

import pytest
import yaml

from ansible_collections.homelab.immich_proxy.plugins.module_utils import _proxies
from ansible_collections.homelab.immich_proxy.plugins.module_utils._proxies import (
    PROXIES,
    file_problems,
    host_facts,
    listeners,
    port_plan,
)
from ansible_collections.homelab.immich_proxy.plugins.module_utils._state import (
    LoadedState,
    binary_record_path,
    deployed_kinds,
    recorded_binary_sha1,
)

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"


def _row(port, state, inode, address="00000000"):
    return ("   0: %s:%04X 00000000:0000 %s 00000000:00000000 00:00000000 00000000     0        0 %d 1\n"
            % (address, port, state, inode))


def fake_proc(tmp_path, sockets, processes):
    """A /proc with TCP listeners (port, state, inode) and processes pid -> (comm, cgroup, socket inodes)."""
    proc = tmp_path / "proc"
    (proc / "net").mkdir(parents=True)
    (proc / "net" / "tcp").write_text(HEADER + "".join(_row(*socket) for socket in sockets))
    (proc / "net" / "tcp6").write_text(HEADER)
    for pid, (comm, cgroup, inodes) in processes.items():
        fd = proc / str(pid) / "fd"
        fd.mkdir(parents=True)
        (proc / str(pid) / "comm").write_text(comm + "\n")
        (proc / str(pid) / "cgroup").write_text("0::%s\n" % cgroup)
        for number, inode in enumerate(inodes):
            os.symlink("socket:[%d]" % inode, str(fd / str(number)))
    return str(proc)


def test_listeners_names_the_process_and_unit_of_each_listening_port(tmp_path):
    proc = fake_proc(tmp_path, [(443, "0A", 11), (80, "0A", 12), (8443, "01", 13)], {
        10: ("nginx", "/system.slice/nginx.service", [11, 12]),
        20: ("python3", "/user.slice/user-0.slice/session-1.scope", [13]),
    })
    expected = {443: [(10, "nginx", "nginx.service")], 80: [(10, "nginx", "nginx.service")]}
    assert listeners({80, 443, 8443}, proc=proc) == expected


SETTINGS = {"http_port": 80, "https_port": 8443, "tls": "selfsigned"}


def test_a_port_another_program_holds_is_named_with_its_variable_and_the_program():
    holders = {8443: [(1494, "python3", None)], 80: [(7, "nginx", "nginx.service")]}
    assert port_plan(PROXIES["nginx"], SETTINGS, (), holders)[0] == [
        "immich_proxy_https_port 8443 is already in use by python3 (pid 1494): stop that program or choose "
        "another port (nothing was changed)"]


@pytest.mark.parametrize("kind", ["nginx", "apache", "caddy", "traefik"])
def test_a_port_the_proxys_own_service_holds_is_free_for_it_but_not_for_another_kind(kind):
    """Its own service keeps the sockets across a reload; another kind's service must be stopped first."""
    unit = PROXIES[kind].service + ".service"
    assert port_plan(PROXIES[kind], SETTINGS, (), {8443: [(9, "x", unit)]})[0] == []
    other = "nginx" if kind != "nginx" else "caddy"
    assert port_plan(PROXIES[other], SETTINGS, (), {8443: [(9, "x", unit)]})[0] == [
        "immich_proxy_https_port 8443 is already in use by x (pid 9, %s): stop that program or choose another "
        "port (nothing was changed)" % unit]


def test_a_busy_proxy_closing_connections_while_it_is_looked_at_still_owns_its_listener(tmp_path):
    """Caddy and Traefik are one process: under load, connections close between listing its fds and reading them.

    Found by the benchmark: the role run failed on Caddy under load, its own port held "by a process this check
    cannot see". A vanished fd (here a file that is no symlink: readlink fails as on a closed fd) is skipped.
    """
    proc = fake_proc(tmp_path, [(80, "0A", 31)], {30: ("caddy", "/system.slice/caddy.service", [31])})
    (tmp_path / "proc" / "30" / "fd" / "7").write_text("")
    assert listeners({80}, proc=proc) == {80: [(30, "caddy", "caddy.service")]}


def test_a_listener_whose_process_cannot_be_seen_still_holds_its_port(tmp_path):
    proc = fake_proc(tmp_path, [(8443, "0A", 21)], {})
    holders = listeners({8443}, proc=proc)
    assert holders == {8443: [(0, "a process this check cannot see", None)]}
    assert port_plan(PROXIES["nginx"], SETTINGS, (), holders)[0] == [
        "immich_proxy_https_port 8443 is already in use by a process this check cannot see: stop that program or "
        "choose another port (nothing was changed)"]


def test_a_unit_outside_the_collection_is_named():
    holders = {80: [(5, "lighttpd", "lighttpd.service")]}
    assert port_plan(PROXIES["traefik"], SETTINGS, (), holders)[0] == [
        "immich_proxy_http_port 80 is already in use by lighttpd (pid 5, lighttpd.service): stop that program "
        "or choose another port (nothing was changed)"]


def test_the_https_port_is_not_needed_without_tls_and_a_tunnel_needs_no_port():
    holders = {8443: [(1, "python3", None)], 80: [(1, "python3", None)]}
    assert port_plan(PROXIES["nginx"], dict(SETTINGS, tls="off"), (), holders)[0] == [
        "immich_proxy_http_port 80 is already in use by python3 (pid 1): stop that program or choose another "
        "port (nothing was changed)"]
    assert port_plan(PROXIES["cloudflared"], SETTINGS, (), holders)[0] == []


def test_missing_unreadable_and_wrong_files_are_named_without_their_content(tmp_path):
    cert = tmp_path / "cert.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    key = tmp_path / "key.pem"
    key.write_text("not a key but a secret: hunter2\n")
    settings = {"tls": "provided", "tls_cert_path": str(cert), "tls_key_path": str(key),
                "backend_ca_file": str(tmp_path / "nope.pem"), "acme_ca_file": str(tmp_path / "unused.pem"),
                "backends": [{"scheme": "https"}]}
    problems = file_problems(settings)
    assert problems == [
        "immich_proxy_tls_key %s is not a PEM private key (nothing was changed)" % key,
        "immich_proxy_backend_ca_file %s does not exist on this host (the file must be on the proxy host; "
        "nothing was changed)" % (tmp_path / "nope.pem")]
    assert "hunter2" not in " ".join(problems)
    # the role's own pair (selfsigned, acme) is made by the role, and a CA file nothing uses (no https backend,
    # no ACME) is not read: not looked for
    assert file_problems(dict(settings, tls="selfsigned", backends=[{"scheme": "http"}])) == []


def test_a_file_that_cannot_be_read_is_named_with_the_reason(tmp_path, monkeypatch):
    cert = tmp_path / "cert.pem"
    cert.write_text("x")

    def refuse(path, mode="r", *args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr("builtins.open", refuse)
    assert file_problems({"tls": "off", "backend_ca_file": str(cert), "backends": [{"scheme": "https"}]}) == [
        "immich_proxy_backend_ca_file %s cannot be read: Permission denied (nothing was changed)" % cert]


def test_every_port_reachable_from_outside_leaves_loopback_listeners_out(tmp_path):
    """Caddy's admin endpoint on localhost:2019 is not a site it serves; 8080 on every address is."""
    proc = fake_proc(tmp_path, [(443, "0A", 11), (2019, "0A", 12, "0100007F"), (8080, "0A", 13, "0500A8C0")], {
        10: ("caddy", "/system.slice/caddy.service", [11, 12, 13])})
    assert listeners(None, proc=proc, loopback=False) == {
        443: [(10, "caddy", "caddy.service")], 8080: [(10, "caddy", "caddy.service")]}
    assert set(listeners(None, proc=proc)) == {443, 2019, 8080}


NGINX_HOLDS = {80: [(7, "nginx", "nginx.service")], 8443: [(7, "nginx", "nginx.service")]}


def test_the_ports_of_a_proxy_this_collection_deployed_before_are_handed_over_not_refused():
    """immich_proxy_kind switched from nginx to caddy: nginx's record is there, it holds both ports."""
    problems, handover = port_plan(PROXIES["caddy"], SETTINGS, {"nginx", "caddy"}, NGINX_HOLDS, reachable=NGINX_HOLDS)
    assert problems == []
    assert handover == [{"kind": "nginx", "service": "nginx", "ports": [80, 8443]}]


def test_a_proxy_the_collection_did_not_deploy_is_not_stopped_for_it():
    problems, handover = port_plan(PROXIES["caddy"], SETTINGS, {"apache"}, NGINX_HOLDS, reachable=NGINX_HOLDS)
    assert handover == [] and len(problems) == 2 and problems[0].startswith(
        "immich_proxy_http_port 80 is already in use by nginx (pid 7, nginx.service)")


def test_a_previous_proxy_that_serves_more_than_immich_is_not_stopped_for_it():
    reachable = {**NGINX_HOLDS, 8080: [(7, "nginx", "nginx.service")]}
    problems, handover = port_plan(PROXIES["caddy"], SETTINGS, {"nginx"}, NGINX_HOLDS, reachable=reachable)
    assert handover == []
    assert problems == [
        "immich_proxy_http_port 80 and immich_proxy_https_port 8443 are held by nginx.service, the nginx proxy this "
        "collection deployed here before; it also listens on port 8080, so it serves more than Immich and is not "
        "stopped for you: take Immich's site off it and free the port yourself, or choose another port; if that port "
        "is its own Immich site from before (the switch also turns TLS off or moves a port), switch in two runs: the "
        "kind first with the same ports (nothing was changed)"]


def test_another_program_beside_the_previous_proxy_is_still_refused():
    holders = {**NGINX_HOLDS, 8443: [(7, "nginx", "nginx.service"), (9, "python3", None)]}
    problems, handover = port_plan(PROXIES["caddy"], SETTINGS, {"nginx"}, holders, reachable=NGINX_HOLDS)
    assert handover == [{"kind": "nginx", "service": "nginx", "ports": [80, 8443]}]
    assert problems == ["immich_proxy_https_port 8443 is already in use by python3 (pid 9): stop that program or "
                        "choose another port (nothing was changed)"]


def test_the_kinds_deployed_here_are_those_with_a_record(tmp_path):
    assert deployed_kinds(str(tmp_path / "none")) == set()
    LoadedState(str(tmp_path), "nginx").record("d", 1)
    LoadedState(str(tmp_path), "caddy").mark_pending()
    (tmp_path / ".loaded-x.json").write_text("{}")
    assert deployed_kinds(str(tmp_path)) == {"nginx", "caddy"}
    LoadedState(str(tmp_path), "nginx").forget()
    assert deployed_kinds(str(tmp_path)) == {"caddy"}


def test_a_rollback_gives_the_key_back_to_a_proxy_that_reads_it_as_its_own_user(tmp_path):
    """nginx's run made the key root's 0600; Caddy, started again after a failed switch, must read it."""
    class Reader(PROXIES["caddy"]):
        key_reader = grp.getgrgid(os.getgid()).gr_name

    root = tmp_path / "etc-immich-proxy"
    key = root / "tls" / "photos.example.org" / "privkey.pem"
    key.parent.mkdir(parents=True)
    key.write_text("key")
    for path in (root, root / "tls", key.parent):
        path.chmod(0o700)
    key.chmod(0o600)
    outside = tmp_path / "privkey.pem"
    outside.write_text("key")
    outside.chmod(0o600)
    object.__new__(Reader).grant_key([str(key), str(outside), str(key.parent / "fullchain.pem")], root=str(root))
    assert oct(key.stat().st_mode & 0o777) == "0o640" and key.stat().st_gid == os.getgid()
    for path in (root, root / "tls", key.parent):
        assert oct(path.stat().st_mode & 0o777) == "0o750", path
    assert oct(outside.stat().st_mode & 0o777) == "0o600", "a key outside the managed directory was touched"


class FakeModule:
    """get_bin_path and run_command as a host with (or without) dpkg would answer them."""

    def __init__(self, dpkg_out=None):
        self.dpkg_out = dpkg_out
        self.calls = []

    def get_bin_path(self, name, opt_dirs=None):
        return "/usr/bin/" + name if self.dpkg_out is not None else None

    def run_command(self, argv, handle_exceptions=True):
        self.calls.append(argv)
        if argv[-1] == "version" and self.dpkg_out == "broken":
            raise OSError(8, "Exec format error")
        if argv[-1] == "version":
            return 0, "Version:      3.7.15\nCodename:     langres\nGo version:   go1.26.9\n", ""
        return 1, self.dpkg_out, "dpkg-query: no packages found matching certbot\n"


@pytest.mark.parametrize("release, family, supported", [
    ('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n', "Debian", True),
    ('PRETTY_NAME="Ubuntu 24.04 LTS"\nID=ubuntu\nID_LIKE=debian\n', "Debian", True),
    ('PRETTY_NAME="Raspbian GNU/Linux 12"\nID=raspbian\nID_LIKE=debian\n', "Debian", True),
    ('PRETTY_NAME="Zorin OS 17"\nID=zorin\nID_LIKE="ubuntu"\n', "Debian", True),
    ('PRETTY_NAME="Fedora Linux 41"\nID=fedora\n', "Fedora", False),
    ("", "Unknown", False),
], ids=["debian", "ubuntu", "raspbian", "zorin", "fedora", "no-os-release"])
def test_host_facts_name_the_os_family_as_ansible_does(tmp_path, release, family, supported):
    (tmp_path / "os-release").write_text(release)
    facts = host_facts(PROXIES["nginx"], FakeModule(""), os_release=str(tmp_path / "os-release"))
    assert (facts["os_family"], facts["supported"]) == (family, supported)
    assert facts["architecture"] == os.uname().machine


def test_host_facts_read_the_installed_versions_in_one_dpkg_query(tmp_path):
    dpkg = FakeModule("nginx hold ok installed 1.22.1-9+deb12u3\npasswd install ok installed 1:4.13+dfsg1-1\n"
                      "certbot deinstall ok config-files 2.1.0-4\n")
    facts = host_facts(PROXIES["nginx"], dpkg, os_release=str(tmp_path / "missing"))
    assert facts["packages"] == {"nginx": "1.22.1-9+deb12u3", "passwd": "1:4.13+dfsg1-1", "python3-apt": None,
                                 "openssl": None, "certbot": None, "ca-certificates": None}
    assert len(dpkg.calls) == 1 and dpkg.calls[0][:2] == ["/usr/bin/dpkg-query", "-W"]


def test_host_facts_without_dpkg_look_up_nothing(tmp_path):
    facts = host_facts(PROXIES["traefik"], FakeModule(None), os_release=str(tmp_path / "missing"))
    assert facts["packages"] == {}


def test_host_facts_say_whether_the_service_user_is_there_and_what_the_binary_says_its_version_is(tmp_path):
    missing = str(tmp_path / "missing")
    traefik = host_facts(PROXIES["traefik"], FakeModule(""), os_release=missing)
    assert traefik["proxy_version"] == "3.7.15" and traefik["user_exists"] in (True, False)
    # nginx: Debian's package says the version, and the service runs as the package's user
    nginx = host_facts(PROXIES["nginx"], FakeModule(""), os_release=missing)
    assert nginx["proxy_version"] is None and nginx["user_exists"] is None
    # no binary yet (a fresh host), or one that cannot run here: no version, and no failure (the role replaces it)
    assert host_facts(PROXIES["traefik"], FakeModule(None), os_release=missing)["proxy_version"] is None
    assert host_facts(PROXIES["traefik"], FakeModule("broken"), os_release=missing)["proxy_version"] is None


def _record(tmp_path, content=b"traefik 3.7.15"):
    """A binary, then (later, as the role writes it) its sha1sum record: (record path, binary path, sha1)."""
    binary = tmp_path / "traefik"
    binary.write_bytes(content)
    record = tmp_path / "state" / "traefik.binary.sha1"
    record.parent.mkdir(exist_ok=True)
    digest = hashlib.sha1(content).hexdigest()
    record.write_text("%s  %s\n" % (digest, binary))
    # the record was written after the binary's inode last changed
    stamp = os.stat(str(binary)).st_ctime_ns + 10 ** 9
    os.utime(str(record), ns=(stamp, stamp))
    return str(record), str(binary), digest


def test_a_recorded_binary_digest_vouches_for_the_binary_only_until_the_binary_changes(tmp_path):
    record, binary, digest = _record(tmp_path)
    assert recorded_binary_sha1(record, binary) == digest
    # a binary touched after the record (chmod sets its ctime, which no one can set back): hashed again
    stamp = os.stat(record).st_mtime_ns
    os.chmod(binary, 0o700)
    os.utime(record, ns=(stamp - 2 * 10 ** 9, stamp - 2 * 10 ** 9))
    assert recorded_binary_sha1(record, binary) is None


def test_the_record_is_held_to_the_binary_s_ctime_not_its_mtime_and_must_be_strictly_newer(tmp_path):
    record, binary, digest = _record(tmp_path)
    # a binary copied in with its old time kept (cp -p, rsync -t): the mtime is from before the record, the ctime not
    older = os.stat(record).st_mtime_ns - 5 * 10 ** 9
    os.utime(binary, ns=(older, older))
    changed = os.stat(binary).st_ctime_ns
    between = changed - 10 ** 6
    os.utime(record, ns=(between, between))
    assert os.stat(binary).st_mtime_ns < os.stat(record).st_mtime_ns < os.stat(binary).st_ctime_ns
    assert recorded_binary_sha1(record, binary) is None
    # dated the same nanosecond as the binary's change: not after it
    os.utime(record, ns=(changed, changed))
    assert recorded_binary_sha1(record, binary) is None
    os.utime(record, ns=(changed + 1, changed + 1))
    assert recorded_binary_sha1(record, binary) == digest


def test_a_link_at_the_binary_s_path_is_not_vouched_for(tmp_path):
    record, binary, digest = _record(tmp_path)
    target = tmp_path / "packaged"
    os.rename(binary, str(target))
    os.symlink(str(target), binary)
    # the link and its target older than the record: still no binary the role copied
    stamp = max(os.lstat(binary).st_ctime_ns, os.stat(binary).st_ctime_ns) + 10 ** 9
    os.utime(record, ns=(stamp, stamp))
    assert recorded_binary_sha1(record, binary) is None


@pytest.mark.parametrize("kind, names", [
    # Debian's package's binary too: the role installs the package
    ("caddy", ["__caddy_own_binary", "__caddy_package_binary", "__caddy_unit_path", "__caddy_dropin_path"]),
    ("traefik", ["__traefik_binary", "__traefik_unit_path"]),
])
def test_the_start_files_are_the_files_the_role_writes(kind, names):
    roles = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "roles")
    with open(os.path.join(roles, kind, "vars", "Debian.yml")) as handle:
        paths = yaml.safe_load(handle)
    expected = [paths[name] for name in names]
    if kind == "traefik":
        expected.append(PROXIES["traefik"].workdir + "/plugins-local/src/github.com/homelab/immichguard")
    assert sorted(PROXIES[kind].start_files) == sorted(expected)


class Systemd:
    """systemctl show of a service whose main process started `ago` seconds before now (None: not running), or at
    the monotonic time `at` (ns)."""

    def __init__(self, ago=0, at=None):
        self.ago, self.at = ago, at
        self.need_daemon_reload = "no"

    def get_bin_path(self, name, opt_dirs=None):
        return "/usr/bin/" + name

    def run_command(self, argv, handle_exceptions=True):
        assert argv[:3] == ["/usr/bin/systemctl", "show", "traefik.service"]
        if self.ago is None:
            return 0, "MainPID=0\nExecMainStartTimestampMonotonic=0\nNeedDaemonReload=no\n", ""
        started = (self.at if self.at is not None else time.monotonic_ns() - int(self.ago * 10 ** 9)) // 1000
        return 0, "MainPID=4242\nExecMainStartTimestampMonotonic=%d\nNeedDaemonReload=%s\n" % (
            started, self.need_daemon_reload), ""


def test_a_start_file_changed_after_the_service_started_means_a_restart_is_pending(tmp_path, monkeypatch):
    plugin = tmp_path / "plugins-local" / "src" / "immichguard"
    plugin.mkdir(parents=True)
    unit = tmp_path / "traefik.service"
    unit.write_text("[Service]\n")
    time.sleep(0.05)
    started = time.monotonic_ns()
    time.sleep(0.05)
    # only the plugin's file, deep in its directory, was written after that start
    (plugin / "guard.go").write_text("package immichguard\n")
    start_files = (str(unit), str(tmp_path / "plugins-local"), str(tmp_path / "no-binary-yet"))
    monkeypatch.setattr(PROXIES["traefik"], "start_files", start_files)
    # written before the service started: nothing pending
    assert _proxies.changed_since_start(PROXIES["traefik"], Systemd(ago=-5)) is False
    assert _proxies.changed_since_start(PROXIES["traefik"], Systemd(at=started)) is True
    # not running: it starts on what is on disk
    assert _proxies.changed_since_start(PROXIES["traefik"], Systemd(ago=None)) is None
    # nginx reads every file again on a reload: no start files, not asked
    assert _proxies.changed_since_start(PROXIES["nginx"], Systemd(ago=5)) is None


def test_a_chmod_of_a_start_file_counts_and_an_old_mtime_does_not_hide_it(tmp_path, monkeypatch):
    unit = tmp_path / "traefik.service"
    unit.write_text("[Service]\n")
    monkeypatch.setattr(PROXIES["traefik"], "start_files", (str(unit),))
    time.sleep(0.05)
    started = Systemd(at=time.monotonic_ns())
    assert _proxies.changed_since_start(PROXIES["traefik"], started) is False
    time.sleep(0.05)
    os.utime(str(unit), ns=(0, 0))  # an old mtime, set now: the ctime is now
    assert _proxies.changed_since_start(PROXIES["traefik"], started) is True


def test_a_directory_is_no_start_file_and_a_unit_systemd_has_not_loaded_is(tmp_path, monkeypatch):
    plugin = tmp_path / "immichguard"
    plugin.mkdir()
    (plugin / "guard.go").write_text("package immichguard\n")
    monkeypatch.setattr(PROXIES["traefik"], "start_files", (str(plugin),))
    time.sleep(0.05)
    started = Systemd(at=time.monotonic_ns())
    time.sleep(0.05)
    # a mode set back on the plugin's directory (apply_config's directories), or a file added beside it
    os.chmod(str(plugin), 0o750)
    assert _proxies.changed_since_start(PROXIES["traefik"], started) is False
    # a unit (or drop-in) written but never loaded: systemd restarted the service on its own since
    started.need_daemon_reload = "yes"
    assert _proxies.changed_since_start(PROXIES["traefik"], started) is True


@pytest.mark.parametrize("damage", ["other path", "not a digest", "no binary", "no record", "two lines"])
def test_a_record_that_does_not_name_the_installed_binary_vouches_for_nothing(tmp_path, damage):
    record, binary, digest = _record(tmp_path)
    stamp = os.stat(record).st_mtime_ns
    text = {"other path": "%s  /usr/local/bin/caddy\n" % digest, "not a digest": "%s  %s\n" % ("z" * 40, binary),
            "two lines": "%s  %s\n%s  %s\n" % (digest, binary, digest, binary)}.get(damage)
    if text is not None:
        with open(record, "w") as handle:
            handle.write(text)
        os.utime(record, ns=(stamp, stamp))
    elif damage == "no binary":
        os.unlink(binary)
    else:
        os.unlink(record)
    assert recorded_binary_sha1(record, binary) is None


def test_host_facts_give_the_recorded_digest_of_a_binary_from_the_controller(tmp_path, monkeypatch):
    state = tmp_path / "state"
    record, binary, digest = _record(tmp_path)
    assert record == binary_record_path("traefik", str(state))
    monkeypatch.setattr(PROXIES["traefik"], "controller_binary", binary)
    facts = host_facts(PROXIES["traefik"], FakeModule(""), os_release=str(tmp_path / "missing"), state_dir=str(state))
    assert (facts["binary_record"], facts["binary_sha1"]) == (record, digest)
    # nginx comes from Debian's package only: no record
    facts = host_facts(PROXIES["nginx"], FakeModule(""), os_release=str(tmp_path / "missing"), state_dir=str(state))
    assert (facts["binary_record"], facts["binary_sha1"]) == (None, None)


@pytest.mark.parametrize("kind, path_var, vars_file", [
    ("traefik", "__traefik_binary", "traefik/vars/Debian.yml"),
    ("caddy", "__caddy_own_binary", "caddy/vars/Debian.yml"),
    ("cloudflared", "__cloudflared_binary", "cloudflared/vars/Debian.yml"),
])
def test_the_roles_own_path_of_their_binary_is_where_the_shared_step_installs_it(kind, path_var, vars_file):
    """tasks_from controller_binary installs to the adapter's controller_binary (settings' proxy.controller_binary);
    the role runs, checks and restarts what its own variable names."""
    roles = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "roles")
    assert PROXIES[kind].describe()["controller_binary"] == PROXIES[kind].controller_binary
    with open(os.path.join(roles, vars_file)) as handle:
        value = yaml.safe_load(handle)[path_var]
    # cloudflared's is an expression: /usr/local/bin for the binary install, Cloudflare's package's path otherwise
    assert value == PROXIES[kind].controller_binary or "'%s' if " % PROXIES[kind].controller_binary in value


def test_an_account_exists_only_with_its_group(monkeypatch):
    assert _proxies._account_exists("root") is True
    assert _proxies._account_exists("no-such-user-here") is False

    def no_group(name):
        raise KeyError(name)

    monkeypatch.setattr(_proxies.grp, "getgrnam", no_group)
    assert _proxies._account_exists("root") is False
