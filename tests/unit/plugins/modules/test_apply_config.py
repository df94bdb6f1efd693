# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import grp
import json
import os
import pwd

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.homelab.immich_proxy.plugins.module_utils import _proxies
from ansible_collections.homelab.immich_proxy.plugins.modules import apply_config

ME = pwd.getpwuid(os.getuid()).pw_name
MY_GROUP = grp.getgrgid(os.getgid()).gr_name


@pytest.fixture
def nginx(monkeypatch):
    """A patched run_command standing in for `nginx -t`; records what the checker saw."""
    calls = []
    verdict = {"rc": 0, "err": ""}

    def run_command(self, argv, **kwargs):
        calls.append(argv)
        return verdict["rc"], "", verdict["err"]

    monkeypatch.setattr(AnsibleModule, "run_command", run_command)
    monkeypatch.setattr(AnsibleModule, "get_bin_path",
                        lambda self, name, required=False, opt_dirs=None: "/usr/sbin/" + name)
    return calls, verdict


def args(tmp_path, content="server {}\n", **extra):
    extra.setdefault("state_dir", str(tmp_path))
    return dict(kind="nginx", files=[{"path": str(tmp_path / "immich.conf"), "content": content, "mode": "0644",
                                      "owner": ME, "group": MY_GROUP}], **extra)


def test_a_new_file_is_written_after_nginx_accepts_it(tmp_path, nginx, run_module):
    result, failed = run_module(apply_config, args(tmp_path))
    assert not failed and result["changed"]
    assert (tmp_path / "immich.conf").read_text() == "server {}\n"
    assert nginx[0] == [["/usr/sbin/nginx", "-t", "-q"]]


def test_check_mode_reports_the_diff_and_writes_nothing(tmp_path, nginx, run_module):
    result, failed = run_module(apply_config, args(tmp_path), check_mode=True, diff=True)
    assert not failed and result["changed"]
    assert result["diff"][0]["after"] == "server {}\n"
    assert not (tmp_path / "immich.conf").exists()
    assert nginx[0] == [], "check mode must not run the proxy's checker"


def test_a_second_run_changes_nothing(tmp_path, nginx, run_module):
    run_module(apply_config, args(tmp_path))
    result, failed = run_module(apply_config, args(tmp_path))
    assert not failed and not result["changed"]
    assert len(nginx[0]) == 1, "an unchanged config is not tested again"


def test_a_rejected_config_fails_with_nginxs_words_and_keeps_the_old_file(tmp_path, nginx, run_module):
    (tmp_path / "immich.conf").write_text("old\n")
    os.chmod(tmp_path / "immich.conf", 0o644)
    nginx[1].update(rc=1, err='nginx: [emerg] unknown directive "bogus" in /etc/nginx/conf.d/immich.conf:3')
    result, failed = run_module(apply_config, args(tmp_path, content="bogus on;\n"))
    assert failed
    assert 'unknown directive "bogus"' in result["msg"]
    assert "every file was restored" in result["msg"]
    assert (tmp_path / "immich.conf").read_text() == "old\n"


def test_an_unknown_owner_is_a_clear_error(tmp_path, nginx, run_module):
    bad = args(tmp_path)
    bad["files"][0]["owner"] = "no-such-user-here"
    result, failed = run_module(apply_config, bad)
    assert failed and "owner" in result["msg"]
    assert not (tmp_path / "immich.conf").exists()


def test_in_check_mode_an_owner_the_run_creates_earlier_is_a_change_not_an_error(tmp_path, nginx, run_module):
    (tmp_path / "immich.conf").write_text("server {}\n")
    os.chmod(tmp_path / "immich.conf", 0o644)
    pending = args(tmp_path)
    pending["files"][0]["group"] = "no-such-group-yet"
    result, failed = run_module(apply_config, pending, check_mode=True)
    assert not failed and result["changed"], result
    assert (tmp_path / "immich.conf").read_text() == "server {}\n"


def test_a_changed_apply_leaves_the_service_due_a_reload(tmp_path, nginx, run_module):
    state = tmp_path / "state"
    state.mkdir()
    (state / "nginx.loaded.json").write_text(json.dumps({"digest": "abc", "pid": 7}))
    run_module(apply_config, args(tmp_path, state_dir=str(state)))
    assert json.loads((state / "nginx.loaded.json").read_text()) == {"digest": "abc", "pid": 7, "pending": True}


