# SPDX-License-Identifier: GPL-3.0-or-later
# TEST-ONLY: used by tests/behaviour/test_faults.py, never by the collection.
"""Kill the playbook run the moment apply_config has changed files, before any reload: a run cut short."""
from __future__ import annotations

import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: interrupt_after_apply
type: aggregate
short_description: "TEST-ONLY: end the run right after apply_config changed files"
description:
  - Stands for a run cut short between applying a config and loading it (a lost SSH connection, Ctrl-C,
    a power cut of the controller). The process exits at once, as a killed one would.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "interrupt_after_apply"
    CALLBACK_NEEDS_ENABLED = True

    def v2_runner_on_ok(self, result):
        if result._task.action.endswith("apply_config") and result._result.get("changed"):
            self._display.display("TEST-ONLY interrupt_after_apply: the run is cut short here")
            os._exit(130)
