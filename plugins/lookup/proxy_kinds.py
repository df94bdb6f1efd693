# Copyright: homelab.immich_proxy contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
---
name: proxy_kinds
short_description: The proxy kinds this collection has a role for
version_added: 0.2.0
description:
  - Returns the kinds of the adapter registry (C(plugins/module_utils/_proxies.py)), the one list of proxy kinds;
    each has a role C(homelab.immich_proxy.<kind>). C(playbooks/site.yml) checks C(immich_proxy_kind) against it.
author:
  - homelab.immich_proxy contributors (@homelab)
options: {}
"""

EXAMPLES = r"""
- name: Refuse an unknown proxy kind
  ansible.builtin.assert:
    that: immich_proxy_kind in query('homelab.immich_proxy.proxy_kinds')
"""

RETURN = r"""
_raw:
  description: The proxy kinds, sorted.
  type: list
  elements: str
  sample: [nginx]
"""

from ansible.plugins.lookup import LookupBase

from ansible_collections.homelab.immich_proxy.plugins.module_utils._proxies import PROXIES


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        return sorted(PROXIES)
