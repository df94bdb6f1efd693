# SPDX-License-Identifier: GPL-3.0-or-later
"""Run modules in-process: arguments patched in, exit_json/fail_json caught."""
from __future__ import annotations

import json

import pytest
from ansible.module_utils import basic
from ansible.module_utils.common import warnings as ansible_warnings
from ansible.module_utils.common.warnings import get_warning_messages
from ansible.module_utils.testing import patch_module_args


class ModuleExit(Exception):
    def __init__(self, result, failed):
        super().__init__(result)
        self.result = result
        self.failed = failed


def _exit_json(self, **kwargs):
    kwargs.setdefault("changed", False)
    if get_warning_messages():
        kwargs["warnings"] = list(get_warning_messages())
    raise ModuleExit(kwargs, failed=False)


def _fail_json(self, msg, **kwargs):
    kwargs["msg"] = msg
    raise ModuleExit(kwargs, failed=True)


@pytest.fixture
def run_module(monkeypatch):
    """run_module(module, args, check_mode=False) -> (result, failed)."""
    monkeypatch.setattr(basic.AnsibleModule, "exit_json", _exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", _fail_json)

    def runner(module, args, check_mode=False, diff=False):
        args = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)
        # a module runs once in its process; here many run in one, so each starts with no warning of another's
        ansible_warnings._global_warnings.clear()
        with patch_module_args(json.loads(json.dumps(args))), pytest.raises(ModuleExit) as caught:
            module.main()
        return caught.value.result, caught.value.failed

    return runner
