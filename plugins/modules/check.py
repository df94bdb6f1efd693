#!/usr/bin/python
# Copyright: homelab.immich_proxy contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
---
module: check
short_description: Check a deployed Immich reverse proxy end to end, as a client sees it
version_added: 0.1.0
description:
  - Talks to the proxy the way the Immich apps and CLI do and reports each check. Works against a real Immich.
  - C(tls) the certificate is valid for the host (with O(ca_path) or the system's CAs). When the TLS handshake
    fails, the other checks are not run (they would each repeat its error) and are returned with C(skipped=true).
  - C(well_known) C(/.well-known/immich) returns Immich's discovery JSON.
  - C(ping) C(/api/server/ping) answers C({"res":"pong"}).
  - C(websocket) a websocket upgrade on C(/api/socket.io/?EIO=4&transport=websocket) returns 101.
  - "C(body_size) a C(POST /api/assets) that announces a body of O(max_body_size) with C(Expect: 100-continue) is
    admitted, that is answered with C(100 Continue) (nginx, Apache, Caddy and Traefik answer it or pass it on to
    Immich, which does) or with Immich's own 401 for the missing login. C(413) is reported as the body limit;
    any other status, or no answer within O(timeout), as a failure that quotes what came back. Only the headers
    are sent; nothing is uploaded."
  - Fails when any check fails, with each failed check's reason.
author:
  - homelab.immich_proxy contributors (@homelab)
extends_documentation_fragment:
  - homelab.immich_proxy.attributes
attributes:
  check_mode:
    support: full
    details: Only reads; it runs in check mode as well.
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  url:
    description: The public URL of the proxy, as in C(immich_proxy_public_url).
    type: str
    required: true
  connect_host:
    description:
      - Address to connect to instead of resolving the URL's host, for example C(127.0.0.1) on the proxy host
        itself. The URL's host is still sent as SNI and C(Host).
    type: str
  connect_port:
    description:
      - Port to connect to instead of the URL's, for example the proxy's own HTTPS port on its host when a router
        forwards the public port to it. The URL's port is still sent in C(Host).
    type: int
  ca_path:
    description:
      - CA bundle (PEM) to verify the certificate with instead of the system's CAs, for a self-signed certificate,
        a lab CA or a private ACME CA. The roles set it from C(immich_proxy_check_ca_path).
    type: path
  validate_certs:
    description: Verify the certificate chain and host name.
    type: bool
    default: true
  max_body_size:
    description:
      - Body size the proxy must admit, in bytes or with a k, M or G suffix as in C(immich_proxy_max_body_size);
        C(0) (unlimited) probes with 100 GiB.
    type: raw
    default: 50000M
  timeout:
    description: "Seconds to wait for each answer, including the answer to C(Expect: 100-continue)."
    type: float
    default: 10
"""

EXAMPLES = r"""
- name: Check the proxy from the host itself
  homelab.immich_proxy.check:
    url: https://photos.example.org
    connect_host: 127.0.0.1
    ca_path: /etc/immich-proxy/tls/photos.example.org/fullchain.pem
  register: immich_check

- name: Check it from the controller, through DNS
  homelab.immich_proxy.check:
    url: https://photos.example.org
  delegate_to: localhost
"""

RETURN = r"""
checks:
  description:
    - Each check with its C(name), its result C(ok), C(skipped) (true when it was not run because the TLS
      handshake failed; C(ok) is then false) and a C(detail) sentence that says what was seen.
  returned: when the checks ran, whether or not they passed
  type: list
  elements: dict
  sample:
    - {"name": "ping", "ok": true, "skipped": false, "detail": "GET /api/server/ping answered {\"res\": \"pong\"}"}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.homelab.immich_proxy.plugins.module_utils._probe import (
    CHECK_OPTIONS,
    check_target,
    run_checks,
    verdict,
)


def main():
    module = AnsibleModule(argument_spec=dict(CHECK_OPTIONS), supports_check_mode=True)
    try:
        target, max_body_size = check_target(module.params)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    checks = [c.as_dict() for c in run_checks(target, max_body_size)]
    failure = verdict(checks, module.params["url"])
    if failure:
        module.fail_json(msg=failure, checks=checks)
    module.exit_json(changed=False, checks=checks)


if __name__ == "__main__":
    main()
