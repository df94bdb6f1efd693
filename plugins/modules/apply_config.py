#!/usr/bin/python
# Copyright: homelab.immich_proxy contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
---
module: apply_config
short_description: Apply a reverse-proxy config tree transactionally
version_added: 0.1.0
description:
  - Writes every file of a proxy's config together, tests the whole tree in place with the proxy's own checker
    where it has one (C(nginx -t), C(apachectl -t)), and keeps the new files only if the proxy accepts them.
  - A proxy that applies files the moment they are written (Traefik's file provider) has the candidate checked
    by its adapter before the files are swapped in.
  - On any failure (the proxy rejects the config, a write fails) every file is restored, every new file removed,
    and the previous config keeps serving; the task fails with the proxy's own error message.
  - Does not reload the service; use M(homelab.immich_proxy.reload_service) for that. When files changed, it
    marks the service's loaded config as stale in O(state_dir), so the next
    M(homelab.immich_proxy.reload_service) makes the service take the new files even if a run failed in between.
  - O(secret_files) (keys, tunnel credentials) never appear in the diff, the result, an error or a log.
  - Unlike C(ansible.builtin.template) with C(validate), a snippet is tested in the context of the full config.
  - Kernel settings the proxy's graceful reload needs (Caddy's new connections survive a reload only with
    C(net.ipv4.tcp_migrate_req=1)) are kept in a file of the kind's own in O(sysctl_dir) and set live, once the
    config is in place. Where the kernel cannot be told (C(/proc/sys) is read-only, as in a container by default; a
    kernel older than 5.14), that is no error; RV(kernel) says so, and RV(load) what a reload then drops and what
    to do.
author:
  - homelab.immich_proxy contributors (@homelab)
extends_documentation_fragment:
  - homelab.immich_proxy.attributes
  - homelab.immich_proxy.attributes.proxy_kind
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: Shows each file's content before and after; removed files show as absent.
  idempotent:
    support: full
