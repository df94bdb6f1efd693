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
  - Files marked O(files[].secret) (keys, tunnel credentials) never appear in the diff, the result or an error.
  - Unlike C(ansible.builtin.template) with C(validate), a snippet is tested in the context of the full config.
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
      secret:
        description:
          - The content is a credential. The diff shows only its size and a short digest, and the content is
            masked wherever Ansible would print it.
        type: bool
        default: false
  absent:
    description: Files (or symlinks) to remove in the same transaction, such as a distribution's default site.
    type: list
    elements: path
    default: []
  validate:
    description: Test the whole config tree with the proxy's checker before keeping it.
    type: bool
    default: true
  state_dir:
    description: Where M(homelab.immich_proxy.reload_service) remembers what the service loaded.
    type: path
    default: /var/lib/immich-proxy
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
"""

RETURN = r"""
changed_files:
  description: The files written or removed (or that would be, in check mode).
  returned: always
  type: list
  elements: str
  sample: ["/etc/nginx/conf.d/immich-proxy.conf"]
validation:
  description: What the proxy's checker said about the accepted config.
  returned: when the config changed and was tested
  type: str
  sample: ""
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.homelab.immich_proxy.plugins.module_utils._proxies import ProxyError, get_proxy
from ansible_collections.homelab.immich_proxy.plugins.module_utils._state import DEFAULT_STATE_DIR, LoadedState
from ansible_collections.homelab.immich_proxy.plugins.module_utils._transaction import (
    ApplyError,
    FileChange,
    Transaction,
)


def run(module):
    proxy = get_proxy(module.params["kind"], module)
    for item in module.params["files"]:
        if item["secret"]:
            module.no_log_values.add(item["content"])
    changes = [FileChange(f["path"], f["content"], f["mode"], f["owner"], f["group"], f["secret"])
               for f in module.params["files"]]
    changes += [FileChange(path) for path in module.params["absent"]]
    transaction = Transaction(changes)
    pending = transaction.pending
    result = {
        "changed": bool(pending),
        "changed_files": [c.path for c in pending],
        "diff": [c.diff() for c in pending],
    }
    if not pending or module.check_mode:
        return result
    validate = module.params["validate"]
    if validate:
        proxy.precheck(pending)
    # Marked before the swap, so a run that dies after it still leaves the service due
    # a reload; put back when the old files are, since the service then runs them still.
    state = LoadedState(module.params["state_dir"], proxy.name)
    recorded = state.read()
    state.mark_pending()
    try:
        result["validation"] = transaction.apply(proxy.test if validate else lambda: "")
    except BaseException:
        state.restore(recorded)
        raise
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            kind=dict(type="str", required=True),
            files=dict(type="list", elements="dict", default=[], options=dict(
                path=dict(type="path", required=True),
                content=dict(type="str", required=True),
                mode=dict(type="str", default="0644"),
                owner=dict(type="str", default="root"),
                group=dict(type="str", default="root"),
                secret=dict(type="bool", default=False),
            )),
            absent=dict(type="list", elements="path", default=[]),
            validate=dict(type="bool", default=True),
            state_dir=dict(type="path", default=DEFAULT_STATE_DIR),
        ),
        supports_check_mode=True,
    )
    try:
        result = run(module)
    except (ApplyError, ProxyError) as exc:
        module.fail_json(msg="The new %s configuration was not applied: %s" % (module.params["kind"], exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