def test_a_rejected_apply_leaves_the_record_as_it_was(tmp_path, nginx, run_module):
    state = tmp_path / "state"
    state.mkdir()
    (state / "nginx.loaded.json").write_text(json.dumps({"digest": "abc", "pid": 7}))
    nginx[1].update(rc=1, err="nginx: [emerg] bogus")
    _result, failed = run_module(apply_config, args(tmp_path, state_dir=str(state)))
    assert failed
    assert json.loads((state / "nginx.loaded.json").read_text()) == {"digest": "abc", "pid": 7}


def _run_main(arguments, capsys):
    """The module's real main() (exit_json masks no_log values): its printed output and the result, which passed."""
    with patch_module_args(arguments), pytest.raises(SystemExit):
        apply_config.main()
    output = capsys.readouterr().out
    result = json.loads(output)
    assert not result.get("failed"), result
    return output, result


def test_a_secret_file_never_reaches_ansibles_output(tmp_path, nginx, monkeypatch, capsys):
    """Through the real exit_json, which masks no_log values and returns the invocation."""
    secret = '{"TunnelSecret": "c2VjcmV0LXR1bm5lbC1rZXk="}'
    arguments = dict(args(tmp_path), secret_files=[{"path": str(tmp_path / "credentials.json"), "content": secret,
                                                    "owner": ME, "group": MY_GROUP}],
                     _ansible_diff=True)
    logged = []
    monkeypatch.setattr(AnsibleModule, "log", lambda self, msg, log_args=None: logged.append(msg))
    output, result = _run_main(arguments, capsys)
    assert "c2VjcmV0" not in output, "the secret reached the module's output"
    assert "c2VjcmV0" not in " ".join(logged), "the secret reached the host's log"
    diff = next(d for d in result["diff"] if d["after_header"].endswith("credentials.json"))
    assert diff["after"].startswith("(secret: ")
    assert (tmp_path / "credentials.json").read_text() == secret
    assert oct((tmp_path / "credentials.json").stat().st_mode & 0o777) == "0o600"


def test_a_removed_secret_file_never_reaches_ansibles_output_either(tmp_path, nginx, monkeypatch, capsys):
    token = tmp_path / "token"
    token.write_text("c2VjcmV0LXR1bm5lbC10b2tlbg==")
    arguments = dict(args(tmp_path), secret_absent=[str(token)], _ansible_diff=True)
    output, result = _run_main(arguments, capsys)
    assert "c2VjcmV0" not in output, "the removed secret reached the module's output"
    diff = next(d for d in result["diff"] if d["before_header"].endswith("token"))
    assert diff["before"].startswith("(secret: ") and diff["after"] == ""
    assert not token.exists()


def test_links_are_made_with_the_files_and_undone_with_them_when_apache_refuses(tmp_path, nginx, run_module):
    (tmp_path / "available").mkdir()
    (tmp_path / "enabled").mkdir()
    link = {"path": str(tmp_path / "enabled" / "immich.conf"), "src": "../available/immich.conf"}
    calls, verdict = nginx
    verdict.update(rc=1, err="AH00526: Syntax error on line 3 of immich.conf: Invalid command 'Bogus'")
    result, failed = run_module(apply_config, dict(args(tmp_path), kind="apache", links=[link]))
    assert failed and "apache rejected the configuration" in result["msg"] and "Bogus" in result["msg"]
    assert calls == [["/usr/sbin/apache2ctl", "-t"]]
    assert os.listdir(tmp_path / "enabled") == [] and not (tmp_path / "immich.conf").exists()
    verdict.update(rc=0, err="Syntax OK")
    result, failed = run_module(apply_config, dict(args(tmp_path), kind="apache", links=[link]), diff=True)
    assert not failed and sorted(result["changed_files"]) == sorted([link["path"], str(tmp_path / "immich.conf")])
    assert os.readlink(link["path"]) == "../available/immich.conf"
    result, failed = run_module(apply_config, dict(args(tmp_path), kind="apache", links=[link]))
    assert not failed and not result["changed"], "a link that already points there is no change"