options:
  files:
    description: The files of the config, each written with the given content, mode, owner and group.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path of the file. Its directory must exist.
        type: path
        required: true
      content:
        description: The file's full content (render a template with C(lookup('ansible.builtin.template', ...))).
        type: str
        required: true
      mode:
        description: Permissions as an octal string.
        type: str
        default: '0644'
      owner:
        description: Owner name.
        type: str
        default: root
      group:
        description: Group name.
        type: str
        default: root
  secret_files:
    description:
      - Files whose content is a credential (a private key, tunnel credentials), applied in the same transaction.
      - Their content is a C(no_log) option, so Ansible never logs or prints it (not in the invocation, the
        managed host's journal, an error, or at any verbosity); the diff shows only a file's size and a short
        digest.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path of the file. Its directory must exist.
        type: path
        required: true
      content:
        description: The file's full content; a C(no_log) option, never logged or printed.
        type: str
        required: true
      mode:
        description: Permissions as an octal string; readable by its owner only unless you say otherwise.
        type: str
        default: '0600'
      owner:
        description: Owner name.
        type: str
        default: root
      group:
        description: Group name.
        type: str
        default: root
  directories:
    description:
      - Directories to create (or whose mode and owner to set) before the files are written, in the order given
        (a parent before its children), such as a proxy's working directory for the files it needs besides its
        config (a plugin, a unit), applied and checked with it.
      - When the files are rolled back (the proxy refuses them, a write fails), a directory made by the call is
        removed again and one whose mode or owner it set gets its own back.
    type: list
    elements: dict
    default: []
    version_added: 0.7.0
    suboptions:
      path:
        description: Absolute path of the directory.
        type: path
        required: true
      mode:
        description: Permissions as an octal string.
        type: str
        default: '0755'
      owner:
        description: Owner name.
        type: str
        default: root
      group:
        description: Group name.
        type: str
        default: root
  links:
    description:
      - Symbolic links to create in the same transaction, such as Debian's C(sites-enabled) and C(mods-enabled)
        entries that C(a2ensite) and C(a2enmod) would make, so that enabling a site or module is tested and
        rolled back with the files it needs.
      - A link is changed when it points elsewhere; a regular file in its place is replaced.
    type: list
    elements: dict
    default: []
    version_added: 0.2.0
    suboptions:
      path:
        description: Absolute path of the link. Its directory must exist.
        type: path
        required: true
      src:
        description: What the link points to, written as given (a relative target stays relative).
        type: str
        required: true
  absent:
    description: Files (or symlinks) to remove in the same transaction, such as a distribution's default site.
    type: list
    elements: path
    default: []
  secret_absent:
    description:
      - Files to remove in the same transaction whose content is a credential (a tunnel's other kind of secret);
        the diff shows only their size and a short digest, as for O(secret_files).
    type: list
    elements: path
    default: []
    version_added: 0.5.0
  validate:
    description: Test the whole config tree with the proxy's checker before keeping it.
    type: bool
    default: true
  watch:
    description:
      - Files outside the proxy's config whose content must be live too, such as certificates and keys, as given
        to M(homelab.immich_proxy.reload_service).
      - When given (an empty list too), the result says in RV(load) how the service will take the config on disk,
        as M(homelab.immich_proxy.reload_service) would in check mode, so a role needs no call of its own to ask.
    type: list
    elements: path
    version_added: 0.7.0
  check:
    description:
      - When the run changes nothing (no file to write, and RV(load) says the service runs exactly the config on
        disk), check the proxy end to end in this call, as M(homelab.immich_proxy.check) does with these options,
        and return RV(checks) and RV(check_failure), so that a re-run that changes nothing needs no call of its own
        for it. A failed check does not fail this task; the caller says so.
      - Otherwise nothing is checked here (the service is still to take the config).
      - Needs O(watch).
    type: dict
    version_added: 0.7.0
    suboptions:
      url:
        description: The public URL of the proxy, as in C(immich_proxy_public_url).
        type: str
        required: true
      connect_host:
        description: Address to connect to instead of resolving the URL's host, such as C(127.0.0.1).
        type: str
      connect_port:
        description: Port to connect to instead of the URL's.
        type: int
      ca_path:
        description: CA bundle (PEM) to verify the certificate with instead of the system's CAs.
        type: path
      validate_certs:
        description: Verify the certificate chain and host name.
        type: bool
        default: true
      max_body_size:
        description: Body size the proxy must admit, in bytes or with a k, M or G suffix.
        type: raw
        default: 50000M
      timeout:
        description: "Seconds to wait for each answer, including the answer to C(Expect: 100-continue)."
        type: float
        default: 10
  state_dir:
    description: Where M(homelab.immich_proxy.reload_service) remembers what the service loaded.
    type: path
    default: /var/lib/immich-proxy
  sysctl_dir:
    description:
      - Where the kernel settings the proxy needs are kept, in C(60-immich-proxy-<kind>.conf), read at boot by
        C(systemd-sysctl); made if missing. Each setting is written with a leading C(-), so that a kernel without it
        is no error at boot.
      - The file is the kind's own, apart from the config (writing it makes no reload); no other kind's run removes
        it, so two kinds on one host (a tunnel beside Caddy) leave each other's alone.
    type: path
    default: /etc/sysctl.d
    version_added: 0.7.0
"""

EXAMPLES = r"""
- name: Apply the Immich site to nginx, or leave the old one serving
  homelab.immich_proxy.apply_config:
    kind: nginx
    files:
      - path: /etc/nginx/conf.d/immich-proxy.conf
        content: "{{ lookup('ansible.builtin.template', 'immich-proxy.conf.j2') }}"
        mode: "0644"
    absent:
      - /etc/nginx/sites-enabled/default
  register: immich_nginx_config

- name: Enable an Apache site and the modules it needs, or leave the old config serving
  homelab.immich_proxy.apply_config:
    kind: apache
    files:
      - path: /etc/apache2/sites-available/immich-proxy.conf
        content: "{{ lookup('ansible.builtin.template', 'immich-proxy.conf.j2') }}"
    links:
      - path: /etc/apache2/sites-enabled/immich-proxy.conf
        src: ../sites-available/immich-proxy.conf
      - path: /etc/apache2/mods-enabled/proxy_http.load
        src: ../mods-available/proxy_http.load
"""

RETURN = r"""
changed_files:
  description: The directories created or set and the files written or removed (or that would be, in check mode).
  returned: always
  type: list
  elements: str
  sample: ["/etc/nginx/conf.d/immich-proxy.conf"]
load:
  description:
    - How the service will take the config on disk (in check mode, the config it would be given).
    - C(action) is C(started) (stopped, or not installed yet), C(none) (it runs exactly that config already),
      C(reloaded) or C(restarted) (which drops open connections); C(drops) is what a reload of the installed
      version still drops as a sentence, or null (Caddy before 2.7 closes open websockets; Caddy built with Go
      1.25 or later may close a new connection unanswered; Caddy resets new connections where
      C(net.ipv4.tcp_migrate_req) cannot be set, see RV(kernel)).
  returned: when O(watch) is given
  type: dict
  sample: {"action": "reloaded", "drops": null}
  version_added: 0.7.0
checks:
  description:
    - Each end-to-end check as M(homelab.immich_proxy.check) returns it (C(name), C(ok), C(skipped), C(detail)).
  returned: when O(check) is given and the run changed nothing
  type: list
  elements: dict
  sample:
    - {"name": "ping", "ok": true, "skipped": false, "detail": "GET /api/server/ping answered {\"res\": \"pong\"}"}
  version_added: 0.7.0
check_failure:
  description: What failed, as M(homelab.immich_proxy.check) would fail with it; null when every check passed.
  returned: when O(check) is given and the run changed nothing
  type: str
  sample: null
  version_added: 0.7.0
kernel:
  description:
    - Each kernel setting the proxy's graceful reload needs, as the running kernel has it after the call (in check
      mode, as it would have it), with C(name), C(wanted), C(live) (null where this kernel has no such setting) and
      C(set) (whether this call set it, or would in check mode). Empty for a proxy that needs none.
    - A setting that is not as wanted after the call (the kernel cannot be told here) is said in RV(load)'s
      C(drops), which RV(load) has when O(watch) is given and the service is to reload.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "net.ipv4.tcp_migrate_req", "wanted": "1", "live": "1", "set": true}]
  version_added: 0.7.0
