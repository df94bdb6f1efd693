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
  - Checks the settings every role of this collection shares (the C(immich_proxy_*) variables) and the proxy role's
    own variables against what Immich asks of a reverse proxy, and returns them in the normalised form the roles
    render.
  - Reports every problem at once, type errors included, naming the variable and quoting the value, before
    anything on the host changes. That is why the contract's options are C(raw) and none of them is required here; the
    module types them itself, and the role's documented types and defaults are in each option's description.
  - Every returned string is rebuilt from parsed parts and must pass a per-field allowlist, so no value can inject a
    directive, a line or a variable into an nginx, Apache, Caddy, Traefik or cloudflared config. IPv6 zone IDs,
    C(http://) ACME directories, C(0.0.0.0/0) as a trusted proxy (unless allowed) and unverifiable https backends
    are refused.
  - With O(role_variables) (before a deploy), it also looks at the host it runs on and refuses, naming the
    variable, a port the proxy must listen on (C(immich_proxy_http_port), and C(immich_proxy_https_port) with
    TLS) that another program holds (the program, its PID and unit named), and a certificate, key or CA file the
    settings use that is missing, unreadable or not PEM (never quoting the file; in check mode a warning).
  - A port held by the service of a proxy of another kind that this collection deployed on the host before (the
    host's C(immich_proxy_kind) was switched) is not refused but returned as RV(handover), when that service listens
    on nothing else reachable from outside; one that also serves other ports is refused, since stopping it would
    take more than Immich down.
  - Changes nothing on the host; it can run anywhere, also in check mode.
author:
  - homelab.immich_proxy contributors (@homelab)
extends_documentation_fragment:
  - homelab.immich_proxy.attributes
  - homelab.immich_proxy.attributes.proxy_kind
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
      - 'The role variable C(immich_proxy_public_url): type C(str), required.'
      - 'The URL clients use: C(https://) or C(http://), the host, an optional port, no
        path.'
      - Immich must be served at the root of a (sub)domain; it does not support a sub-path
        such as C(https://example.org/immich), so one is refused.
      - 'The host is a DNS name (an internationalised one in punycode, C(xn--...)) or
        an IP address. IPv6 zone IDs are refused: they are free text that each proxy''s
        config language would read differently.'
    type: raw
  backends:
    description:
      - 'The role variable C(immich_proxy_backends): type C(list) of C(str), default C(["http://127.0.0.1:2283"]).'
      - 'Immich server URLs without a path: C(http://10.0.0.5:2283), a container name
        (C(http://immich-server:2283)) or a bracketed IPv6 address (C(http://[fd00::5]:2283)).'
      - 'Two or more form a load-balanced pool with passive health checks: a backend that
        fails a request is skipped for a while.'
      - C(https://) backends are always verified, against C(immich_proxy_backend_ca_file)
        and the backends' host name, so every backend of an https pool must use the same
        host name.
    type: raw
    default:
      - http://127.0.0.1:2283
  backend_ca_file:
    description:
      - 'The role variable C(immich_proxy_backend_ca_file): type C(path), default null.'
      - CA bundle (PEM) on the host that signs the certificates of C(https://) backends,
        for a private CA; null trusts the system's CAs.
      - An unverified connection to Immich would let anyone between the proxy and Immich
        read every photo and session token, so https backends are verified or refused.
    type: raw
  max_body_size:
    description:
      - 'The role variable C(immich_proxy_max_body_size): type C(raw), default C(50000M).'
      - Largest request body the proxy admits, in bytes or with a C(k), C(M), C(G) or
        C(T) suffix (1024-based, as nginx reads them); C(0) is unlimited.
      - Immich's documentation uses C(50000M) because videos from phones are large; a
        smaller limit fails their upload with 413. More than C(16T) is refused.
    type: raw
    default: 50000M
  timeout:
    description:
      - 'The role variable C(immich_proxy_timeout): type C(int), default C(600).'
      - Seconds the proxy waits on a client or on Immich; nginx's and Apache's 60 s defaults
        and Traefik's 60 s readTimeout cut video uploads.
      - Immich recommends at least 600; less gives a warning. At most 604800 (a week).
    type: raw
    default: 600
  tls:
    description:
      - 'The role variable C(immich_proxy_tls): type C(str), one of C(off), C(provided),
        C(selfsigned), C(acme), default C(off).'
      - How the proxy gets its certificate. C(off) serves plain HTTP (TLS ends in front
        of this proxy, if anywhere); C(provided) uses C(immich_proxy_tls_cert) and C(immich_proxy_tls_key);
        C(selfsigned) makes a certificate on the host; C(acme) gets one from an ACME CA
        (Let's Encrypt by default) by http-01.
      - With TLS on, plain HTTP redirects to HTTPS (except the ACME challenge), HSTS is
        sent and the public URL must be C(https://).
      - YAML reads an unquoted C(off) as false, which is taken as C(off) too.
    type: raw
    default: 'off'
  tls_cert:
    description:
      - 'The role variable C(immich_proxy_tls_cert): type C(path), default null.'
      - Path on the host of the certificate chain (PEM), leaf first, for C(immich_proxy_tls=provided).
      - 'Absolute, with letters, digits and C(._@+-) between the slashes: the path is
        written into the proxy''s config, where spaces and quotes would need each language''s
        own escaping.'
    type: raw
  tls_key:
    description:
      - 'The role variable C(immich_proxy_tls_key): type C(path), default null.'
      - Path on the host of the private key (PEM) for C(immich_proxy_tls=provided); only
        its path is given, so it is not a secret.
      - Absolute, with letters, digits and C(._@+-) between the slashes, as for C(immich_proxy_tls_cert).
    type: raw
  acme_email:
    description:
      - 'The role variable C(immich_proxy_acme_email): type C(str), default null.'
      - 'Contact address of the ACME account; required for C(immich_proxy_tls=acme): the
        CA sends expiry warnings there.'
      - It must not start with C(-), which an ACME client such as certbot would read as
        an option.
    type: raw
  acme_directory:
    description:
      - 'The role variable C(immich_proxy_acme_directory): type C(str), default
        C(https://acme-v02.api.letsencrypt.org/directory).'
      - 'ACME directory URL: Let''s Encrypt''s production directory by default,
        C(https://acme-staging-v02.api.letsencrypt.org/directory)
        for tests, or a private CA''s.'
      - C(https://) only, so the account's requests and the certificate order cannot be
        changed on the way; a host, an optional port and a path, without user info, query
        or fragment.
    type: raw
    default: https://acme-v02.api.letsencrypt.org/directory
  acme_ca_file:
    description:
      - 'The role variable C(immich_proxy_acme_ca_file): type C(path), default null.'
      - CA bundle (PEM) that signs a private ACME server's HTTPS certificate (step-ca,
        pebble); null trusts the system's CAs. The renewal timer is given it too, so renewals
        verify the same way.
    type: raw
  hsts:
    description:
      - 'The role variable C(immich_proxy_hsts): type C(bool), default C(true).'
      - Send C(Strict-Transport-Security) when TLS is on, so browsers never try plain
        HTTP again and a downgrade on a hostile network fails.
    type: raw
    default: true
  hsts_max_age:
    description:
      - 'The role variable C(immich_proxy_hsts_max_age): type C(int), default C(63072000).'
      - 'HSTS C(max-age) in seconds: two years by default, as in Mozilla''s profile; at
        most ten years.'
    type: raw
    default: 63072000
  trusted_proxies:
    description:
      - 'The role variable C(immich_proxy_trusted_proxies): type C(list) of C(str), default
        C([]).'
      - Addresses or CIDRs of the proxies in front of this one (a CDN, a load balancer).
        Only from those are C(X-Forwarded-For) and C(X-Forwarded-Proto) believed; anyone
        else's are replaced, so a client cannot pass a forged address or scheme on to
        Immich.
      - C(0.0.0.0/0) and C(::/0) (everyone) are refused unless C(immich_proxy_trusted_proxies_allow_any)
        is true. IPv6 zone IDs are refused.
    type: raw
    default: []
  trusted_proxies_allow_any:
    description:
      - 'The role variable C(immich_proxy_trusted_proxies_allow_any): type C(bool), default
        C(false).'
      - Allow C(0.0.0.0/0) or C(::/0) in C(immich_proxy_trusted_proxies), believing anyone's
        C(X-Forwarded-For).
      - Right only when nothing but the trusted proxies can reach this one (a firewall,
        a tunnel); otherwise any client can pose as any address.
    type: raw
    default: false
  http_port:
    description:
      - 'The role variable C(immich_proxy_http_port): type C(int), default C(80).'
      - Port the proxy listens on for HTTP, 1-65535. With TLS on it serves the redirect
        and the ACME http-01 challenge, which the CA always sends to port 80.
    type: raw
    default: 80
  https_port:
    description:
      - 'The role variable C(immich_proxy_https_port): type C(int), default C(443).'
      - Port the proxy listens on for HTTPS, 1-65535; it must differ from C(immich_proxy_http_port).
    type: raw
    default: 443
  cloudflare_plan:
    description:
      - 'The role variable C(immich_proxy_cloudflare_plan): type C(str), one of null,
        C(free), C(pro), C(business), C(enterprise), default null.'
      - The Cloudflare plan when this proxy sits behind Cloudflare, null when it does
        not.
      - Cloudflare cuts request bodies at 100 MB (free, pro), 200 MB (business) or 500
        MB (enterprise); a larger C(immich_proxy_max_body_size) gives a warning, because
        such uploads fail at Cloudflare with 413 whatever this proxy admits.
    type: raw
  check:
    description:
      - 'The role variable C(immich_proxy_check): type C(bool), default C(true).'
      - 'Run the end-to-end check (M(homelab.immich_proxy.check)) at the end of the role:
        it talks to the proxy as a client would, so a config that loads but does not serve
        Immich fails the run.'
    type: raw
    default: true
  check_ca_path:
    description:
      - 'The role variable C(immich_proxy_check_ca_path): type C(path), default null.'
      - CA bundle (PEM) the end-to-end check verifies the proxy's certificate with, needed
        for a certificate from a private CA (provided, or from a private ACME CA).
      - Null uses the self-signed certificate itself for C(immich_proxy_tls=selfsigned)
        and the system's CAs otherwise.
    type: raw
  role_variables:
    description:
      - The proxy role's own variables (C(<kind>_*)), name to value, as the role has them.
      - Each is parsed by the type its adapter declares (booleans, whole numbers and sizes
        with bounds, paths, patterned strings, single-line config lines) and comes back
        converted in RV(settings.role); a missing one, or one the adapter does not declare,
        is a problem.
      - Left out, only the contract is checked and RV(settings.role) is empty (for playbooks that check a
        deployed proxy without its role).
    type: dict
  secrets:
    description:
      - The proxy role's secret variables (cloudflared's tunnel credentials or token), name to value.
      - A C(no_log) option; each is checked by the proxy's adapter and named in a problem, never quoted, printed or
        returned.
    type: dict
    version_added: 0.5.0
"""

EXAMPLES = r"""
- name: Validate the Immich proxy settings
  homelab.immich_proxy.settings:
    kind: nginx
    public_url: https://photos.example.org
    backends:
      - http://10.0.0.21:2283
      - http://10.0.0.22:2283
    tls: acme
    acme_email: admin@example.org
    role_variables:
      nginx_ipv6: true
      nginx_remove_default_site: true
      nginx_backend_fail_timeout: 10
      nginx_client_body_buffer_size: 512k
      nginx_extra_server_directives: []
  register: immich_settings

- name: Show the upstream addresses the role will render
  ansible.builtin.debug:
    msg: "{{ immich_settings.settings.backends | map(attribute='address') }}"
"""

RETURN = r"""
handover:
  description:
    - With O(role_variables), the proxies of another kind that this collection deployed on the host before and whose
      service holds a port this proxy must listen on, each with its C(kind), C(service) and the C(ports) it holds;
      the role stops them and starts this proxy in their place (M(homelab.immich_proxy.reload_service)'s
      O(homelab.immich_proxy.reload_service#module:handover_from)). Empty otherwise.
  returned: success
  type: list
  elements: dict
  sample: [{"kind": "nginx", "service": "nginx", "ports": [80, 443]}]
settings:
  description:
    - The settings in the normalised form the roles render. Every key is always present; a key that does not apply
      is null.
    - Every string is rebuilt from parsed parts and matches its field's allowlist.
  returned: success
  type: dict
  contains:
    public_url:
      description: The public URL without a trailing slash, its host in lower case or canonical IP form.
      type: str
      sample: https://photos.example.org
    scheme:
      description: The public URL's scheme.
      type: str
      sample: https
    server_name:
      description: The public host name in lower case, or its IP address (IPv6 without brackets).
      type: str
      sample: photos.example.org
    server_name_is_ip:
      description: Whether the public host is an IP address (certificates then need an IP subject alternative name).
      type: bool
      sample: false
    public_port:
      description: The public port, the scheme's default when the URL has none.
      type: int
      sample: 443
    public_authority:
      description: The host (bracketed if IPv6) with C(:port) only when the port is not the scheme's default.
      type: str
      sample: photos.example.org
    public_host_header:
      description:
        - What a client sends as C(Host), and so the only Host the proxy passes on to Immich.
        - The host, bracketed if IPv6, with C(:port) only when the port is not the scheme's default.
      type: str
      sample: photos.example.org:8443
    public_host_headers:
      description:
        - Every C(Host) a client may send for the public URL, the only ones that reach Immich - the authority,
          and with a default port also the host with that port written out.
      type: list
      elements: str
      sample: ["photos.example.org", "photos.example.org:443"]
    backends:
      description: The backends in the order given.
      type: list
      elements: dict
      contains:
        scheme:
          description: C(http) or C(https).
          type: str
        host:
          description: The host name in lower case, or the IP address (IPv6 without brackets).
          type: str
        port:
          description: The port, the scheme's default when the URL has none.
          type: int
        address:
          description: C(host:port), the host bracketed if IPv6.
          type: str
        url:
          description: The URL, rebuilt.
          type: str
      sample: [{"scheme": "http", "host": "127.0.0.1", "port": 2283, "address": "127.0.0.1:2283",
                "url": "http://127.0.0.1:2283"}]
    backend_scheme:
      description: The scheme every backend uses.
      type: str
      sample: http
    load_balanced:
      description: Whether there are two or more backends.
      type: bool
      sample: false
    backend_tls_verify:
      description: Whether the proxy must verify the backends' certificate (true exactly when they are https).
      type: bool
      sample: false
    backend_tls_name:
      description: The name the backends' certificate must carry (their common host), or null for http backends.
      type: str
      sample: immich.internal
    backend_ca_file:
      description: The CA bundle to verify https backends with, or null for the system's CAs.
      type: str
      sample: /etc/ssl/private-ca.pem
    max_body_size_bytes:
      description: The body size limit in bytes; 0 is unlimited.
      type: int
      sample: 52428800000
    timeout:
      description: The timeout in seconds.
      type: int
      sample: 600
    http_port:
      description: The HTTP port.
      type: int
      sample: 80
    https_port:
      description: The HTTPS port.
      type: int
      sample: 443
    tls:
      description: The TLS mode, C(off), C(provided), C(selfsigned) or C(acme).
      type: str
      sample: acme
    tls_enabled:
      description: Whether this proxy serves TLS.
      type: bool
      sample: true
    tls_cert:
      description: The certificate path given, or null.
      type: str
      sample: /etc/ssl/immich/fullchain.pem
    tls_key:
      description: The private key path given, or null.
      type: str
      sample: /etc/ssl/immich/privkey.pem
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
      sample: /etc/immich-proxy/tls/photos.example.org
    acme_email:
      description: The ACME account's contact address for C(acme), else null. Pass it as C(--email=VALUE).
      type: str
      sample: admin@example.org
    acme_directory:
      description: The ACME directory URL (https, rebuilt) for C(acme), else null.
      type: str
      sample: https://acme-v02.api.letsencrypt.org/directory
    acme_ca_file:
      description: The CA bundle that signs a private ACME server's certificate, or null.
      type: str
      sample: /etc/ssl/pebble-ca.pem
    acme_webroot:
      description: The directory certbot writes http-01 challenges to and the proxy serves them from.
      type: str
      sample: /var/lib/immich-proxy/acme
    acme_challenge_path:
      description: The URL path of http-01 challenges, served on HTTP even when everything else redirects.
      type: str
      sample: /.well-known/acme-challenge/
    well_known_path:
      description: The discovery path the apps request first, which must reach Immich.
      type: str
      sample: /.well-known/immich
    websocket_path:
      description: The path of Immich's websocket, which needs the upgrade passed on.
      type: str
      sample: /api/socket.io
    hsts:
      description: Whether to send Strict-Transport-Security (never without TLS).
      type: bool
      sample: true
    hsts_max_age:
      description: The HSTS C(max-age) in seconds.
      type: int
      sample: 63072000
    trusted_proxies:
      description: The trusted proxy networks in CIDR form, duplicates dropped.
      type: list
      elements: str
      sample: ["10.0.0.0/8", "192.168.1.7/32"]
    trusted_proxies_allow_any:
      description: Whether C(0.0.0.0/0) or C(::/0) was explicitly allowed among the trusted proxies.
      type: bool
      sample: false
    trusted_proxies_regex:
      description:
        - For proxies without a real-IP module (Caddy), a regular expression (RE2 and Python) over a trusted
          proxy's C(X-Forwarded-For); group 1 is the chain up to the real client, group 2 the real client (the
          right-most address that is not a trusted proxy).
        - Null without trusted proxies, or when one is an IPv6 network (its addresses have too many spellings).
      type: str
      sample: null
    tls_protocols:
      description: TLS protocol versions of Mozilla's intermediate profile.
      type: list
      elements: str
      sample: ["TLSv1.2", "TLSv1.3"]
    tls_ciphers:
      description: TLS 1.2 cipher suites of Mozilla's intermediate profile (OpenSSL names).
      type: list
      elements: str
      sample: ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256"]
    tls_curves:
      description: Key exchange groups of Mozilla's intermediate profile (OpenSSL names).
      type: list
      elements: str
      sample: ["X25519", "prime256v1", "secp384r1"]
    tls_ciphers_iana:
      description: The same cipher suites by their IANA names, which Go's proxies (Caddy, Traefik) read.
      type: list
      elements: str
      sample: ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]
    tls_curves_iana:
      description: The same groups by their IANA names, which Go's proxies (Caddy, Traefik) read.
      type: list
      elements: str
      sample: ["x25519", "secp256r1", "secp384r1"]
    cloudflare_plan:
      description: The Cloudflare plan in front of the proxy, or null.
      type: str
      sample: free
    check:
      description: Whether the role runs the end-to-end check at its end.
      type: bool
      sample: true
    check_ca_path:
      description: The CA bundle the end-to-end check verifies with, or null.
      type: str
      sample: /etc/ssl/private-ca.pem
    role:
      description:
        - The proxy role's own variables, converted by the types its adapter declares (booleans, whole numbers,
          sizes in bytes, paths, strings, lists of config lines).
      type: dict
      sample: {"nginx_ipv6": true, "nginx_backend_fail_timeout": 10, "nginx_client_body_buffer_size": 524288}
    proxy:
      description: What the proxy's adapter says of it, for the shared tasks of the roles.
      type: dict
      contains:
        kind:
          description: The proxy kind, as in O(kind).
          type: str
          sample: nginx
        title:
          description: How messages name the proxy (V(nginx), V(Apache), V(Caddy), V(Traefik), V(cloudflared)).
          type: str
          sample: Traefik
          version_added: 0.7.0
        service:
          description: The systemd service that runs the proxy.
          type: str
          sample: nginx
        strategy:
          description:
            - How the proxy takes a new config, C(reload) (graceful), C(watch) (applies files as they are written)
              or C(restart).
          type: str
          sample: reload
        acme:
          description:
            - How O(tls=acme) gets its certificate, C(certbot) (the contract role's tasks), C(builtin) (the proxy's
              own ACME client) or C(none).
          type: str
          sample: certbot
        deploy_hook:
          description: The shell line certbot's deploy hook runs after a renewal, or null.
          type: str
          sample: nginx -t -q && systemctl reload nginx
        key_reader:
          description: The system user that reads the private key itself (Caddy's C(caddy)), or null where the
            proxy reads it as root.
          type: str
          sample: null
        key_group:
          description: The group of the role-managed private key (C(root), or the key reader's group).
          type: str
          sample: root
        key_mode:
          description: The mode of the role-managed private key (C(0600), or C(0640) for a key reader's group).
          type: str
          sample: "0600"
        config_path:
          description: The proxy's main config file where the adapter names it (Caddy's Caddyfile), or null.
          type: str
          sample: null
        admin_socket:
          description: The unix socket of the proxy's admin API (Caddy), or null.
          type: str
          sample: null
        loaded_config_path:
          description:
            - Where the service's unit keeps a copy of the config the service started with (Traefik's static
              file, which only a restart loads), or null.
          type: str
          sample: null
        workdir:
          description: The service's working directory where the adapter names one (Traefik's local plugins), or null.
          type: str
          sample: null
        controller_binary:
          description:
            - Where the role installs a binary from the controller (C(caddy_install), C(traefik_install) or
              C(cloudflared_install) set to C(binary)), or null for a proxy that has no such install.
          type: str
          sample: /usr/local/bin/traefik
          version_added: 0.7.0
        listens:
          description: Whether the proxy answers HTTP on the host itself (false for a tunnel, which connects out).
          type: bool
          sample: true
        secret_paths:
          description:
            - Where the role writes the proxy's secrets (mode C(0600), the service user's), by name; empty for a proxy
              without secrets (cloudflared's C(credentials) and C(token)).
          type: dict
          sample: {}
        readiness:
          description:
            - For a proxy that does not listen (cloudflared), where it says it is ready on the host - the C(path),
              the role variable with the port (C(port_variable)) and its C(default_port); null otherwise.
          type: dict
          sample: null
    host:
      description:
        - What the roles need to know of the host, so that they need no gathered facts and no package query of
          their own on a re-run.
      type: dict
      version_added: 0.7.0
      contains:
        os_family:
          description: The OS family as Ansible's fact C(os_family) names it (C(Debian) for Debian, Ubuntu,
            Raspberry Pi OS and their other derivatives).
          type: str
          sample: Debian
        supported:
          description: Whether the roles support the host's OS family; a deploy (with O(role_variables)) fails if not.
          type: bool
          sample: true
        pretty_name:
          description: The distribution as its C(/etc/os-release) names it.
          type: str
          sample: Debian GNU/Linux 12 (bookworm)
        architecture:
          description: The machine architecture as Ansible's fact C(architecture) names it.
          type: str
          sample: x86_64
        packages:
          description:
            - The installed version of each package the roles may install for this proxy (its own, and python3-apt,
              passwd, openssl, certbot and ca-certificates), null for one that is not installed; empty without dpkg.
          type: dict
          sample: {"nginx": "1.22.1-9+deb12u3", "python3-apt": "2.6.0", "certbot": null}
        user_exists:
          description:
            - Whether the system user (and its group) the role runs the service as is there already (C(caddy),
              C(traefik), C(cloudflared)); null for a proxy that runs as the user its package brings (nginx, Apache).
          type: bool
          sample: true
        proxy_version:
          description:
            - The version the installed proxy binary says it is (Traefik's), null where the package's version serves
              or nothing is installed yet.
          type: str
          sample: 3.7.15
        binary_record:
          description:
            - Where the role records the SHA-1 of a proxy binary it copied from the controller
              (C(<kind>_install=binary)), in C(sha1sum)'s format; null for a proxy the roles never install that way.
          type: str
          sample: /var/lib/immich-proxy/traefik.binary.sha1
        binary_sha1:
          description:
            - The SHA-1 that record gives for the installed binary, while it still speaks for it (written after the
              binary's inode last changed); null otherwise. A re-run compares it with the controller's copy instead
              of hashing the binary on the host.
          type: str
          sample: 0ea3bd2bf4f2e4ac7e9e3f6b5d2f1f0c9a8b7c6d
        restart_pending:
          description:
            - Whether a file the role writes that the service reads only when it starts (Traefik's binary, unit and
              local plugin; Caddy's binary, unit and drop-in) changed after the running service started (its ctime),
              or systemd has not loaded the unit as it is on disk, as when a run failed after writing one and before
              the restart; the role restarts the service then. Null for a proxy without such files, a service that
              is not running, or where systemd cannot be asked.
          type: bool
          sample: false
"""

import copy
import json

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.homelab.immich_proxy.plugins.module_utils._proxies import (
    ProxyError,
    file_problems,
    host_facts,
    port_plan,
    proxy_class,
)
from ansible_collections.homelab.immich_proxy.plugins.module_utils._settings import (
    CONTRACT,
    SettingsError,
    normalise,
)
from ansible_collections.homelab.immich_proxy.plugins.module_utils._state import deployed_kinds


def _contract_option(entry):
    """A contract variable as a module option: raw, so a type error is the parsers' to report with the rest.

    Nothing is required here either: AnsibleModule would report a missing
    public_url alone and stop, before any other problem is seen.
    """
    option = {"type": "raw"}
    if "default" in entry:
        option["default"] = copy.deepcopy(entry["default"])
    if "no_log" in entry:
        option["no_log"] = entry["no_log"]
    return option


def argument_spec():
    """The module's options: every CONTRACT variable, the proxy kind and the role's own variables."""
    spec = {name: _contract_option(entry) for name, entry in CONTRACT.items()}
    spec["kind"] = dict(type="str", required=True)
    spec["role_variables"] = dict(type="dict")
    spec["secrets"] = dict(type="dict", no_log=True)
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    try:
        adapter = proxy_class(module.params["kind"])
    except ProxyError as exc:
        module.fail_json(msg=str(exc))
    raw = {name: module.params[name] for name in CONTRACT}
    try:
        role_values = module.params["role_variables"]
        settings, warnings = normalise(raw, role_spec=adapter.variables if role_values is not None else {},
                                       role_values=role_values)
    except SettingsError as exc:
        module.fail_json(msg="Invalid Immich proxy settings: " + "; ".join(exc.problems), problems=exc.problems)
    problems = adapter.settings_problems(settings) if role_values is not None else []
    handover = []
    host = host_facts(adapter, module)
    if role_values is not None and not host["supported"]:
        problems.append("this host runs %s: the %s role supports Debian and its derivatives (Ubuntu, Raspberry Pi OS)"
                        % (host["pretty_name"], adapter.name))
    if role_values is not None:
        # before a deploy (the role's variables given), on the host itself: its ports must be free for the proxy,
        # the files the settings name must be there (in check mode a warning: an earlier task of the same play
        # may be what puts them there)
        held, handover = port_plan(adapter, settings, deployed_kinds())
        problems += held
        missing_files = file_problems(settings)
        if module.check_mode:
            warnings = list(warnings) + ["(check mode) %s" % problem for problem in missing_files]
        else:
            problems += missing_files
    secrets = module.params["secrets"]
    if secrets is not None:
        unknown = sorted(set(secrets) - set(adapter.secrets))
        problems += ["%s is not a secret variable of the %s role" % (name, adapter.name) for name in unknown]
        # (before Ansible 2.19 a file's JSON read by a lookup arrives as a mapping)
        given = {k: json.dumps(v) if isinstance(v, dict) else v for k, v in secrets.items()}
        problems += adapter.secret_problems({k: v for k, v in given.items() if isinstance(v, str) and v}, settings)
    if problems:
        module.fail_json(msg="Invalid Immich proxy settings for %s: %s" % (adapter.name, "; ".join(problems)),
                         problems=problems)
    for warning in warnings:
        module.warn(warning)
    settings["proxy"] = adapter.describe()
    settings["host"] = host
    module.exit_json(changed=False, settings=settings, handover=handover)


if __name__ == "__main__":
    main()