def _with_directories(tmp_path, mode="0750"):
    work = tmp_path / "work"
    return dict(kind="nginx", validate=False, state_dir=str(tmp_path / "state"),
                directories=[{"path": str(work), "mode": mode, "owner": ME, "group": MY_GROUP},
                             {"path": str(work / "plugin"), "owner": ME, "group": MY_GROUP}],
                files=[{"path": str(work / "plugin" / "go.mod"), "content": "module x\n", "owner": ME,
                        "group": MY_GROUP}])


def test_directories_are_made_before_the_files_that_go_in_them_and_then_left_alone(tmp_path, nginx, run_module):
    result, failed = run_module(apply_config, _with_directories(tmp_path), check_mode=True, diff=True)
    assert not failed and result["changed"] and not (tmp_path / "work").exists()
    assert result["diff"][0]["after"] == "directory, mode 0750, owner %s:%s\n" % (ME, MY_GROUP)
    result, failed = run_module(apply_config, _with_directories(tmp_path))
    assert not failed and result["changed_files"] == [str(tmp_path / "work"), str(tmp_path / "work" / "plugin"),
                                                      str(tmp_path / "work" / "plugin" / "go.mod")]
    assert oct((tmp_path / "work").stat().st_mode & 0o7777) == "0o750"
    assert (tmp_path / "work" / "plugin" / "go.mod").read_text() == "module x\n"
    result, failed = run_module(apply_config, _with_directories(tmp_path))
    assert not failed and not result["changed"], result
    # a mode changed by hand is set back, and only the directory is reported
    (tmp_path / "work").chmod(0o755)
    result, failed = run_module(apply_config, _with_directories(tmp_path))
    assert result["changed_files"] == [str(tmp_path / "work")]
    assert oct((tmp_path / "work").stat().st_mode & 0o7777) == "0o750"


def test_a_file_where_a_directory_must_be_is_a_clear_error(tmp_path, nginx, run_module):
    (tmp_path / "work").write_text("")
    result, failed = run_module(apply_config, _with_directories(tmp_path))
    assert failed and "%s exists and is not a directory" % (tmp_path / "work") in result["msg"]


def test_a_refused_config_takes_the_directories_it_made_with_it(tmp_path, nginx, run_module):
    (tmp_path / "work").mkdir(mode=0o755)
    arguments = dict(_with_directories(tmp_path), validate=True)
    nginx[1].update(rc=1, err="nginx: [emerg] unknown directive")
    result, failed = run_module(apply_config, arguments)
    assert failed and "unknown directive" in result["msg"]
    assert not (tmp_path / "work" / "plugin").exists(), "a directory the refused apply made is still there"
    assert oct((tmp_path / "work").stat().st_mode & 0o7777) == "0o755", "the mode it set was not put back"


def test_a_directory_moved_elsewhere_behind_a_link_is_that_directory(tmp_path, nginx, run_module):
    (tmp_path / "elsewhere").mkdir(mode=0o750)
    (tmp_path / "work").symlink_to(tmp_path / "elsewhere")
    result, failed = run_module(apply_config, _with_directories(tmp_path))
    assert not failed, result
    assert str(tmp_path / "work") not in result["changed_files"]
    assert (tmp_path / "elsewhere" / "plugin" / "go.mod").read_text() == "module x\n"


def test_a_removed_binary_shows_as_its_size_and_digest_not_its_bytes(tmp_path, nginx, run_module):
    binary = tmp_path / "caddy"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 64)
    result, failed = run_module(apply_config, dict(kind="nginx", validate=False, state_dir=str(tmp_path / "s"),
                                                   absent=[str(binary)]), diff=True)
    assert not failed and not binary.exists()
    assert result["diff"][0]["before"].startswith("(binary: 16392 bytes, sha256 ")


# -- the end-to-end check made with an apply that changes nothing ------------------------------------------------
CHECK = {"url": "http://photos.example.org", "connect_host": "127.0.0.1", "connect_port": 8080,
         "max_body_size": "1G"}


