# SPDX-License-Identifier: GPL-3.0-or-later
"""Upload benchmark: the Immich test double directly vs through the deployed nginx, in one run.

Deploys nginx with playbooks/site.yml into a fresh Debian 12 container in front
of the Immich test double (a stand-in for Immich), times that converge and a
no-op re-run, adds Immich's documented nginx example on port 8080 for contrast,
then streams BENCH_SIZE bytes (2 GiB) to the double's sink three ways — directly,
through the collection's nginx, through the documented config — with the client
paced to 1 Gbit/s and unpaced. It prints throughput ratios against the direct
upload, the bytes nginx's processes wrote to disk, and nginx's memory growth,
each beside its target. Everything runs side by side in this one run.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "immich-proxy-bench"
SIZE = int(os.environ.get("BENCH_SIZE", str(2 * 1024 ** 3)))
GBIT = 1e9 / 8
MiB = 1024 ** 2

# Immich's documented nginx example (immich.app/docs/administration/reverse-proxy), on 8080.
DOCUMENTED = """
server {
    listen 8080;
    server_name photos.immich.test;
    client_max_body_size 50000M;
    proxy_set_header Host              $http_host;
    proxy_set_header X-Real-IP         $remote_addr;
    proxy_set_header X-Forwarded-For   $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_http_version 1.1;
    proxy_set_header   Upgrade    $http_upgrade;
    proxy_set_header   Connection "upgrade";
    proxy_redirect     off;
    proxy_read_timeout 600s;
    proxy_send_timeout 600s;
    send_timeout       600s;
    location / {
        proxy_pass http://127.0.0.1:2283;
    }
}
"""

INVENTORY = """
all:
  children:
    immich_proxies:
      hosts:
        %s:
          ansible_connection: community.docker.docker
          ansible_python_interpreter: /usr/bin/python3
          ansible_pipelining: true
      vars:
        immich_proxy_kind: nginx
        immich_proxy_public_url: http://photos.immich.test
        immich_double_ports: [2283]
        nginx_ipv6: false
""" % NAME


def sh(argv, **kwargs):
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)


def docker_exec(*argv):
    return sh(["docker", "exec", NAME, *argv]).stdout


def playbook(inventory, path):
    started = time.monotonic()
    result = sh(["ansible-playbook", "-i", inventory, path])
    seconds = time.monotonic() - started
    changed = sum(int(n) for n in re.findall(r"changed=(\d+)", result.stdout.split("PLAY RECAP")[-1]))
    return seconds, changed


def upload(url, rate):
    out = docker_exec("python3", "/opt/bench/upload_client.py", url, "--size", str(SIZE), "--rate", str(rate),
                      "--watch", "nginx")
    result = json.loads(out)
    if result["status"] != 200 or result["received"] != SIZE:
        raise SystemExit("upload to %s failed: %r" % (url, result))
    return result


def verdict(ok):
    return "meets target" if ok else "MISSES target"


def main():
    subprocess.run(["docker", "rm", "-f", NAME], capture_output=True, check=False)
    sh(["docker", "run", "-d", "--name", NAME, "--cap-add", "SYS_ADMIN", "--cap-add", "SYS_PTRACE",
        "--security-opt", "seccomp=unconfined", "--cgroupns", "host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
        "--tmpfs", "/run", "--tmpfs", "/run/lock", "immich-proxy-test:bookworm", "/lib/systemd/systemd"])
    try:
        for _attempt in range(60):
            state = subprocess.run(["docker", "exec", NAME, "systemctl", "is-system-running"],
                                   capture_output=True, text=True, check=False).stdout
            if state.strip() in ("running", "degraded"):
                break
            time.sleep(1)
        inventory = os.path.join(ROOT, "bench", ".inventory.yml")
        with open(inventory, "w") as handle:
            handle.write(INVENTORY)
        playbook(inventory, os.path.join(ROOT, "tests", "immich_double", "install.yml"))
        first, _changed = playbook(inventory, os.path.join(ROOT, "playbooks", "site.yml"))
        again, changed_again = playbook(inventory, os.path.join(ROOT, "playbooks", "site.yml"))

        docker_exec("sh", "-c", "cat > /etc/nginx/conf.d/zz-bench-documented.conf <<'EOF'\n%s\nEOF\n"
                                "nginx -t -q && systemctl reload nginx" % DOCUMENTED)
        docker_exec("mkdir", "-p", "/opt/bench")
        sh(["docker", "cp", os.path.join(ROOT, "bench", "upload_client.py"), NAME + ":/opt/bench/upload_client.py"])

        targets = {"direct": "http://127.0.0.1:2283/_double/sink",
                   "collection": "http://127.0.0.1:80/_double/sink",
                   "documented": "http://127.0.0.1:8080/_double/sink"}
        rows = {}
        for label, rate in (("1 Gbit/s", GBIT), ("unpaced", 0)):
            rows[label] = {name: upload(url, rate) for name, url in targets.items()}

        print("\nhomelab.immich_proxy upload benchmark: %d MiB to the Immich test double, one run\n" % (SIZE // MiB))
        print("%-9s %-11s %10s %9s %14s %12s" % ("client", "path", "MB/s", "ratio", "nginx wrote", "nginx RSS+"))
        for label, results in rows.items():
            direct = results["direct"]["seconds"]
            for name, result in results.items():
                mbps = SIZE / result["seconds"] / 1e6
                print("%-9s %-11s %10.1f %9.3f %11.1f MiB %8.1f MiB" % (
                    label, name, mbps, direct / result["seconds"], result["written_bytes"] / MiB,
                    (result["rss_peak"] - result["rss_before"]) / MiB))
        paced = rows["1 Gbit/s"]
        ratio = paced["direct"]["seconds"] / paced["collection"]["seconds"]
        written = max(r["collection"]["written_bytes"] for r in rows.values())
        growth = max(r["collection"]["rss_peak"] - r["collection"]["rss_before"] for r in rows.values())
        print("\nthroughput through the collection's nginx at 1 Gbit/s: %.3f of direct (target >= 0.97): %s"
              % (ratio, verdict(ratio >= 0.97)))
        documented = paced["documented"]["written_bytes"]
        print("bytes nginx wrote to disk: %.2f%% of the upload (target <= 1%%; the documented config: %.0f%%): %s"
              % (100 * written / SIZE, 100 * documented / SIZE, verdict(written <= SIZE / 100)))
        print("nginx memory growth: %.1f MiB (target < 64 MiB): %s" % (growth / MiB, verdict(growth < 64 * MiB)))
        print("no-op re-run of site.yml: %.1f s against %.1f s for the first converge = %.2f, changed=%d "
              "(target <= 0.25, changed=0): %s" % (again, first, again / first, changed_again,
                                                   verdict(again / first <= 0.25 and changed_again == 0)))
    finally:
        subprocess.run(["docker", "rm", "-f", NAME], capture_output=True, check=False)
        if os.path.exists(os.path.join(ROOT, "bench", ".inventory.yml")):
            os.unlink(os.path.join(ROOT, "bench", ".inventory.yml"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
