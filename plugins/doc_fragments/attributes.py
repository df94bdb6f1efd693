# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: homelab.immich_proxy contributors
from __future__ import annotations


class ModuleDocFragment:
    # Shared attribute docs; each module states its own support levels.
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
  idempotent:
    description:
      - When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
"""

    PROXY_KIND = r"""
options:
  kind:
    description:
      - Which reverse proxy the files belong to; picks how a config is tested, reloaded and asked what is live.
      - One of the kinds the collection has a role for (C(nginx), ...); an unknown kind is an error that lists the
        known ones, from the adapter registry.
    type: str
    required: true
"""