@pytest.fixture
def probes(monkeypatch):
    """run_checks patched: records each target and answers with the checks in ``answers``."""
    seen, answers = [], [{"name": "ping", "ok": True, "skipped": False, "detail": "pong"}]

    class Check:
        def __init__(self, answer):
            self.answer = answer

        def as_dict(self):
            return dict(self.answer)

    def run_checks(target, max_body_size):
        seen.append((target.connect_host, target.port, target.host_header, max_body_size))
        return [Check(a) for a in answers]

    monkeypatch.setattr(apply_config, "run_checks", run_checks)
    return seen, answers


@pytest.fixture
def runs_as_on_disk(monkeypatch):
    """load_plan patched: the service runs exactly the config on disk (action), unless the test says otherwise."""
    plan = {"action": "none"}
    monkeypatch.setattr(apply_config, "load_plan", lambda proxy, state, watch=(): (plan["action"], "d", {}, True))
    return plan


def test_a_run_that_changes_nothing_checks_end_to_end_in_the_same_call(
        tmp_path, nginx, run_module, probes, runs_as_on_disk):
    run_module(apply_config, args(tmp_path, watch=[], check=CHECK))
    assert probes[0] == [], "a run that wrote a file checked before the service took it"
    result, failed = run_module(apply_config, args(tmp_path, watch=[], check=CHECK))
    assert not failed and not result["changed"]
    assert probes[0] == [("127.0.0.1", 8080, "photos.example.org", 1 << 30)]
    assert result["checks"] == [{"name": "ping", "ok": True, "skipped": False, "detail": "pong"}]
    assert result["check_failure"] is None


def test_a_failed_check_is_said_not_raised_so_the_serve_step_fails_with_it(
        tmp_path, nginx, run_module, probes, runs_as_on_disk):
    run_module(apply_config, args(tmp_path, watch=[], check=CHECK))
    probes[1][:] = [{"name": "ping", "ok": False, "skipped": False, "detail": "GET /api/server/ping: HTTP 502"}]
    result, failed = run_module(apply_config, args(tmp_path, watch=[], check=CHECK))
    assert not failed
    assert result["check_failure"].startswith("the proxy answers but cannot reach Immich"), result["check_failure"]
    assert "1 of 1 checks of http://photos.example.org failed: ping: GET /api/server/ping: HTTP 502" in (
        result["check_failure"])


@pytest.mark.parametrize("action", ["reloaded", "restarted", "started"])
def test_nothing_is_checked_while_the_service_is_still_to_take_its_config(
        tmp_path, nginx, run_module, probes, runs_as_on_disk, action):
    run_module(apply_config, args(tmp_path, watch=[], check=CHECK))
    runs_as_on_disk["action"] = action
    result, failed = run_module(apply_config, args(tmp_path, watch=[], check=CHECK))
    assert not failed and "checks" not in result and "check_failure" not in result
    assert probes[0] == []


def test_check_mode_checks_nothing(tmp_path, nginx, run_module, probes, runs_as_on_disk):
    run_module(apply_config, args(tmp_path, watch=[], check=CHECK))
    result, failed = run_module(apply_config, args(tmp_path, watch=[], check=CHECK), check_mode=True)
    assert not failed and "checks" not in result
    assert probes[0] == []


def test_a_check_without_watch_is_refused(tmp_path, nginx, run_module):
    result, failed = run_module(apply_config, args(tmp_path, check=CHECK))
    assert failed and "watch" in result["msg"], result["msg"]


def test_a_bad_check_option_names_it(tmp_path, nginx, run_module, runs_as_on_disk):
    run_module(apply_config, args(tmp_path, watch=[], check=CHECK))
    result, failed = run_module(apply_config, args(tmp_path, watch=[], check=dict(CHECK, max_body_size="lots")))
    assert failed and result["msg"].startswith("check.max_body_size 'lots'"), result["msg"]


TUNE = ("net.ipv4.tcp_migrate_req", "1", "a new connection is reset")


@pytest.fixture
def kernel(tmp_path, monkeypatch):
    """nginx given a kernel setting it needs (as Caddy has), and a /proc/sys of the test's own where it is 0."""
    monkeypatch.setattr(_proxies.Nginx, "sysctls", (TUNE,))
    monkeypatch.setattr(_proxies, "PROC_SYS", str(tmp_path / "proc"))
    live = tmp_path / "proc" / "net" / "ipv4" / "tcp_migrate_req"
    live.parent.mkdir(parents=True)
    live.write_text("0\n")
    return live


