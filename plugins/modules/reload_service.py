#!/usr/bin/python
# Copyright: homelab.immich_proxy contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
---
module: reload_service
short_description: Make a reverse proxy run its current config, gracefully and only when needed
version_added: 0.1.0
description:
  - Starts the proxy service if it is stopped (the first run).
  - Otherwise makes the running service take its config the way the proxy's adapter says (its strategy), and only
    when needed. C(reload) proxies (nginx, Apache, Caddy) are reloaded gracefully, so in-flight uploads finish;
    C(watch) proxies (Traefik's file provider) already applied the files and are only asked to prove it;
    C(restart) proxies (cloudflared, Traefik's static config) are restarted, which drops open connections.
  - Needed means that M(homelab.immich_proxy.apply_config) changed files since the last successful run, or that the
    effective config (for nginx the output of C(nginx -T), plus the watched files such as certificates) differs from
    the one the running service last loaded, or that the service was restarted by someone else since.
  - Tests the config in place before loading it, where the proxy has a checker, so an unchecked config is never
    loaded.
  - Afterwards proves that the service runs the new config (for nginx, the master is the same and new workers
    exist). A reload that silently failed is an error.
  - Remembers the digest of the loaded config and the service's main PID in O(state_dir).
  - With O(handover_from) (the host's C(immich_proxy_kind) was switched), takes the ports over from the proxies of
    the previous kind. It tests the new config, stops and disables their services, starts this one and waits until it
    listens on O(ports), and says how long Immich was unreachable. If it does not start or listen, it is stopped
    again and the previous services are started as they were, and the module fails saying so.
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
    details: Shows the digest of the loaded config before and after.
  idempotent:
    support: full
options:
  watch:
    description: Files outside the proxy's config dump whose content must be live too, such as certificates and keys.
    type: list
    elements: path
    default: []
  handover_from:
    description:
      - The proxy kinds this collection deployed on the host before, whose services hold the ports this proxy must
        listen on (the C(handover) the M(homelab.immich_proxy.settings) module returns). Their records in
        O(state_dir) are removed once this proxy serves.
    type: list
    elements: str
    default: []
  ports:
    description:
      - The ports this proxy must listen on after a handover (the ones O(handover_from) held); required with
        O(handover_from).
    type: list
    elements: int
    default: []
  state_dir:
    description: Where the digest of the loaded config is remembered.
    type: path
    default: /var/lib/immich-proxy
"""

EXAMPLES = r"""
- name: Make nginx serve the applied config
  homelab.immich_proxy.reload_service:
    kind: nginx
    watch:
      - /etc/immich-proxy/tls/photos.example.org/fullchain.pem
"""

RETURN = r"""
action:
  description: What was done, C(started), C(reloaded), C(restarted) or C(none).
  returned: always
  type: str
  sample: reloaded
drops:
  description:
    - For a reload, what the installed version of the proxy still drops when it reloads (Caddy before 2.7 closes
      open websockets; Caddy built with Go 1.25 or later may close a new connection unanswered; Caddy resets new
      connections where the kernel setting
      M(homelab.immich_proxy.apply_config) sets is not live), as a sentence; null when a reload drops nothing or
      the action is not a reload.
  returned: when the proxy is installed
  type: str
  sample: null
digest:
  description: SHA-256 of the config the service runs now (or would run, in check mode).
  returned: when the proxy is installed
  type: str
outage:
  description:
    - After a handover, the seconds between stopping the previous proxy and this one listening on every port, the
      time Immich was unreachable; null without a handover or in check mode.
  returned: always
  type: float
  sample: 1.3
msg:
  description: What a handover did or would do, in a sentence.
  returned: when O(handover_from) names a proxy that runs
  type: str
"""

import time
from functools import partial

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.homelab.immich_proxy.plugins.module_utils._proxies import ProxyError, get_proxy
from ansible_collections.homelab.immich_proxy.plugins.module_utils._state import (
    DEFAULT_STATE_DIR,
    LoadedState,
    load_plan,
)


def handover(module, proxy, state, digest):
    """Stop the previous kind's proxies, start this one on their ports; put them back if it does not serve."""
    previous = [get_proxy(kind, module) for kind in module.params["handover_from"]]
    running = [other for other in previous if other.is_running()]
    ports = sorted(set(module.params["ports"]))
    names = " and ".join(other.service for other in running) or "nothing"
    result = {"changed": True, "action": "started", "drops": None, "digest": digest, "outage": None,
              "diff": {"before": "serving Immich: %s\n" % names, "after": "serving Immich: %s\n" % proxy.service}}
    if not running:
        return None
    if module.check_mode:
        result["msg"] = "%s would stop and %s start on ports %s" % (
            names, proxy.service, ", ".join(map(str, ports)))
        return result
    proxy.test()
    began = time.monotonic()
    try:
        for other in running:
            other.stop()
        if proxy.is_running():
            # started with its package's default config, without the ports the previous proxy held
            proxy.systemctl("restart", proxy.service)
        proxy.start()
        if not proxy.wait_until(lambda: proxy.holds(ports), 15):
            raise ProxyError("%s runs but does not listen on ports %s" % (proxy.service, ", ".join(map(str, ports))))
    except Exception as exc:  # whatever went wrong, the previous proxies serve again
        proxy.systemctl("disable", proxy.service, check=False)
        proxy.systemctl("stop", proxy.service, check=False)
        back = []
        for other in running:
            try:
                other.grant_key(module.params["watch"])
            except (OSError, KeyError):
                pass
            other.systemctl("enable", other.service, check=False)
            rc, _out = other.systemctl("start", other.service, check=False)
            if rc == 0 and other.wait_until(partial(other.holds, ports), 15):
                back.append(other.service)
        missing = [other.service for other in running if other.service not in back]
        if not isinstance(exc, ProxyError):
            raise
        raise ProxyError(
            "%s could not take ports %s over from %s: %s. %s; Immich was unreachable for %.1f s. The new "
            "configuration is on disk and %s is stopped and disabled again: fix the cause and run again." % (
                proxy.service, ", ".join(map(str, ports)), names, exc,
                "%s serves Immich again as before" % " and ".join(back) if not missing
                else "%s did not start again: start it by hand ('systemctl start %s')" % (
                    " and ".join(missing), " ".join(missing)),
                time.monotonic() - began, proxy.service)) from None
    outage = time.monotonic() - began
    state.record(digest, proxy.main_pid())
    for other in previous:
        LoadedState(module.params["state_dir"], other.name).forget()
    result["outage"] = round(outage, 2)
    result["msg"] = ("%s took ports %s over from %s (now stopped and disabled; its files are left as they were): "
                     "Immich was unreachable for %.1f s" % (proxy.service, ", ".join(map(str, ports)), names, outage))
    return result


def run(module):
    proxy = get_proxy(module.params["kind"], module)
    state = LoadedState(module.params["state_dir"], proxy.name)
    if module.params["handover_from"] and not proxy.installed() and module.check_mode:
        return {"changed": True, "action": "started", "outage": None, "drops": None,
                "msg": "%s is not installed yet; it would take the ports over from %s" % (
                    proxy.name, " and ".join(module.params["handover_from"]))}
    if not proxy.installed():
        if module.check_mode:
            return {"changed": True, "action": "started",
                    "msg": "%s is not installed yet; it would be started" % proxy.name}
        raise ProxyError("%s is not installed" % proxy.name)

    action, digest, recorded, running = load_plan(proxy, state, module.params["watch"])
    if module.params["handover_from"]:
        taken = handover(module, proxy, state, digest)
        if taken is not None:
            return taken
    loaded = recorded.get("digest") if running else "(stopped)"
    stale = " (files changed since)" if recorded.get("pending") else ""
    result = {
        "changed": action != "none",
        "action": action,
        "outage": None,
        "drops": proxy.reload_drops() if action == "reloaded" else None,
        "digest": digest,
        "diff": {"before": "loaded config: %s%s\n" % (loaded, stale), "after": "loaded config: %s\n" % digest},
    }
    if action == "none" or module.check_mode:
        return result

    proxy.test()
    if action == "started":
        proxy.start()
    else:
        proxy.take_config()
    state.record(digest, proxy.main_pid())
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            kind=dict(type="str", required=True),
            watch=dict(type="list", elements="path", default=[]),
            handover_from=dict(type="list", elements="str", default=[]),
            ports=dict(type="list", elements="int", default=[]),
            state_dir=dict(type="path", default=DEFAULT_STATE_DIR),
        ),
        supports_check_mode=True,
        required_together=[("handover_from", "ports")],
    )
    try:
        result = run(module)
    except ProxyError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