validation:
  description: What the proxy's checker said about the accepted config.
  returned: when the config changed and was tested
  type: str
  sample: ""
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.homelab.immich_proxy.plugins.module_utils._probe import (
    CHECK_OPTIONS,
    check_target,
    run_checks,
    verdict,
)
from ansible_collections.homelab.immich_proxy.plugins.module_utils._proxies import ProxyError, get_proxy
from ansible_collections.homelab.immich_proxy.plugins.module_utils._state import (
    DEFAULT_STATE_DIR,
    LoadedState,
    load_plan,
)
from ansible_collections.homelab.immich_proxy.plugins.module_utils._transaction import (
    ApplyError,
    DirectoryChange,
    FileChange,
    Transaction,
)


def run(module):
    proxy = get_proxy(module.params["kind"], module)
    check = module.check_mode
    directories = [DirectoryChange(d["path"], d["mode"], d["owner"], d["group"], check_mode=check)
                   for d in module.params["directories"]]
    made = [d for d in directories if d.changed]
    if check:
        return _apply_files(module, proxy, made)
    done = []
    try:
        for directory in made:
            directory.apply()
            done.append(directory)
        return _apply_files(module, proxy, made)
    except (ApplyError, ProxyError, OSError):
        # nothing of a refused or failed apply stays: directories made are removed, changed ones set back
        for directory in reversed(done):
            directory.undo()
        raise