# the kernel file is root's, as systemd-sysctl wants it
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the kernel settings file is written as root:root")


def kernel_args(tmp_path, **extra):
    return args(tmp_path, sysctl_dir=str(tmp_path / "sysctl.d"), **extra)


def kept(tmp_path, kind="nginx"):
    return tmp_path / "sysctl.d" / ("60-immich-proxy-%s.conf" % kind)


@needs_root
def test_a_kernel_setting_the_proxy_needs_is_kept_and_set_live_after_the_config(tmp_path, nginx, run_module, kernel):
    result, failed = run_module(apply_config, kernel_args(tmp_path), diff=True)
    assert not failed and result["changed"]
    text = kept(tmp_path).read_text()
    assert "\n-net.ipv4.tcp_migrate_req = 1\n" in text and "# Without it, a new connection is reset." in text
    assert kernel.read_text() == "1\n"
    assert result["kernel"] == [{"name": "net.ipv4.tcp_migrate_req", "wanted": "1", "live": "1", "set": True}]
    assert result["changed_files"] == [str(tmp_path / "immich.conf"), str(tmp_path / "sysctl.d"), str(kept(tmp_path))]
    assert {"before": "0\n", "after": "1\n"}.items() <= result["diff"][-1].items()
    again, failed = run_module(apply_config, kernel_args(tmp_path))
    assert not failed and not again["changed"]
    assert again["kernel"] == [{"name": "net.ipv4.tcp_migrate_req", "wanted": "1", "live": "1", "set": False}]
    # set back by hand: the next run sets it again, and nothing else changes
    kernel.write_text("0\n")
    again, failed = run_module(apply_config, kernel_args(tmp_path))
    assert not failed and again["changed"] and again["changed_files"] == [] and kernel.read_text() == "1\n"


@needs_root
def test_the_kernel_file_alone_leaves_the_service_no_reload_due(tmp_path, nginx, run_module, kernel):
    """Kept apart from the config: an upgrade that adds it, or a hand edit of it, reloads nothing."""
    run_module(apply_config, kernel_args(tmp_path))
    state = tmp_path / "nginx.loaded.json"
    state.write_text('{"digest": "as loaded"}')
    kept(tmp_path).write_text("# edited by hand\n")
    result, failed = run_module(apply_config, kernel_args(tmp_path))
    assert not failed and result["changed_files"] == [str(kept(tmp_path))]
    assert state.read_text() == '{"digest": "as loaded"}', "the kernel file marked the service due a reload"
    assert nginx[0] == [["/usr/sbin/nginx", "-t", "-q"]], "the proxy's checker ran for the kernel file"


def test_check_mode_says_the_kernel_setting_and_sets_nothing(tmp_path, nginx, run_module, kernel):
    result, failed = run_module(apply_config, kernel_args(tmp_path), check_mode=True, diff=True)
    assert not failed and result["changed"]
    assert result["kernel"] == [{"name": "net.ipv4.tcp_migrate_req", "wanted": "1", "live": "1", "set": True}]
    assert {"before": "0\n", "after": "1\n"}.items() <= result["diff"][-1].items()
    assert kernel.read_text() == "0\n" and not (tmp_path / "sysctl.d").exists()


def test_a_refused_config_sets_no_kernel_setting_either(tmp_path, nginx, run_module, kernel):
    nginx[1].update(rc=1, err="nginx: [emerg] unknown directive")
    result, failed = run_module(apply_config, kernel_args(tmp_path))
    assert failed and "unknown directive" in result["msg"]
    assert kernel.read_text() == "0\n" and not (tmp_path / "sysctl.d").exists()


