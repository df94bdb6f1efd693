#!/usr/bin/python
# Copyright: homelab.immich_proxy contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
---
module: settings
short_description: Validate and normalise the Immich reverse-proxy settings
version_added: 0.1.0
description:
  - Checks the settings every role of this collection shares (the C(immich_proxy_*) variables) against what
    Immich asks of a reverse proxy, and returns them in the normalised form the roles render.
  - Reports every problem at once, naming the variable and quoting the value, before anything on the host changes.
  - Rejects any value that could inject a directive into a proxy config (line breaks, C(;), braces, quotes,
    spaces).
  - Changes nothing on the host; it can run anywhere, also in check mode.
author:
  - homelab.immich_proxy contributors (@homelab)
extends_documentation_fragment:
  - homelab.immich_proxy.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
    details: Nothing on the host changes, so there is nothing to diff.
  idempotent:
    support: full
options:
  public_url:
    description:
      - The URL clients use, C(http://) or C(https://), with an optional port and no path.
      - Immich must be served at the root of a (sub)domain; a sub-path such as C(https://example.org/immich) is
        rejected.
    type: str
    required: true
  backends:
    description:
      - Immich server URLs (C(http://host:2283)); two or more form a load-balanced pool with passive health checks.
    type: list
    elements: str
    default: ['http://127.0.0.1:2283']
  max_body_size:
    description:
      - Largest request body the proxy admits, as a number of bytes or with a C(k), C(M) or C(G) suffix.
      - C(0) means unlimited. Immich's documentation uses C(50000M).
    type: raw
    default: 50000M
  timeout:
    description:
      - Seconds the proxy waits on a client or on Immich. Immich recommends at least 600; less gives a warning.
    type: int
    default: 600
  tls:
    description:
      - How the proxy gets its certificate. C(off) serves plain HTTP, C(provided) uses O(tls_cert) and O(tls_key),
        C(selfsigned) makes a certificate on the host, C(acme) gets one from an ACME CA through http-01.
    type: str
    choices: ['off', provided, selfsigned, acme]
    default: 'off'
  tls_cert:
    description: Path on the host of the certificate chain (PEM) when O(tls=provided).
    type: path
  tls_key:
    description: Path on the host of the private key (PEM) when O(tls=provided).
    type: path
  acme_email:
    description: Contact address given to the ACME CA; required when O(tls=acme).
    type: str
  acme_directory:
    description: ACME directory URL.
    type: str
    default: https://acme-v02.api.letsencrypt.org/directory
  acme_ca_file:
    description: CA bundle to trust for a private ACME server (for example a step-ca or pebble in a lab).
    type: path
  hsts:
    description: Send C(Strict-Transport-Security) when TLS is on.
    type: bool
    default: true
  hsts_max_age:
    description: The HSTS C(max-age) in seconds.
    type: int
    default: 63072000
  trusted_proxies:
    description:
      - CIDRs of proxies in front of this one (a CDN, a load balancer). Only from those is a client's
        C(X-Forwarded-For) and C(X-Forwarded-Proto) believed.
    type: list
    elements: str
    default: []
  http_port:
    description: Port the proxy listens on for HTTP.
    type: int
    default: 80
  https_port:
    description: Port the proxy listens on for HTTPS.
    type: int
    default: 443
  cloudflare_plan:
    description:
      - When the proxy sits behind Cloudflare, its plan; a body size above the plan's upload limit gives a warning.
    type: str
    choices: [free, pro, business, enterprise]
"""

EXAMPLES = r"""
- name: Validate the Immich proxy settings
  homelab.immich_proxy.settings:
    public_url: https://photos.example.org
    backends:
      - http://10.0.0.21:2283
      - http://10.0.0.22:2283
    tls: acme
    acme_email: admin@example.org
  register: immich_settings

- name: Show the upstream addresses the role will render
  ansible.builtin.debug:
    msg: "{{ immich_settings.settings.backends | map(attribute='address') }}"
"""

RETURN = r"""
settings:
  description: The settings in the normalised form the roles render.
  returned: success
  type: dict
  contains:
    public_url:
      description: The public URL without a trailing slash.
      type: str
      sample: https://photos.example.org
    server_name:
      description: The host name of the public URL, lower case.
      type: str
      sample: photos.example.org
    backends:
      description: The backends, each with scheme, host, port, address (C(host:port)) and url.
      type: list
      elements: dict
      sample: [{"scheme": "http", "host": "127.0.0.1", "port": 2283, "address": "127.0.0.1:2283",
                "url": "http://127.0.0.1:2283"}]
    max_body_size_bytes:
      description: The body size limit in bytes; 0 is unlimited.
      type: int
      sample: 52428800000
    timeout:
      description: The timeout in seconds.
      type: int
      sample: 600
    tls:
      description: The TLS mode.
      type: str
      sample: acme
    trusted_proxies:
      description: The trusted proxy networks in CIDR form.
      type: list
      elements: str
      sample: ["10.0.0.0/8"]
    tls_protocols:
      description: TLS protocol versions of Mozilla's intermediate profile.
      type: list
      elements: str
      sample: ["TLSv1.2", "TLSv1.3"]
    tls_ciphers:
      description: TLS 1.2 cipher suites of Mozilla's intermediate profile (OpenSSL names).
      type: list
      elements: str
    tls_cert_path:
      description:
        - The certificate chain the proxy serves, or null without TLS. For C(selfsigned) and C(acme) every role keeps
          it at C(/etc/immich-proxy/tls/<host>/fullchain.pem); the self-signed one is also the CA to verify it with.
      type: str
      sample: /etc/immich-proxy/tls/photos.example.org/fullchain.pem
    tls_key_path:
      description: The private key the proxy serves with, or null without TLS.
      type: str
      sample: /etc/immich-proxy/tls/photos.example.org/privkey.pem
    tls_dir:
      description: The directory of the role-managed certificate for C(selfsigned) and C(acme), else null.
      type: str
    acme_webroot:
      description: The directory certbot writes http-01 challenges to and the proxy serves them from.
      type: str
      sample: /var/lib/immich-proxy/acme
    well_known_path:
      description: The discovery path the apps request first, which must reach Immich.
      type: str
      sample: /.well-known/immich
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.homelab.immich_proxy.plugins.module_utils._settings import (
    DEFAULTS,
    TLS_MODES,
    SettingsError,
    normalise,
)

CONTRACT_OPTIONS = (
    "public_url", "backends", "max_body_size", "timeout", "tls", "tls_cert", "tls_key", "acme_email",
    "acme_directory", "acme_ca_file", "hsts", "hsts_max_age", "trusted_proxies", "http_port", "https_port",
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            public_url=dict(type="str", required=True),
            backends=dict(type="list", elements="str", default=DEFAULTS["backends"]),
            max_body_size=dict(type="raw", default=DEFAULTS["max_body_size"]),
            timeout=dict(type="int", default=DEFAULTS["timeout"]),
            tls=dict(type="str", choices=list(TLS_MODES), default=DEFAULTS["tls"]),
            tls_cert=dict(type="path"),
            tls_key=dict(type="path"),
            acme_email=dict(type="str"),
            acme_directory=dict(type="str", default=DEFAULTS["acme_directory"]),
            acme_ca_file=dict(type="path"),
            hsts=dict(type="bool", default=DEFAULTS["hsts"]),
            hsts_max_age=dict(type="int", default=DEFAULTS["hsts_max_age"]),
            trusted_proxies=dict(type="list", elements="str", default=DEFAULTS["trusted_proxies"]),
            http_port=dict(type="int", default=DEFAULTS["http_port"]),
            https_port=dict(type="int", default=DEFAULTS["https_port"]),
            cloudflare_plan=dict(type="str", choices=["free", "pro", "business", "enterprise"]),
        ),
        supports_check_mode=True,
    )
    raw = {name: module.params[name] for name in CONTRACT_OPTIONS}
    try:
        settings, warnings = normalise(raw, cloudflare_plan=module.params["cloudflare_plan"])
    except SettingsError as exc:
        module.fail_json(msg="Invalid Immich proxy settings: " + "; ".join(exc.problems), problems=exc.problems)
    for warning in warnings:
        module.warn(warning)
    module.exit_json(changed=False, settings=settings)


if __name__ == "__main__":
    main()