def _apply_files(module, proxy, made):
    check = module.check_mode
    changes = [FileChange(f["path"], f["content"], f["mode"], f["owner"], f["group"], check_mode=check)
               for f in module.params["files"]]
    changes += [FileChange(f["path"], f["content"], f["mode"], f["owner"], f["group"], secret=True, check_mode=check)
                for f in module.params["secret_files"]]
    changes += [FileChange(link["path"], link=link["src"]) for link in module.params["links"]]
    changes += [FileChange(path) for path in module.params["absent"]]
    changes += [FileChange(path, secret=True) for path in module.params["secret_absent"]]
    transaction = Transaction(changes)
    pending = transaction.pending
    result = {
        "changed": bool(pending or made),
        "changed_files": [d.path for d in made] + [c.path for c in pending],
        "diff": [d.diff() for d in made] + [c.diff() for c in pending],
    }
    if not pending or module.check_mode:
        _apply_kernel(module, proxy, result)
        return _with_load(module, proxy, result, would_change=pending)
    validate = module.params["validate"]
    if validate:
        try:
            proxy.precheck(pending)
        except ProxyError as exc:
            raise ApplyError("%s; no file was changed, the previous configuration is still in place" % exc) from exc
    # Marked before the swap, so a run that dies after it still leaves the service due
    # a reload. Put back only when the transaction says every old file is back (the
    # service then runs them still); any other failure leaves the mark, and a reload.
    state = LoadedState(module.params["state_dir"], proxy.name)
    try:
        recorded = state.read()
        state.mark_pending()
    except OSError as exc:
        raise ApplyError("cannot record the pending reload in %s: %s" % (module.params["state_dir"], exc)) from exc
    try:
        result["validation"] = transaction.apply(proxy.test_applied if validate else lambda: "")
    except ApplyError:
        state.restore(recorded)
        raise
    _apply_kernel(module, proxy, result)
    return _with_load(module, proxy, result)


def _apply_kernel(module, proxy, result):
    """Once the config is in place (a refused one changes nothing): the kernel settings the proxy needs, kept in a
    sysctl.d file of the kind's own (apart from the config: no reload for it, and no other kind on the host removes
    it) and set live where they differ and the kernel can be told."""
    result["kernel"] = []
    if not proxy.sysctls:
        return
    check = module.check_mode
    path = os.path.join(module.params["sysctl_dir"], "60-immich-proxy-%s.conf" % proxy.name)
    lines = ["# Kept by homelab.immich_proxy (apply_config): kernel settings a graceful reload of %s needs, set live"
             % proxy.title, "# by the role and read at boot by systemd-sysctl. A leading '-': a kernel without the "
             "setting is no error."]
    for name, value, drops in proxy.sysctls:
        lines += ["# Without it, %s." % drops, "-%s = %s" % (name, value)]
    # nothing here may fail the run or undo it: the config is in place and the service due to take it
    try:
        directory = None if os.path.isdir(module.params["sysctl_dir"]) else DirectoryChange(
            module.params["sysctl_dir"], "0755", "root", "root", check_mode=check)
        kept = Transaction([FileChange(path, "\n".join(lines) + "\n", "0644", "root", "root", check_mode=check)])
        if kept.pending or directory:
            diff = ([directory.diff()] if directory else []) + [c.diff() for c in kept.pending]
            if not check:
                if directory:
                    directory.apply()
                kept.apply(lambda: "")
            result["changed"] = True
            result["changed_files"] += ([directory.path] if directory else []) + [path]
            result["diff"] += diff
    except (ApplyError, OSError, ValueError) as exc:
        cause = exc.__cause__ or exc
        module.warn("%s could not be written (%s): the kernel settings %s needs are not kept for the next boot "
                    "(the configuration is applied all the same)" % (path, cause, proxy.title))
    for found in proxy.kernel():
        if found["live"] != found["wanted"] and found["settable"]:
            if check:
                proxy.plan_kernel(found)
            elif proxy.set_kernel(found) is not None:
                # refused (AppArmor, SELinux): said in load.drops by kernel_drops()
                result["kernel"].append({"name": found["name"], "wanted": found["wanted"], "set": False})
                continue
            result["changed"] = True
            result["diff"].append({"before_header": "%s (the running kernel)" % found["name"],
                                   "after_header": "%s (the running kernel)" % found["name"],
                                   "before": found["live"] + "\n", "after": found["wanted"] + "\n"})
            result["kernel"].append({"name": found["name"], "wanted": found["wanted"], "set": True})
        else:
            result["kernel"].append({"name": found["name"], "wanted": found["wanted"], "set": False})
    # as the running kernel has it now (read again; in check mode, as the run would leave it)
    for setting, found in zip(result["kernel"], proxy.kernel()):
        setting["live"] = found["live"]