@needs_root
def test_a_kernel_that_cannot_be_told_is_said_before_a_reload_not_an_error(
        tmp_path, nginx, run_module, kernel, runs_as_on_disk, monkeypatch):
    monkeypatch.setattr(_proxies.os, "access", lambda path, mode: False)
    monkeypatch.setattr(_proxies.Nginx, "installed", lambda self: True)
    runs_as_on_disk["action"] = "reloaded"
    result, failed = run_module(apply_config, kernel_args(tmp_path, watch=[]))
    assert not failed and kernel.read_text() == "0\n"
    assert result["kernel"] == [{"name": "net.ipv4.tcp_migrate_req", "wanted": "1", "live": "0", "set": False}]
    assert result["load"]["drops"] == (
        "a new connection is reset: net.ipv4.tcp_migrate_req is 0 here and the role cannot set it (/proc/sys is "
        "read-only, as in a container by default; in a container, start it with --sysctl "
        "net.ipv4.tcp_migrate_req=1)"), result["load"]
    # the file is kept still: read at the next boot (of a host whose /proc/sys is writable)
    assert kept(tmp_path).exists()


@needs_root
def test_a_write_the_kernel_refuses_is_said_before_a_reload_not_an_error(
        tmp_path, nginx, run_module, kernel, runs_as_on_disk, monkeypatch):
    """Writable by its mode, refused all the same (AppArmor's docker-default profile denies writes to /proc/sys)."""
    real_open = open

    def refusing_open(path, *rest, **kwargs):
        if str(path) == str(kernel) and rest and rest[0] == "w":
            raise PermissionError(13, "Permission denied")
        return real_open(path, *rest, **kwargs)

    monkeypatch.setattr(_proxies, "open", refusing_open, raising=False)
    monkeypatch.setattr(_proxies.Nginx, "installed", lambda self: True)
    runs_as_on_disk["action"] = "reloaded"
    result, failed = run_module(apply_config, kernel_args(tmp_path, watch=[]))
    assert not failed and kernel.read_text() == "0\n"
    assert result["kernel"][0]["set"] is False
    assert result["load"]["drops"] == (
        "a new connection is reset: net.ipv4.tcp_migrate_req is 0 here and the role could not set it (Permission "
        "denied; in a container, start it with --sysctl net.ipv4.tcp_migrate_req=1)"), result["load"]


@needs_root
def test_another_kind_on_the_host_leaves_the_kernel_file_alone(tmp_path, nginx, run_module, kernel, monkeypatch):
    """A tunnel beside Caddy on one host: each run of the other kind would otherwise undo it."""
    run_module(apply_config, kernel_args(tmp_path))
    monkeypatch.setattr(_proxies.Nginx, "sysctls", ())
    result, failed = run_module(apply_config, kernel_args(tmp_path))
    assert not failed and not result["changed"] and result["kernel"] == []
    assert kept(tmp_path).exists() and kernel.read_text() == "1\n"


@needs_root
def test_a_setting_of_several_values_reads_back_as_it_was_set(tmp_path, nginx, run_module, kernel, monkeypatch):
    monkeypatch.setattr(_proxies.Nginx, "sysctls", (("net.ipv4.tcp_migrate_req", "4096 87380", "slow"),))
    kernel.write_text("4096\t87380\n")
    result, failed = run_module(apply_config, kernel_args(tmp_path))
    assert not failed and result["kernel"][0] == {"name": "net.ipv4.tcp_migrate_req", "wanted": "4096 87380",
                                                  "live": "4096 87380", "set": False}


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_a_kernel_file_that_cannot_be_written_is_a_warning_after_the_config_is_applied(
        tmp_path, nginx, run_module, kernel, where):
    """The config is in place and the service due to take it: nothing of that is failed or undone, and the file is
    not said to be written."""
    (tmp_path / "blocker").write_text("not a directory")
    sysctl_dir = tmp_path / "blocker" if where == "a file" else tmp_path / "blocker" / "sysctl.d"
    made = tmp_path / "made"
    extra = dict(sysctl_dir=str(sysctl_dir), directories=[{"path": str(made), "mode": "0750"}])
    for _run in range(2):
        result, failed = run_module(apply_config, args(tmp_path, **extra))
        assert not failed, result["msg"]
        assert not any("sysctl" in path or "blocker" in path for path in result["changed_files"]), result
        assert any("could not be written" in warning for warning in result.get("warnings", [])), result
        assert (tmp_path / "immich.conf").read_text() == "server {}\n"
        assert made.is_dir() and oct(made.stat().st_mode & 0o777) == "0o750"
        # live all the same
        assert kernel.read_text() == "1\n"
    assert not result["changed"], "a file that cannot be written is a change on every run"
