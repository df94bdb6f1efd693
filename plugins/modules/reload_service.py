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
  - Otherwise reloads it gracefully, and only when the effective config (for nginx the output of C(nginx -T),
    plus the watched files such as certificates) differs from the one the running service last loaded.
    A reload lets in-flight uploads finish; the service is never restarted.
  - Tests the config before reloading, so an unchecked config is never loaded.
  - Afterwards proves that the service runs the new config (for nginx, the master is the same and new workers
    exist). A reload that silently failed is an error.
  - Remembers the digest of the loaded config and the service's main PID in O(state_dir).
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
  description: What was done, C(started), C(reloaded) or C(none).
  returned: always
  type: str
  sample: reloaded
digest:
  description: SHA-256 of the config the service runs now (or would run, in check mode).
  returned: when the proxy is installed
  type: str
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.homelab.immich_proxy.plugins.module_utils._proxies import (
    PROXIES,
    ProxyError,
    get_proxy,
)


def read_state(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def write_state(module, path, state):
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    tmp = path + ".new"
    with open(tmp, "w") as handle:
        json.dump(state, handle)
    module.atomic_move(tmp, path)


def run(module):
    proxy = get_proxy(module.params["kind"], module)
    state_path = os.path.join(module.params["state_dir"], "%s.loaded.json" % proxy.name)
    if not proxy.installed():
        if module.check_mode:
            return {"changed": True, "action": "started",
                    "msg": "%s is not installed yet; it would be started" % proxy.name}
        raise ProxyError("%s is not installed" % proxy.name)

    digest = proxy.config_digest(module.params["watch"])
    recorded = read_state(state_path)
    running = proxy.is_running()
    pid = proxy.main_pid() if running else 0
    if not running:
        action = "started"
    elif recorded.get("digest") == digest and recorded.get("pid") == pid:
        action = "none"
    else:
        action = "reloaded"
    result = {
        "changed": action != "none",
        "action": action,
        "digest": digest,
        "diff": {"before": "loaded config: %s\n" % (recorded.get("digest") if running else "(stopped)"),
                 "after": "loaded config: %s\n" % digest},
    }
    if action == "none" or module.check_mode:
        return result

    proxy.test()
    if action == "started":
        proxy.start()
    else:
        proxy.reload()
    write_state(module, state_path, {"digest": digest, "pid": proxy.main_pid()})
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            kind=dict(type="str", required=True, choices=sorted(PROXIES)),
            watch=dict(type="list", elements="path", default=[]),
            state_dir=dict(type="path", default="/var/lib/immich-proxy"),
        ),
        supports_check_mode=True,
    )
    try:
        result = run(module)
    except ProxyError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
