# Copyright: homelab.immich_proxy contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
---
name: file_sha1
short_description: The SHA-1 of a file on the controller
version_added: 0.7.0
description:
  - Returns the SHA-1 (hex) of each file, found where M(ansible.builtin.copy) finds its
    O(ansible.builtin.copy#module:src) (a role's C(files/), the playbook's directory, or an absolute path).
  - The roles compare it with the digest recorded on the host for a proxy binary they copied there
    (C(host.binary_sha1) of M(homelab.immich_proxy.settings)), so that a re-run hashes the binary on the controller
    only, not on every host again.
author:
  - homelab.immich_proxy contributors (@homelab)
options:
  _terms:
    description: The files.
    required: true
    type: list
    elements: path
"""

EXAMPLES = r"""
- name: Validate the settings (the result says which digest the host's record vouches for)
  homelab.immich_proxy.settings:
    kind: traefik
    public_url: https://photos.example.org
    backends: [http://10.0.0.21:2283]
    role_variables: {traefik_install: binary, traefik_binary_src: /srv/traefik/traefik}
  register: validated

- name: Say whether the host has this Traefik binary already
  ansible.builtin.debug:
    msg: "{{ lookup('homelab.immich_proxy.file_sha1', '/srv/traefik/traefik') == validated.settings.host.binary_sha1 }}"
"""

RETURN = r"""
_raw:
  description: The SHA-1 of each file, as 40 lowercase hex digits.
  type: list
  elements: str
  sample: [0ea3bd2bf4f2e4ac7e9e3f6b5d2f1f0c9a8b7c6d]
"""

import hashlib

from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        digests = []
        for term in terms:
            path = self.find_file_in_search_path(variables, "files", term, ignore_missing=True)
            if not path:
                raise AnsibleError("file_sha1: %s is not a file on the controller" % term)
            digest = hashlib.sha1()
            try:
                with open(path, "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(block)
            except OSError as error:
                raise AnsibleError("file_sha1: cannot read %s: %s" % (path, error.strerror)) from None
            digests.append(digest.hexdigest())
        return digests