def _with_load(module, proxy, result, would_change=()):
    """The result, with how the service will take the config on disk when the caller watches files (in check
    mode, with the changes that would be made: would_change)."""
    if module.params["watch"] is None:
        return result
    if not proxy.installed():
        action = "started"
    elif would_change:
        # check mode: the files on disk are still the old ones; the adapter weighs the changes (Traefik's static file)
        action = "started" if not proxy.is_running() else proxy.pending_action(would_change)
    else:
        action = load_plan(proxy, LoadedState(module.params["state_dir"], proxy.name), module.params["watch"])[0]
    result["load"] = {"action": action, "drops": proxy.reload_drops() if action == "reloaded" else None}
    return result


def _file_options(mode, secret):
    return dict(
        path=dict(type="path", required=True),
        content=dict(type="str", required=True, no_log=secret),
        mode=dict(type="str", default=mode),
        owner=dict(type="str", default="root"),
        group=dict(type="str", default="root"),
    )


def main():
    module = AnsibleModule(
        argument_spec=dict(
            kind=dict(type="str", required=True),
            files=dict(type="list", elements="dict", default=[], options=_file_options("0644", secret=False)),
            # Only each file's content is secret; its path, mode and owner stay readable in the output.
            secret_files=dict(type="list", elements="dict", default=[], no_log=False,
                              options=_file_options("0600", secret=True)),
            directories=dict(type="list", elements="dict", default=[], options=dict(
                path=dict(type="path", required=True), mode=dict(type="str", default="0755"),
                owner=dict(type="str", default="root"), group=dict(type="str", default="root"))),
            links=dict(type="list", elements="dict", default=[],
                       options=dict(path=dict(type="path", required=True), src=dict(type="str", required=True))),
            absent=dict(type="list", elements="path", default=[]),
            # paths only: the files' content is what is secret (see FileChange)
            secret_absent=dict(type="list", elements="path", default=[], no_log=False),
            validate=dict(type="bool", default=True),
            watch=dict(type="list", elements="path"),
            check=dict(type="dict", options=dict(CHECK_OPTIONS)),
            state_dir=dict(type="path", default=DEFAULT_STATE_DIR),
            sysctl_dir=dict(type="path", default="/etc/sysctl.d"),
        ),
        required_by=dict(check="watch"),
        supports_check_mode=True,
    )
    try:
        result = run(module)
    except (ApplyError, ProxyError) as exc:
        module.fail_json(msg="The new %s configuration was not applied: %s" % (module.params["kind"], exc))
    except OSError as exc:
        module.fail_json(msg="Applying the new %s configuration failed and not every file could be put back (%s); "
                         "look at the files listed in the diff before reloading the proxy, and run the role again"
                         % (module.params["kind"], exc))
    check = module.params["check"]
    if check is not None and not module.check_mode and not result["changed"] and result["load"]["action"] == "none":
        # nothing for the service to take: what the serve step would check now is what runs now (the target is
        # made here, not before: on a first run the certificate it trusts may be new)
        try:
            target = check_target(check, prefix="check.")
        except ValueError as exc:
            module.fail_json(msg=str(exc))
        result["checks"] = [c.as_dict() for c in run_checks(*target)]
        result["check_failure"] = verdict(result["checks"], check["url"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
